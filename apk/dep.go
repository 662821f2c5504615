package apk

import (
	"fmt"
	"strings"

	"github.com/alpinist/alpinist/apk/version"
)

// ParseDependency parses one dependency expression as apk-tools does:
// [!]NAME[@TAG][OP VERSION], where OP is made of < > = ~ (e.g. "busybox",
// "!foo", "musl>=1.2", "so:libz.so.1", "linux-lts~6.6", "foo@edge",
// "foo><Q1base64" for a checksum match).
func ParseDependency(s string) (Dependency, error) {
	var d Dependency
	orig := s
	if s == "" {
		return d, fmt.Errorf("empty dependency")
	}
	if strings.ContainsAny(s, " \t\n") {
		return d, fmt.Errorf("dependency %q: contains white space", orig)
	}
	if s[0] == '!' {
		d.Conflict = true
		s = s[1:]
	}
	d.Op = version.Any
	if i := strings.IndexAny(s, "<>=~"); i >= 0 {
		name, rest := s[:i], s[i:]
		j := strings.IndexFunc(rest, func(r rune) bool { return !strings.ContainsRune("<>=~", r) })
		if j < 0 {
			return Dependency{}, fmt.Errorf("dependency %q: operator without a version", orig)
		}
		op, err := version.ParseOp(rest[:j])
		if err != nil {
			return Dependency{}, fmt.Errorf("dependency %q: %w", orig, err)
		}
		d.Op, d.Version, s = op, rest[j:], name
		if d.Op != version.Checksum && !version.Valid(d.Version) {
			return Dependency{}, fmt.Errorf("dependency %q: invalid version %q", orig, d.Version)
		}
		if d.Op == version.Checksum {
			if _, err := DecodeChecksum(d.Version); err != nil {
				return Dependency{}, fmt.Errorf("dependency %q: %w", orig, err)
			}
		}
	}
	if name, tag, ok := strings.Cut(s, "@"); ok {
		if tag == "" {
			return Dependency{}, fmt.Errorf("dependency %q: empty repository tag after @", orig)
		}
		s, d.Tag = name, tag
	}
	if s == "" {
		return Dependency{}, fmt.Errorf("dependency %q: no package name", orig)
	}
	d.Name = s
	return d, nil
}

// ParseDependencies parses a list of dependencies separated by spaces (or
// newlines), as in APKINDEX D:, p:, i:, r: lines and .PKGINFO.
func ParseDependencies(s string) ([]Dependency, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\n' })
	if len(fields) == 0 {
		return nil, nil
	}
	deps := make([]Dependency, 0, len(fields))
	for _, f := range fields {
		d, err := ParseDependency(f)
		if err != nil {
			return nil, err
		}
		deps = append(deps, d)
	}
	return deps, nil
}

// String gives the dependency in apk's canonical form.
func (d Dependency) String() string {
	var b strings.Builder
	if d.Conflict {
		b.WriteByte('!')
	}
	b.WriteString(d.Name)
	if d.Tag != "" {
		b.WriteString("@" + d.Tag)
	}
	if d.Op != version.Any && d.Op != 0 {
		b.WriteString(d.Op.String())
		b.WriteString(d.Version)
	}
	return b.String()
}

// Constrained reports whether the dependency restricts versions (or a
// checksum), as opposed to accepting any version.
func (d Dependency) Constrained() bool { return d.Op != version.Any && d.Op != 0 }

// MatchesVersion reports whether a package or provide of version v
// satisfies the version constraint, ignoring Conflict. A Checksum
// constraint never matches a version; use MatchesPackage.
func (d Dependency) MatchesVersion(v string) bool {
	if !d.Constrained() {
		return true
	}
	return version.Match(v, d.Op, d.Version)
}

// MatchesPackage reports whether p itself (by name, not by its provides)
// satisfies the constraint, ignoring Conflict; a Checksum constraint
// compares p's checksum.
func (d Dependency) MatchesPackage(p *Package) bool {
	if p.Name != d.Name {
		return false
	}
	if d.Op == version.Checksum {
		return d.Version == EncodeChecksum(p.Checksum)
	}
	return d.MatchesVersion(p.Version)
}

func joinDeps(deps []Dependency) string {
	var b strings.Builder
	for i, d := range deps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(d.String())
	}
	return b.String()
}
