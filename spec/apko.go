package spec

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/arch"
)

// isApko tells an apko configuration (which has contents:) from an
// alpinist spec.
func isApko(root *yaml.Node) bool {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "contents" {
			return true
		}
	}
	return false
}

// apkoArch gives the Alpine arch of one of apko's architecture names:
// an OCI platform (amd64, arm/v7) or Alpine's own.
func apkoArch(name string) (string, bool) {
	for _, a := range arch.All {
		if name == a.Name || name == a.Platform() {
			return a.Name, true
		}
	}
	return "", false
}

// apkoIgnored are apko fields alpinist has nothing for, with why.
var apkoIgnored = map[string]string{
	"include":      "apko's include is deprecated; alpinist specs use extends:",
	"vcs-url":      "no VCS annotations yet",
	"os-release":   "/etc/os-release comes from the alpine-release package",
	"options":      "apko build options do not apply",
	"layering":     "images have one layer",
	"certificates": "install ca-certificates and add certificates with files:",
}

// apko reads an apko image configuration into a spec. What alpinist has
// an equivalent for is carried over (contents.repositories, keyring and
// packages, accounts, entrypoint, cmd, stop-signal, work-dir,
// environment, archs, paths, annotations, volumes); the rest is named in
// the spec's Warnings.
func (p *parser) apko(root *yaml.Node) (*Spec, map[string]*yaml.Node) {
	s := &Spec{Path: p.file, Name: apkoName(p.file)}
	seen := map[string]*yaml.Node{"name": root}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if prev, dup := seen[k.Value]; dup && k.Value != "name" {
			p.errorf(k, "field %q given twice (first at line %d)", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		switch k.Value {
		case "contents":
			p.apkoContents(v, s)
		case "entrypoint":
			p.apkoEntrypoint(v, s)
		case "cmd":
			s.OCI.Cmd = p.words(v, "cmd")
		case "stop-signal":
			s.OCI.StopSignal = p.scalar(v, "stop-signal")
		case "work-dir":
			s.OCI.WorkDir = p.scalar(v, "work-dir")
		case "environment":
			s.OCI.Env = p.stringMap(v, "environment", envRE, "an environment variable name")
		case "annotations":
			s.OCI.Annotations = p.stringMap(v, "annotations", nil, "")
		case "volumes":
			for _, n := range p.list(v, "volumes") {
				s.OCI.Volumes = append(s.OCI.Volumes, p.scalar(n, "volumes"))
			}
		case "accounts":
			p.apkoAccounts(v, s)
		case "archs":
			for _, n := range p.list(v, "archs") {
				name := p.scalar(n, "archs")
				a, ok := apkoArch(name)
				if !ok {
					p.errorf(n, "archs: %q is not an architecture apko or alpinist knows", name)
					continue
				}
				if !slices.Contains(s.Arch, a) {
					s.Arch = append(s.Arch, a)
				}
			}
		case "paths":
			for _, n := range p.list(v, "paths") {
				p.apkoPath(n, s)
			}
		default:
			why, ok := apkoIgnored[k.Value]
			if !ok {
				why = "alpinist does not know this apko field"
			}
			p.warnf(k, "apko field %q is ignored: %s", k.Value, why)
		}
	}
	if seen["contents"] != nil && s.Packages == nil {
		p.errorf(seen["contents"], "contents.packages: an apko config needs packages")
	}
	return s, seen
}

var nameCharsRE = regexp.MustCompile(`[^A-Za-z0-9._+-]+`)

// apkoName derives a spec name from an apko config's file name
// (nginx.apko.yaml -> nginx).
func apkoName(file string) string {
	base := filepath.Base(file)
	for _, ext := range []string{".yaml", ".yml", ".apko"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = nameCharsRE.ReplaceAllString(base, "-")
	if base == "" || !nameRE.MatchString(base) {
		return "image"
	}
	return base
}

func (p *parser) apkoContents(v *yaml.Node, s *Spec) {
	p.mapping(v, "contents", map[string]func(*yaml.Node){
		"repositories": func(v *yaml.Node) { p.repositories(v, s) },
		"keyring": func(v *yaml.Node) {
			for _, n := range p.list(v, "contents.keyring") {
				k := p.scalar(n, "contents.keyring")
				if strings.Contains(k, "://") {
					p.errorf(n, "contents.keyring: %q: alpinist does not download keys; save the key and give its file", k)
					continue
				}
				p.key(n, k, s)
			}
		},
		"packages": func(v *yaml.Node) {
			s.Packages = []apk.Dependency{}
			for _, n := range p.list(v, "contents.packages") {
				p.pkg(n, s)
			}
		},
		"build_repositories": func(v *yaml.Node) {
			p.warnf(v, "contents.build_repositories is ignored: list them under contents.repositories")
		},
		"baseimage": func(v *yaml.Node) { p.warnf(v, "contents.baseimage is ignored: alpinist builds from packages only") },
	})
}

func (p *parser) apkoEntrypoint(v *yaml.Node, s *Spec) {
	p.mapping(v, "entrypoint", map[string]func(*yaml.Node){
		"command": func(v *yaml.Node) { s.OCI.Entrypoint = p.words(v, "entrypoint.command") },
		"shell-fragment": func(v *yaml.Node) {
			s.OCI.Entrypoint = []string{"/bin/sh", "-c", p.scalar(v, "entrypoint.shell-fragment")}
		},
		"type": func(v *yaml.Node) {
			if t := p.scalar(v, "entrypoint.type"); t == "service-bundle" {
				p.warnf(v, "entrypoint.type: service-bundle (s6 supervision) is ignored: alpinist images run one entrypoint; enable OpenRC services for disk images with services:")
			}
		},
		"services": func(v *yaml.Node) {
			p.warnf(v, "entrypoint.services is ignored (s6 service bundles are not supported)")
		},
	})
}

func (p *parser) apkoAccounts(v *yaml.Node, s *Spec) {
	type member struct {
		group string
		node  *yaml.Node
		user  string
	}
	var members []member
	gids := map[int]string{}
	var userGIDs []*yaml.Node
	p.mapping(v, "accounts", map[string]func(*yaml.Node){
		"groups": func(v *yaml.Node) {
			for _, n := range p.list(v, "accounts.groups") {
				g := Group{}
				p.mapping(n, "accounts.groups", map[string]func(*yaml.Node){
					"groupname": func(v *yaml.Node) { g.Name = p.accountName(v, "accounts.groups.groupname") },
					"gid":       func(v *yaml.Node) { g.GID = p.id(v, "accounts.groups.gid") },
					"members": func(v *yaml.Node) {
						for _, m := range p.list(v, "accounts.groups.members") {
							members = append(members, member{user: p.scalar(m, "accounts.groups.members"), node: m})
						}
					},
				})
				for i := range members {
					if members[i].group == "" {
						members[i].group = g.Name
					}
				}
				if g.Name == "" {
					p.errorf(n, "accounts.groups: a group needs a groupname")
					continue
				}
				gids[g.GID] = g.Name
				s.Groups = append(s.Groups, g)
			}
		},
		"users": func(v *yaml.Node) {
			for _, n := range p.list(v, "accounts.users") {
				u := User{}
				var gid *yaml.Node
				p.mapping(n, "accounts.users", map[string]func(*yaml.Node){
					"username": func(v *yaml.Node) { u.Name = p.accountName(v, "accounts.users.username") },
					"uid":      func(v *yaml.Node) { u.UID = p.id(v, "accounts.users.uid") },
					"gid":      func(v *yaml.Node) { gid = v },
					"shell":    func(v *yaml.Node) { u.Shell = p.passwdPath(v, "accounts.users.shell") },
					"homedir":  func(v *yaml.Node) { u.Home = p.passwdPath(v, "accounts.users.homedir") },
				})
				if u.Name == "" {
					p.errorf(n, "accounts.users: a user needs a username")
					continue
				}
				if u.Home == "" {
					u.Home = "/home/" + u.Name
				}
				if u.Shell == "" {
					u.Shell = "/bin/sh"
				}
				s.Users = append(s.Users, u)
				userGIDs = append(userGIDs, gid)
			}
		},
		"run-as": func(v *yaml.Node) { s.OCI.User = p.scalar(v, "accounts.run-as") },
	})
	// A user's gid names its primary group among the groups given; a
	// user without one gets a group of its name, as with adduser.
	for i, n := range userGIDs {
		if n == nil {
			continue
		}
		id := p.id(n, "accounts.users.gid")
		name, ok := gids[id]
		if !ok {
			p.errorf(n, "accounts.users: %s: gid %d is not one of accounts.groups", s.Users[i].Name, id)
			continue
		}
		if name != s.Users[i].Name {
			s.Users[i].Group = name
		}
	}
	for _, m := range members {
		i := slices.IndexFunc(s.Users, func(u User) bool { return u.Name == m.user })
		if i < 0 {
			p.errorf(m.node, "accounts.groups.members: %s is not one of accounts.users", m.user)
			continue
		}
		if s.Users[i].Group != m.group && m.group != s.Users[i].Name {
			s.Users[i].Groups = append(s.Users[i].Groups, m.group)
		}
	}
	for i := range s.Users {
		u := &s.Users[i]
		if u.Group == "" && slices.ContainsFunc(s.Groups, func(g Group) bool { return g.Name == u.Name }) {
			u.Group = u.Name // apko's usual nginx/nginx pair: use the group given
		}
	}
}

func (p *parser) apkoPath(n *yaml.Node, s *Spec) {
	f := File{Mode: NoMode, DirMode: NoMode}
	var typ string
	typNode := n
	var uid, gid string
	var source *yaml.Node
	p.mapping(n, "paths", map[string]func(*yaml.Node){
		"path": func(v *yaml.Node) { f.Dst = p.scalar(v, "paths.path") },
		"type": func(v *yaml.Node) { typ, typNode = p.scalar(v, "paths.type"), v },
		"uid":  func(v *yaml.Node) { uid = strconv.Itoa(p.anyID(v, "paths.uid")) },
		"gid":  func(v *yaml.Node) { gid = strconv.Itoa(p.anyID(v, "paths.gid")) },
		"permissions": func(v *yaml.Node) {
			m, err := strconv.ParseInt(p.scalar(v, "paths.permissions"), 0, 32)
			if err != nil || m < 0 || m > 0o7777 {
				p.errorf(v, "paths.permissions: %q is not a mode such as 0o755", v.Value)
				return
			}
			f.Mode = int(m)
		},
		"source":    func(v *yaml.Node) { source = v },
		"recursive": func(v *yaml.Node) { p.warnf(v, "paths.recursive is ignored: only the path itself is changed") },
	})
	if n.Kind != yaml.MappingNode {
		return
	}
	if uid != "" || gid != "" {
		if uid == "" {
			uid = "0"
		}
		if gid == "" {
			gid = "0"
		}
		f.Owner = uid + ":" + gid
	}
	src := ""
	if source != nil {
		src = p.scalar(source, "paths.source")
	}
	switch typ {
	case "directory":
		f.Directory = true
	case "empty-file":
		f.HasContent = true
	case "symlink":
		f.Symlink = src
		f.Mode = NoMode // a symlink's mode means nothing
	case "hardlink":
		f.Hardlink = src
	case "permissions":
	default:
		p.errorf(typNode, "paths: type %q is not directory, empty-file, symlink, hardlink or permissions", typ)
		return
	}
	if (typ == "symlink" || typ == "hardlink") && src == "" {
		p.errorf(n, "paths: a %s needs source:", typ)
		return
	}
	if !strings.HasPrefix(f.Dst, "/") {
		p.errorf(n, "paths: path %q must be absolute", f.Dst)
		return
	}
	s.Files = append(s.Files, f)
}

// anyID reads a numeric id, 0 included (root).
func (p *parser) anyID(n *yaml.Node, field string) int {
	v, err := strconv.Atoi(p.scalar(n, field))
	if err != nil || v < 0 || v > 65535 {
		p.errorf(n, "%s: %q is not a number from 0 to 65535", field, n.Value)
	}
	return v
}

// words splits a command line the way a shell splits words: on blanks,
// with '...' and "..." quoting and backslash escapes.
func (p *parser) words(v *yaml.Node, field string) []string {
	text := p.scalar(v, field)
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	esc := false
	for _, r := range text {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' {
				esc = true
			} else {
				cur.WriteRune(r)
			}
		case r == '\\':
			esc, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || esc {
		p.errorf(v, "%s: unterminated quote or escape in %q", field, text)
		return nil
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

func (p *parser) warnf(n *yaml.Node, format string, args ...any) {
	p.warns = append(p.warns, fmt.Sprintf("%s:%d:%d: %s", p.file, n.Line, n.Column, fmt.Sprintf(format, args...)))
}
