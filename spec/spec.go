// Package spec reads alpinist's build specification, a YAML file naming what
// to build: the system's name, its architectures, the repositories and keys
// packages come from, and the packages to install.
//
// Decoding is strict: an unknown field, a value of the wrong type or a bad
// package expression is an error naming the file and line. Relative paths
// (local repositories, keys) are resolved against the spec file's directory.
package spec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/internal/yamldoc"
)

// Spec is a parsed and validated build specification.
type Spec struct {
	// Path is the file the spec was read from ("" when read from a reader).
	Path string
	// Name names the outputs (NAME-ARCH.tar, ...).
	Name string
	// Arch lists the Alpine architectures to build, in the spec's order.
	Arch []string
	// Repositories are searched in order; a tagged one (written "@tag URL")
	// only serves dependencies pinned with name@tag.
	Repositories []Repository
	// Keys are absolute paths of directories or .rsa.pub files trusted to
	// sign packages and indexes.
	Keys []string
	// Packages is the world: what to install, as apk dependency expressions.
	Packages []apk.Dependency
	// Installer chooses who installs the packages in the build VM.
	Installer Installer
	// Hostname is written to /etc/hostname and /etc/hosts ("" leaves
	// what the packages installed).
	Hostname string
	// Groups and Users are created after the install, groups first.
	Groups []Group
	Users  []User
	// Timezone is a zone of the tz database ("Europe/Paris"): /etc/localtime
	// links to its file of the tzdata package, /etc/timezone names it.
	Timezone string
	// Cloud turns on first-boot configuration by Alpine's tiny-cloud
	// for a cloud: nocloud, alpine (NoCloud with #alpine-config
	// user-data), aws, azure, gcp or oci ("": none). See Clouds.
	Cloud string
	// Services are OpenRC services to enable, by runlevel (sysinit, boot,
	// default, shutdown), as rc-update add does.
	Services map[string][]string
	// Files are copied into (or made in) the target, in order, after the
	// users are created.
	Files []File
	// Network is written to /etc/network/interfaces and /etc/resolv.conf
	// (nil: left as the packages made it, or DHCP on eth0 for a disk).
	Network *Network
	// Disk describes the bootable disk image (nil: no disk).
	Disk *Disk
	// OCI is the container image configuration.
	OCI OCI
	// WSL is /etc/wsl.conf of the wsl output (nil: none written).
	WSL WSL
	// Outputs are the output kinds to write (nil: the command line's).
	Outputs []string
	// Run are shell commands run in order, after the packages are
	// installed, with the target's /bin/sh in a chroot of the target.
	Run []string
	// Extends is the absolute path of the spec this one extends ("").
	Extends string
	// Warnings are things of the spec alpinist does not use (fields of an
	// apko config it has no equivalent for), with file and line.
	Warnings []string
}

// Installer is the spec's installer field: alpinist's own installer (the
// default), or Alpine's real apk-tools from a minirootfs.
type Installer struct {
	// Type is "alpinist" or "apk-tools".
	Type string
	// Minirootfs is the absolute path of an Alpine minirootfs .tar.gz
	// whose sbin/apk does the install (apk-tools only).
	Minirootfs string
	// SHA256 and SHA512, when given, must match the minirootfs (hex).
	SHA256, SHA512 string
}

// Repository is one package repository: an http(s):// or file:// URL
// or an absolute directory path (relative paths in the spec are made
// absolute), and its pin tag, empty for an untagged repository.
type Repository = repo.Repository

// Load reads and validates the spec at path.
func Load(path string) (*Spec, error) {
	data, err := readSpecFile(path)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return parse(data, path, filepath.Dir(abs))
}

// Parse reads a spec from r; name is used in error messages and relative
// paths resolve against dir.
func Parse(r io.Reader, name, dir string) (*Spec, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("spec: %s: %w", name, err)
	}
	return parse(data, name, dir)
}

const maxSpecSize = 4 << 20

// readSpecFile reads a spec file: a regular file (not a device such as
// /dev/zero, a FIFO or a directory) of at most maxSpecSize bytes, of
// which no more is read.
func readSpecFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (a spec is a YAML file)", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxSpecSize {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a spec", path, maxSpecSize)
	}
	return data, nil
}

// notASpec refuses a YAML mapping none of whose keys is a spec field
// (/etc/shadow parses as one): without quoting any of it.
func notASpec(root *yaml.Node, file string) error {
	for i := 0; i < len(root.Content); i += 2 {
		if slices.Contains(KnownFields, root.Content[i].Value) {
			return nil
		}
	}
	return &Error{File: file, Msg: "not an alpinist spec: none of its keys is a spec field (name:, packages:, ...)"}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// CheckName checks a system's name, which names its output files: a
// letter or digit, then letters, digits, '.', '_', '+' and '-', at most
// 128 in all (no '/', never a hidden file).
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q: use letters, digits, '.', '_', '+' and '-', starting with a letter or digit, at most 128 (it names output files)", truncate(name))
	}
	return nil
}

// Error is a spec error at a line of a file.
type Error struct {
	File   string
	Line   int // 0 when unknown
	Column int // 0 when unknown
	Msg    string
}

func (e *Error) Error() string {
	if e.Line > 0 && e.Column > 0 {
		return fmt.Sprintf("spec: %s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	if e.Line > 0 {
		return fmt.Sprintf("spec: %s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("spec: %s: %s", e.File, e.Msg)
}

type parser struct {
	file  string
	dir   string
	errs  []error
	warns []string
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func parse(data []byte, file, dir string) (*Spec, error) {
	return parseChain(data, file, dir, nil)
}

// parseChain parses one spec file and, when it extends another, the base
// first; stack holds the files of the chain so far (to refuse a cycle).
func parseChain(data []byte, file, dir string, stack []string) (*Spec, error) {
	root, err := decode(data, file)
	if err != nil {
		return nil, err
	}
	p := &parser{file: file, dir: dir}
	var s *Spec
	var seen map[string]*yaml.Node
	if isApko(root) {
		s, seen = p.apko(root)
	} else {
		if err := notASpec(root, file); err != nil {
			return nil, err
		}
		s, seen = p.fields(root)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	s.Warnings = p.warns
	if n := seen["extends"]; n != nil {
		base, err := p.loadBase(valueOf(root, n), s.Extends, append(stack, file))
		if err != nil {
			return nil, err
		}
		s = merge(base, s, seen)
	}
	if len(stack) > 0 {
		// A base spec may leave out what the spec extending it gives.
		return s, nil
	}
	if s.Name == "" {
		p.errorf(root, "missing field \"name\"")
	}
	if len(s.Arch) == 0 {
		s.Arch = []string{arch.Host()}
	}
	if len(s.Repositories) == 0 {
		p.errorf(root, "missing field \"repositories\": at least one repository is needed")
	}
	if len(s.Packages) == 0 {
		p.errorf(root, "missing field \"packages\"")
	}
	p.checkArches(root, s)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return s, nil
}

// valueOf gives the value node of key node k in mapping m.
func valueOf(m, k *yaml.Node) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i] == k {
			return m.Content[i+1]
		}
	}
	return k
}

// decode reads the single YAML document of a spec and returns its root
// mapping.
func decode(data []byte, file string) (*yaml.Node, error) {
	if len(data) > maxSpecSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than %d bytes", maxSpecSize)}
	}
	root, err := yamldoc.One(data)
	var de *yamldoc.Error
	switch {
	case errors.Is(err, yamldoc.ErrEmpty):
		return nil, &Error{File: file, Msg: "empty spec"}
	case errors.As(err, &de):
		return nil, &Error{File: file, Line: de.Line, Msg: de.Msg}
	case err != nil:
		return nil, &Error{File: file, Msg: err.Error()}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: root.Line, Msg: "the spec must be a mapping of fields (name:, arch:, packages:, ...)"}
	}
	return root, nil
}

// fields reads alpinist's own spec format; seen maps each field given to
// its key node.
func (p *parser) fields(root *yaml.Node) (*Spec, map[string]*yaml.Node) {
	s := &Spec{Path: p.file}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			p.errorf(k, "field %q given twice (first at line %d)", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		switch k.Value {
		case "name":
			s.Name = p.scalar(v, "name")
			if err := CheckName(s.Name); s.Name != "" && err != nil {
				p.errorf(v, "%v", err)
			}
		case "extends":
			if e := p.scalar(v, "extends"); e != "" {
				s.Extends = p.path(e)
			}
		case "arch":
			p.arches(v, s)
		case "repositories":
			p.repositories(v, s)
		case "keys":
			p.keys(v, s)
		case "packages":
			for _, n := range p.list(v, "packages") {
				p.pkg(n, s)
			}
		case "installer":
			p.installer(v, s)
		case "hostname":
			s.Hostname = p.scalar(v, "hostname")
			if s.Hostname != "" && !hostnameRE.MatchString(s.Hostname) {
				p.errorf(v, "hostname %q: use letters, digits and '-', dot-separated labels of at most 63 characters", s.Hostname)
			}
		case "timezone":
			p.timezone(v, s)
		case "cloud":
			s.Cloud = p.scalar(v, "cloud")
			if s.Cloud != "" && !slices.Contains(Clouds, s.Cloud) {
				p.errorf(v, "cloud %q: tiny-cloud knows %s", s.Cloud, strings.Join(Clouds, ", "))
			}
		case "groups":
			p.groups(v, s)
		case "users":
			p.users(v, s)
		case "services":
			p.services(v, s)
		case "files":
			p.files(v, s)
		case "network":
			p.network(v, s)
		case "disk":
			p.disk(v, s)
		case "oci":
			p.oci(v, s)
		case "wsl":
			p.wsl(v, s)
		case "outputs":
			p.outputs(v, s)
		case "run":
			for _, n := range p.list(v, "run") {
				if c := p.scalar(n, "run"); c != "" {
					s.Run = append(s.Run, c)
				}
			}
		default:
			p.errorf(k, "unknown field %q (known: %s)", k.Value, strings.Join(KnownFields, ", "))
		}
	}
	return s, seen
}

func (p *parser) keys(v *yaml.Node, s *Spec) {
	for _, n := range p.list(v, "keys") {
		p.key(n, p.scalar(n, "keys"), s)
	}
}

// key adds the key file or directory k (from node n).
func (p *parser) key(n *yaml.Node, k string, s *Spec) {
	if k == "" {
		return
	}
	k = p.path(k)
	if _, err := os.Stat(k); err != nil {
		p.errorf(n, "keys: %v", err)
		return
	}
	s.Keys = append(s.Keys, k)
}

func (p *parser) pkg(n *yaml.Node, s *Spec) {
	text := p.scalar(n, "packages")
	if text == "" {
		return
	}
	d, err := apk.ParseDependency(text)
	if err != nil {
		p.errorf(n, "packages: %v", err)
		return
	}
	s.Packages = append(s.Packages, d)
}

// KnownFields are the spec's top-level fields, in the order docs/spec.md
// documents them.
var KnownFields = []string{"name", "extends", "arch", "repositories", "keys", "packages", "installer",
	"hostname", "timezone", "cloud", "groups", "users", "services", "files", "network", "disk", "oci", "wsl", "outputs", "run"}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// installer reads "installer: alpinist", or a mapping
// {type: apk-tools, minirootfs: FILE, sha256: HEX, sha512: HEX}.
func (p *parser) installer(v *yaml.Node, s *Spec) {
	s.Installer.Type = "alpinist"
	if v.Kind == yaml.ScalarNode {
		t := p.scalar(v, "installer")
		switch t {
		case "alpinist":
		case "apk-tools":
			p.errorf(v, "installer: apk-tools needs a minirootfs: write installer: {type: apk-tools, minirootfs: FILE.tar.gz, sha256: HEX}")
		default:
			p.errorf(v, "installer: %q is not alpinist or apk-tools", t)
		}
		return
	}
	if v.Kind != yaml.MappingNode {
		p.errorf(v, "installer: expected alpinist or a mapping {type: apk-tools, minirootfs: FILE}")
		return
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		switch k.Value {
		case "type":
			s.Installer.Type = p.scalar(val, "installer.type")
			if s.Installer.Type != "alpinist" && s.Installer.Type != "apk-tools" {
				p.errorf(val, "installer.type: %q is not alpinist or apk-tools", s.Installer.Type)
			}
		case "minirootfs":
			m := p.scalar(val, "installer.minirootfs")
			if strings.Contains(m, "://") {
				p.errorf(val, "installer.minirootfs: URLs are not supported yet; download it and give the file")
				continue
			}
			s.Installer.Minirootfs = p.path(m)
			if _, err := os.Stat(s.Installer.Minirootfs); err != nil {
				p.errorf(val, "installer.minirootfs: %v", err)
			}
		case "sha256", "sha512":
			h := strings.ToLower(p.scalar(val, "installer."+k.Value))
			want := map[string]int{"sha256": 64, "sha512": 128}[k.Value]
			if len(h) != want || strings.Trim(h, "0123456789abcdef") != "" {
				p.errorf(val, "installer.%s: expected %d hex digits", k.Value, want)
			}
			if k.Value == "sha256" {
				s.Installer.SHA256 = h
			} else {
				s.Installer.SHA512 = h
			}
		default:
			p.errorf(k, "installer: unknown field %q (known: type, minirootfs, sha256, sha512)", k.Value)
		}
	}
	if s.Installer.Type == "apk-tools" && s.Installer.Minirootfs == "" {
		p.errorf(v, "installer: apk-tools needs minirootfs: FILE.tar.gz (an Alpine minirootfs of the target arch)")
	}
}

func (p *parser) scalar(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, "%s: expected a string", field)
		return ""
	}
	v := strings.TrimSpace(n.Value)
	if v == "" {
		p.errorf(n, "%s: empty value", field)
	}
	return v
}

// list accepts a sequence, or a single scalar as a one-element list.
func (p *parser) list(n *yaml.Node, field string) []*yaml.Node {
	switch n.Kind {
	case yaml.SequenceNode:
		return n.Content
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []*yaml.Node{n}
	}
	p.errorf(n, "%s: expected a list", field)
	return nil
}

func (p *parser) arches(v *yaml.Node, s *Spec) {
	for _, n := range p.list(v, "arch") {
		a := p.scalar(n, "arch")
		if a == "" {
			continue
		}
		if _, ok := arch.Lookup(a); !ok {
			p.errorf(n, "arch %q is not an Alpine architecture (known: %s)", a, strings.Join(arch.Names(), ", "))
			continue
		}
		if slices.Contains(s.Arch, a) {
			p.errorf(n, "arch %q listed twice", a)
			continue
		}
		s.Arch = append(s.Arch, a)
	}
}

func (p *parser) repositories(v *yaml.Node, s *Spec) {
	for _, n := range p.list(v, "repositories") {
		text := p.scalar(n, "repositories")
		if text == "" {
			continue
		}
		r := Repository{URL: text}
		if strings.HasPrefix(text, "@") {
			tag, url, ok := strings.Cut(text[1:], " ")
			url = strings.TrimSpace(url)
			if !ok || tag == "" || url == "" {
				p.errorf(n, "repositories: %q: a pinned repository is written \"@TAG URL\"", text)
				continue
			}
			r = Repository{URL: url, Tag: tag}
		}
		switch {
		case strings.HasPrefix(r.URL, "http://"), strings.HasPrefix(r.URL, "https://"):
		case strings.HasPrefix(r.URL, "file://"):
			r.URL = p.path(strings.TrimPrefix(r.URL, "file://"))
		case strings.Contains(r.URL, "://"):
			p.errorf(n, "repositories: %q: unsupported scheme (use http://, https://, file:// or a directory)", r.URL)
			continue
		default:
			r.URL = p.path(r.URL)
		}
		s.Repositories = append(s.Repositories, r)
	}
}

func (p *parser) path(s string) string {
	if strings.HasPrefix(s, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			s = filepath.Join(home, s[2:])
		}
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.dir, s)
	}
	return filepath.Clean(s)
}
