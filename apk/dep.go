package apk

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/alpinist/alpinist/apk/version"
)

// The bytes apk-tools treats specially in dependencies (src/package.c):
// dependencies are separated by spaces and newlines only (a tab is part of
// a name), an operator is a run of < > = ~, and @ starts a repository tag.
const (
	depSeparators = " \n"
	depComparers  = "<>=~"
)

// ParseDependency parses one dependency expression as apk-tools'
// apk_blob_pull_dep does: [!]NAME[@TAG][OP VERSION], where OP is a run of
// the characters < > = ~ (see version.ParseOp). Examples: "busybox",
// "!foo", "musl>=1.2", "so:libc.musl-x86_64.so.1=1", "linux-lts~6.6",
// "foo@edge", "foo@edge>=1.2" (the tag comes before the operator; in
// "foo>=1.2@edge" the version is "1.2@edge", which is invalid), and
// "foo><Q1..." for a checksum.
//
// As in apk, the version must be valid (version.Valid) unless the operator
// contains both < and > (a checksum, whose text apk does not check here),
// and anything other than a space or newline may appear in a name. Unlike
// apk, which silently accepts them, an empty name ("!", ">=1") and an empty
// tag ("foo@") are errors, since they name nothing. Errors quote the text.
func ParseDependency(s string) (Dependency, error) {
	if s == "" {
		return Dependency{}, fmt.Errorf("empty dependency")
	}
	if strings.ContainsAny(s, depSeparators) {
		return Dependency{}, fmt.Errorf("dependency %q: contains a space or newline (a list, not one dependency)", s)
	}
	d := Dependency{Op: version.Any}
	rest := s
	if rest[0] == '!' {
		d.Conflict = true
		rest = rest[1:]
	}
	if i := strings.IndexAny(rest, depComparers); i >= 0 {
		op := rest[i:]
		j := strings.IndexFunc(op, func(r rune) bool { return !strings.ContainsRune(depComparers, r) })
		if j < 0 {
			return Dependency{}, fmt.Errorf("dependency %q: operator %q without a version", s, op)
		}
		mask, err := version.ParseOp(op[:j])
		if err != nil { // cannot happen: op[:j] holds only operator characters
			return Dependency{}, fmt.Errorf("dependency %q: %w", s, err)
		}
		d.Op, d.Version, rest = mask, op[j:], rest[:i]
		if d.Op&version.Checksum != version.Checksum && !version.Valid(d.Version) {
			return Dependency{}, fmt.Errorf("dependency %q: invalid version %q", s, d.Version)
		}
	}
	if name, tag, ok := strings.Cut(rest, "@"); ok {
		if tag == "" {
			return Dependency{}, fmt.Errorf("dependency %q: empty repository tag after @", s)
		}
		rest, d.Tag = name, tag
	}
	if rest == "" {
		return Dependency{}, fmt.Errorf("dependency %q: no package name", s)
	}
	d.Name = rest
	return d, nil
}

// ParseDependencies parses a list of dependencies separated by runs of
// spaces and newlines, as apk_blob_pull_deps reads APKINDEX D:, p:, i:, r:
// lines, .PKGINFO values and /etc/apk/world. An empty list gives nil.
// Leading separators are skipped (apk would read an empty name there).
func ParseDependencies(s string) ([]Dependency, error) {
	var deps []Dependency
	for len(s) > 0 {
		i := strings.IndexAny(s, depSeparators)
		if i < 0 {
			i = len(s)
		}
		if i > 0 {
			d, err := ParseDependency(s[:i])
			if err != nil {
				return nil, err
			}
			deps = append(deps, d)
		}
		s = strings.TrimLeft(s[i:], depSeparators)
	}
	return deps, nil
}

// String gives the dependency as apk-tools writes it (apk_blob_push_dep):
// [!]NAME[@TAG][OP VERSION], the operator as version.Op.String gives it,
// written whenever Version is set.
func (d Dependency) String() string {
	var b strings.Builder
	d.appendTo(&b)
	return b.String()
}

func (d Dependency) appendTo(b *strings.Builder) {
	if d.Conflict {
		b.WriteByte('!')
	}
	b.WriteString(d.Name)
	if d.Tag != "" {
		b.WriteByte('@')
		b.WriteString(d.Tag)
	}
	if d.Version != "" {
		b.WriteString(d.Op.String())
		b.WriteString(d.Version)
	}
}

// FormatDependencies writes deps as apk does in index and database lines
// (apk_blob_push_deps): each dependency's String, separated by one space.
func FormatDependencies(deps []Dependency) string {
	var b strings.Builder
	for i, d := range deps {
		if i > 0 {
			b.WriteByte(' ')
		}
		d.appendTo(&b)
	}
	return b.String()
}

// Constrained reports whether the dependency restricts versions (or a
// checksum), as opposed to accepting any version.
func (d Dependency) Constrained() bool { return d.Op != version.Any && d.Op != 0 }

// Matches reports whether a package or provider of version v satisfies the
// version constraint, ignoring Conflict (for a conflict, a match is what
// must not be installed): true when there is no constraint, else
// version.Match. A Checksum constraint never matches a version; use
// MatchesPackage.
func (d Dependency) Matches(v string) bool {
	if !d.Constrained() {
		return true
	}
	return version.Match(v, d.Op, d.Version)
}

// MatchesPackage reports whether p itself (by name, not through its
// provides) satisfies the constraint, ignoring Conflict, as
// apk_dep_is_materialized does; a Checksum constraint compares p's checksum
// with the dependency's (Q1, X1, Q2 or MD5 hex, see DecodeChecksum).
func (d Dependency) MatchesPackage(p *Package) bool {
	if p.Name != d.Name {
		return false
	}
	if d.Op == version.Checksum {
		sum, err := DecodeChecksum(d.Version)
		return err == nil && len(p.Checksum) > 0 && bytes.Equal(sum, p.Checksum)
	}
	return d.Matches(p.Version)
}
