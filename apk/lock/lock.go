// Package lock reads and writes alpinist lock files: for each architecture,
// the exact packages a spec resolved to (name, version, checksum and the
// repository each came from). A locked build installs exactly these, and
// the checksums let the content-addressed cache serve packages that the
// mirrors have since deleted.
package lock

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/alpinist/alpinist/internal/atomicfile"

	"github.com/alpinist/alpinist/apk"
)

// FormatVersion is the lock file format this package writes.
const FormatVersion = 1

// File is a lock file.
type File struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Arches  []Arch `json:"arches"`
}

// Arch is the resolution for one architecture.
type Arch struct {
	Arch         string    `json:"arch"`
	Repositories []string  `json:"repositories"`
	World        []string  `json:"world"`
	Packages     []Package `json:"packages"`
}

// Package is one resolved package, in install order.
type Package struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	Checksum   string `json:"checksum"`   // Q1… or Q2…, as in APKINDEX
	Repository string `json:"repository"` // as in Repositories
	Size       int64  `json:"size,omitempty"`
}

// ChecksumBytes decodes the Q1/Q2 checksum.
func (p Package) ChecksumBytes() ([]byte, error) {
	return apk.DecodeChecksum(p.Checksum)
}

// Find returns the resolution for arch.
func (f *File) Find(arch string) (*Arch, bool) {
	for i := range f.Arches {
		if f.Arches[i].Arch == arch {
			return &f.Arches[i], true
		}
	}
	return nil, false
}

// Set replaces or adds the resolution for a.Arch, keeping the order of
// first appearance.
func (f *File) Set(a Arch) {
	for i := range f.Arches {
		if f.Arches[i].Arch == a.Arch {
			f.Arches[i] = a
			return
		}
	}
	f.Arches = append(f.Arches, a)
}

// Read parses a lock file. Local repository paths in it are relative to the
// lock file's directory and are returned absolute.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := Parse(bytes.NewReader(data), path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for i := range f.Arches {
		a := &f.Arches[i]
		for j, r := range a.Repositories {
			abs := absRepo(r, dir)
			for k := range a.Packages {
				if a.Packages[k].Repository == r {
					a.Packages[k].Repository = abs
				}
			}
			a.Repositories[j] = abs
		}
	}
	return f, nil
}

// Parse decodes and checks a lock file; name is used in errors.
func Parse(r io.Reader, name string) (*File, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("lock: %s: %w", name, err)
	}
	if f.Version != FormatVersion {
		return nil, fmt.Errorf("lock: %s: format version %d, this alpinist reads version %d", name, f.Version, FormatVersion)
	}
	for _, a := range f.Arches {
		if a.Arch == "" {
			return nil, fmt.Errorf("lock: %s: an entry has no arch", name)
		}
		repos := map[string]bool{}
		for _, r := range a.Repositories {
			repos[r] = true
		}
		for _, p := range a.Packages {
			if p.Name == "" || p.Version == "" {
				return nil, fmt.Errorf("lock: %s: %s: a package has no name or version", name, a.Arch)
			}
			if _, err := p.ChecksumBytes(); err != nil {
				return nil, fmt.Errorf("lock: %s: %s: %s-%s: %w", name, a.Arch, p.Name, p.Version, err)
			}
			if !repos[p.Repository] {
				return nil, fmt.Errorf("lock: %s: %s: %s-%s: repository %q is not in the arch's repositories", name, a.Arch, p.Name, p.Version, p.Repository)
			}
		}
	}
	return &f, nil
}

// Write writes f to path atomically (temporary file, then rename). Local
// repository paths are stored relative to the lock file's directory so the
// lock can be committed beside the spec.
func Write(path string, f *File) error {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	out := *f
	out.Version = FormatVersion
	out.Arches = make([]Arch, len(f.Arches))
	for i, a := range f.Arches {
		b := a
		b.Repositories = make([]string, len(a.Repositories))
		rel := map[string]string{}
		for j, r := range a.Repositories {
			b.Repositories[j] = relRepo(r, dir)
			rel[r] = b.Repositories[j]
		}
		b.Packages = make([]Package, len(a.Packages))
		for k, p := range a.Packages {
			if r, ok := rel[p.Repository]; ok {
				p.Repository = r
			}
			b.Packages[k] = p
		}
		out.Arches[i] = b
	}
	data, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	data = append(data, '\n')
	if err := atomicfile.WriteBytes(path, data, 0o644); err != nil {
		return fmt.Errorf("lock: %s: %w", path, err)
	}
	return nil
}

// repository strings may carry a pin tag: "@tag URL".
func splitTag(r string) (tag, url string) {
	if strings.HasPrefix(r, "@") {
		if t, u, ok := strings.Cut(r[1:], " "); ok {
			return t, u
		}
	}
	return "", r
}

func joinTag(tag, url string) string {
	if tag == "" {
		return url
	}
	return "@" + tag + " " + url
}

func isLocal(u string) bool { return !strings.Contains(u, "://") || strings.HasPrefix(u, "file://") }

func relRepo(r, dir string) string {
	tag, u := splitTag(r)
	if !isLocal(u) {
		return r
	}
	p := strings.TrimPrefix(u, "file://")
	if rel, err := filepath.Rel(dir, p); err == nil && filepath.IsAbs(p) {
		return joinTag(tag, filepath.ToSlash(rel))
	}
	return r
}

func absRepo(r, dir string) string {
	tag, u := splitTag(r)
	if !isLocal(u) {
		return r
	}
	p := strings.TrimPrefix(u, "file://")
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, filepath.FromSlash(p))
	}
	return joinTag(tag, filepath.Clean(p))
}

// URL is a repository line's URL or path, without its @tag.
func URL(r string) string {
	_, u := splitTag(r)
	return u
}

// Local tells whether a repository line (as in Repositories, with an
// optional @tag) is a directory of the build host.
func Local(r string) bool {
	_, u := splitTag(r)
	return isLocal(u)
}

// LocalLabel names a local repository without the host's path to it (which
// must not leak into what a build makes): its last path element, after
// its tag ("@edge testing").
func LocalLabel(r string) string {
	tag, u := splitTag(r)
	return joinTag(tag, path.Base(strings.TrimSuffix(strings.TrimPrefix(u, "file://"), "/")))
}

// SystemRepositories is /etc/apk/repositories for the built system: the
// repositories' lines, where those of the build host's directories, which
// the system cannot reach and whose paths must not leak, are comments
// naming them.
func SystemRepositories(repos []string) []string {
	out := make([]string, len(repos))
	for i, r := range repos {
		out[i] = r
		if Local(r) {
			out[i] = "# " + LocalLabel(r) + ": a local repository of the build host"
		}
	}
	return out
}
