package spec

import (
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/sysconfig"
)

// Group is a group to create (sysconfig's).
type Group = sysconfig.Group

// User is a user to create (sysconfig's).
type User = sysconfig.User

var accountRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

func (p *parser) groups(v *yaml.Node, s *Spec) {
	for _, n := range p.list(v, "groups") {
		g := Group{}
		if n.Kind == yaml.ScalarNode {
			g.Name = p.scalar(n, "groups")
		} else {
			p.mapping(n, "groups", map[string]func(*yaml.Node){
				"name": func(v *yaml.Node) { g.Name = p.scalar(v, "groups.name") },
				"gid":  func(v *yaml.Node) { g.GID = p.id(v, "groups.gid") },
			})
		}
		if g.Name != "" && !accountRE.MatchString(g.Name) {
			p.errorf(n, "groups: %q is not a valid user or group name (lower-case letters, digits, _ . -; at most 32)", g.Name)
		}
		if g.Name == "" {
			p.errorf(n, "groups: a group needs a name")
		}
		s.Groups = append(s.Groups, g)
	}
}

func (p *parser) users(v *yaml.Node, s *Spec) {
	for _, n := range p.list(v, "users") {
		u := User{}
		p.mapping(n, "users", map[string]func(*yaml.Node){
			"name":  func(v *yaml.Node) { u.Name = p.scalar(v, "users.name") },
			"uid":   func(v *yaml.Node) { u.UID = p.id(v, "users.uid") },
			"group": func(v *yaml.Node) { u.Group = p.accountName(v, "users.group") },
			"groups": func(v *yaml.Node) {
				for _, g := range p.list(v, "users.groups") {
					u.Groups = append(u.Groups, p.accountName(g, "users.groups"))
				}
			},
			"home":  func(v *yaml.Node) { u.Home = p.passwdPath(v, "users.home") },
			"shell": func(v *yaml.Node) { u.Shell = p.passwdPath(v, "users.shell") },
			"password": func(v *yaml.Node) {
				u.Password = p.scalar(v, "users.password")
				if !strings.HasPrefix(u.Password, "$") || strings.Count(u.Password, "$") < 3 || strings.ContainsAny(u.Password, ": \n") {
					p.errorf(v, "users.password: give a crypt(3) hash such as $6$salt$... (mkpasswd -m sha-512), never the password itself")
					u.Password = ""
				}
			},
			"ssh_authorized_keys": func(v *yaml.Node) {
				for _, k := range p.list(v, "users.ssh_authorized_keys") {
					key := p.scalar(k, "users.ssh_authorized_keys")
					if hasControl(key) {
						// A newline would add a line to authorized_keys:
						// another key, with options such as command=.
						p.errorf(k, "users.ssh_authorized_keys: one key a line, without newlines or control characters")
						continue
					}
					if f := strings.Fields(key); len(f) < 2 || !strings.HasPrefix(f[0], "ssh-") && !strings.HasPrefix(f[0], "ecdsa-") && !strings.HasPrefix(f[0], "sk-") {
						p.errorf(k, "users.ssh_authorized_keys: %q does not look like an OpenSSH public key", truncate(key))
						continue
					}
					u.AuthorizedKeys = append(u.AuthorizedKeys, key)
				}
			},
		})
		if u.Name == "root" {
			// root exists: the spec may set its password, keys and shell.
			if u.UID != 0 || u.Group != "" || len(u.Groups) > 0 || u.Home != "" {
				p.errorf(n, "users: root exists already; only its password, shell and ssh_authorized_keys can be set")
			}
			u.Home = "/root"
		}
		if u.Name == "" {
			p.errorf(n, "users: a user needs a name")
		} else if !accountRE.MatchString(u.Name) {
			p.errorf(n, "users: %q is not a valid user name (lower-case letters, digits, _ . -; at most 32)", u.Name)
		}
		if u.Home == "" {
			u.Home = "/home/" + u.Name
		}
		if u.Shell == "" {
			u.Shell = "/bin/sh"
		}
		s.Users = append(s.Users, u)
	}
}

// accountName reads a user or group name (users.group, users.groups).
func (p *parser) accountName(v *yaml.Node, field string) string {
	s := p.scalar(v, field)
	if s != "" && !accountRE.MatchString(s) {
		p.errorf(v, "%s: %q is not a valid user or group name (lower-case letters, digits, _ . -; at most 32)", field, truncate(s))
		return ""
	}
	return s
}

// passwdPath reads a home or shell: a field of /etc/passwd, so an
// absolute, clean path (no "..", no "//") without ':' (passwd's
// separator) or control characters (a newline would add an account).
func (p *parser) passwdPath(v *yaml.Node, field string) string {
	s := p.scalar(v, field)
	switch {
	case s == "":
	case hasControl(s) || strings.Contains(s, ":"):
		p.errorf(v, "%s: %q has a ':' or a control character, which /etc/passwd cannot hold", field, truncate(s))
	case !strings.HasPrefix(s, "/"):
		p.errorf(v, "%s: %q must be an absolute path", field, truncate(s))
	case path.Clean(s) != s:
		p.errorf(v, "%s: %q must be a clean path (no \"..\", \".\", \"//\" or trailing \"/\"; %s)", field, truncate(s), path.Clean(s))
	default:
		return s
	}
	return ""
}

// hasControl tells whether s has an ASCII control character (a newline,
// a carriage return, a NUL...) or DEL.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// mapping reads a mapping node's known keys, refusing unknown ones.
func (p *parser) mapping(n *yaml.Node, field string, keys map[string]func(*yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: expected a mapping", field)
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fn, ok := keys[k.Value]
		if !ok {
			var known []string
			for name := range keys {
				known = append(known, name)
			}
			slices.Sort(known)
			p.errorf(k, "%s: unknown field %q (known: %s)", field, k.Value, strings.Join(known, ", "))
			continue
		}
		fn(v)
	}
}

func (p *parser) id(n *yaml.Node, field string) int {
	s := p.scalar(n, field)
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > 65533 {
		p.errorf(n, "%s: %q is not a number from 1 to 65533", field, s)
		return 0
	}
	return v
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
