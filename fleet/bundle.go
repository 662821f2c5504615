package fleet

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/spec"
)

// Bundle is what a fleet's pods need of the matrix's directory: the
// matrix file, the specs and the specs they extend, and the files they
// name (keys, files: sources, an apk-tools minirootfs). Kubernetes gets
// it as a ConfigMap mounted where the plan is.
type Bundle struct {
	Files []BundleFile // by Rel
}

// BundleFile is one file of a bundle.
type BundleFile struct {
	Rel  string // relative to the matrix's directory, '/'
	Exec bool   // its owner may execute it (mode 0755, else 0644)
	Data []byte
}

// MaxBundle bounds a bundle: a ConfigMap holds at most 1 MiB, and the
// plan and the object's own fields need some of it.
const MaxBundle = 900 << 10

// NewBundle collects the bundle of a loaded matrix. Everything must be
// inside the matrix's directory, and no repository may be a local
// directory: a pod has neither.
func NewBundle(m *Matrix) (*Bundle, error) {
	b := &bundler{dir: m.Dir, files: map[string]BundleFile{}}
	if real, err := filepath.EvalSymlinks(m.Dir); err == nil {
		b.dir = real
	}
	abs, err := filepath.Abs(m.File)
	if err != nil {
		return nil, err
	}
	if err := b.add(abs, "the matrix"); err != nil {
		return nil, err
	}
	for _, s := range m.Specs {
		if err := b.spec(s.Spec, s.Rel); err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", s.Rel, err)
		}
	}
	out := &Bundle{}
	for _, f := range b.files {
		out.Files = append(out.Files, f)
	}
	slices.SortFunc(out.Files, func(a, b BundleFile) int { return strings.Compare(a.Rel, b.Rel) })
	if size := out.Size(); size > MaxBundle {
		return nil, fmt.Errorf("fleet: the specs' files take %d KiB and a ConfigMap holds less than 1 MiB (%d KiB of it for files): leave large files out of files: (build them into a package), or split the matrix", size>>10, MaxBundle>>10)
	}
	return out, nil
}

// Size is what the bundle's files take in a ConfigMap.
func (b *Bundle) Size() int {
	n := 0
	for _, f := range b.Files {
		n += f.Size()
	}
	return n
}

// Size is what the file takes in a ConfigMap: its text, or its bytes in
// base64.
func (f BundleFile) Size() int {
	if f.Text() {
		return len(f.Data) + len(f.Rel)
	}
	return (len(f.Data)+2)/3*4 + len(f.Rel)
}

// Text tells whether the file goes in a ConfigMap's data (UTF-8) or its
// binaryData.
func (f BundleFile) Text() bool { return utf8.Valid(f.Data) }

// Sum hashes the bundle: paths, modes and contents.
func (b *Bundle) Sum() []byte {
	h := sha256.New()
	for _, f := range b.Files {
		fmt.Fprintf(h, "%s\x00%t\x00%d\x00", f.Rel, f.Exec, len(f.Data))
		h.Write(f.Data)
	}
	return h.Sum(nil)
}

type bundler struct {
	dir   string
	files map[string]BundleFile
}

// spec adds a spec's files and those of the specs it extends.
func (b *bundler) spec(s *spec.Spec, rel string) error {
	for _, r := range s.Repositories {
		if !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://") {
			return fmt.Errorf("repository %s is a local directory, which a pod does not have: serve it over HTTP(S)", r.URL)
		}
	}
	if err := b.add(filepath.Join(b.dir, filepath.FromSlash(rel)), "the spec"); err != nil {
		return err
	}
	for _, k := range s.Keys {
		if err := b.add(k, "keys:"); err != nil {
			return err
		}
	}
	for _, f := range s.Files {
		if f.Src != "" {
			if err := b.add(f.Src, "files: src"); err != nil {
				return err
			}
		}
	}
	if s.Installer.Minirootfs != "" {
		if err := b.add(s.Installer.Minirootfs, "installer: minirootfs"); err != nil {
			return err
		}
	}
	// The specs it extends (their keys and files are the merged spec's).
	for base, seen := s.Extends, 0; base != ""; seen++ {
		if seen > 16 {
			return fmt.Errorf("extends: a chain of more than 16 specs")
		}
		if err := b.add(base, "extends:"); err != nil {
			return err
		}
		data, err := os.ReadFile(base)
		if err != nil {
			return err
		}
		var next struct {
			Extends string `yaml:"extends"`
		}
		if err := yaml.Unmarshal(data, &next); err != nil {
			return fmt.Errorf("extends: %s: %w", base, err)
		}
		if next.Extends != "" && !filepath.IsAbs(next.Extends) {
			next.Extends = filepath.Join(filepath.Dir(base), next.Extends)
		}
		base = next.Extends
	}
	return nil
}

// add adds a file, or a directory's files, which must be inside the
// matrix's directory.
func (b *bundler) add(p, what string) error {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, p, err)
	}
	rel, err := filepath.Rel(b.dir, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("%s %s is outside the matrix's directory %s, which is what the fleet ships to its pods: move it inside", what, p, b.dir)
	}
	return filepath.WalkDir(real, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: %s is not a regular file (a ConfigMap holds files only)", what, path)
		}
		r, _ := filepath.Rel(b.dir, path)
		r = filepath.ToSlash(r)
		if _, ok := b.files[r]; ok {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > MaxBundle {
			return fmt.Errorf("%s: %s has %d KiB, more than a ConfigMap holds", what, path, fi.Size()>>10)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		b.files[r] = BundleFile{Rel: r, Exec: fi.Mode()&0o100 != 0, Data: data}
		return nil
	})
}
