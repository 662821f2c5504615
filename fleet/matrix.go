// Package fleet builds many specs for many arches: a matrix file names
// them, a plan gives every spec × arch its job and index, the
// Kubernetes manifests run the plan as Indexed Jobs (or an Argo
// Workflow), a worker builds one entry with the registry cache and
// pushes its image, and the assemble step pushes each spec's multi-arch
// index. Local runs execute the same plan as processes on this machine.
package fleet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/internal/yamldoc"
	"github.com/alpinist/alpinist/spec"
)

// Matrix is a matrix file: every spec built for every arch.
type Matrix struct {
	// File is the matrix file's path as given; Dir its directory
	// (absolute), which the specs are named relative to.
	File, Dir string
	// Specs are the specs, in the file's order.
	Specs []MatrixSpec
	// Arch are the Alpine arches, in the file's order.
	Arch []string
}

// MatrixSpec is one spec of a matrix.
type MatrixSpec struct {
	// Rel is the spec's path relative to the matrix's directory, with
	// '/' separators, as the plan names it.
	Rel string
	// Spec is the spec, loaded (nil from ParseMatrix).
	Spec *spec.Spec
}

// maxMatrixSize bounds a matrix file.
const maxMatrixSize = 1 << 20

// MatrixError is an error at a line of a matrix file.
type MatrixError struct {
	File string
	Line int // 0 when unknown
	Msg  string
}

func (e *MatrixError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("fleet: %s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("fleet: %s: %s", e.File, e.Msg)
}

// LoadMatrix reads the matrix file at file and loads each spec it names.
func LoadMatrix(file string) (*Matrix, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, &MatrixError{File: file, Msg: "not a regular file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMatrixSize+1))
	if err != nil {
		return nil, fmt.Errorf("fleet: %s: %w", file, err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	m, err := ParseMatrix(data, file, filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for i := range m.Specs {
		s := &m.Specs[i]
		if s.Spec, err = spec.Load(filepath.Join(m.Dir, filepath.FromSlash(s.Rel))); err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", file, err)
		}
		if !repoNameRE.MatchString(s.Spec.Name) {
			return nil, &MatrixError{File: file, Msg: fmt.Sprintf("%s: name %q names its image (REGISTRY/%s), and an image repository's name is lowercase letters and digits, separated by one '.', '_' or '-' (or __)", s.Rel, s.Spec.Name, s.Spec.Name)}
		}
		if other, ok := names[s.Spec.Name]; ok {
			return nil, &MatrixError{File: file, Msg: fmt.Sprintf("%s and %s are both named %q: each spec's image is REGISTRY/NAME, so names must differ", other, s.Rel, s.Spec.Name)}
		}
		names[s.Spec.Name] = s.Rel
	}
	return m, nil
}

// repoNameRE is a repository path component of the OCI distribution
// spec.
var repoNameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// ParseMatrix reads a matrix file's text without loading its specs:
// specs (paths relative to dir, inside it) and arch, both non-empty
// lists without repeats; nothing else.
func ParseMatrix(data []byte, file, dir string) (*Matrix, error) {
	if len(data) > maxMatrixSize {
		return nil, &MatrixError{File: file, Msg: fmt.Sprintf("larger than %d bytes", maxMatrixSize)}
	}
	root, err := yamldoc.One(data)
	var de *yamldoc.Error
	switch {
	case errors.Is(err, yamldoc.ErrEmpty):
		return nil, &MatrixError{File: file, Msg: "empty: a matrix is specs: [SPEC...] and arch: [ARCH...]"}
	case errors.As(err, &de):
		return nil, &MatrixError{File: file, Line: de.Line, Msg: de.Msg}
	case err != nil:
		return nil, &MatrixError{File: file, Msg: err.Error()}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &MatrixError{File: file, Line: root.Line, Msg: "a matrix is a mapping: specs: [SPEC...] and arch: [ARCH...]"}
	}
	m := &Matrix{File: file, Dir: dir}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return nil, &MatrixError{File: file, Line: k.Line, Msg: fmt.Sprintf("%s: given twice", k.Value)}
		}
		seen[k.Value] = true
		if k.Value != "specs" && k.Value != "arch" {
			return nil, &MatrixError{File: file, Line: k.Line, Msg: fmt.Sprintf("unknown field %q: a matrix has specs: and arch:", k.Value)}
		}
		items, err := stringList(file, k.Value, v)
		if err != nil {
			return nil, err
		}
		switch k.Value {
		case "specs":
			for j, s := range items {
				rel, err := specRel(s)
				if err != nil {
					return nil, &MatrixError{File: file, Line: v.Content[j].Line, Msg: fmt.Sprintf("specs: %q: %v", s, err)}
				}
				m.Specs = append(m.Specs, MatrixSpec{Rel: rel})
			}
		case "arch":
			for j, a := range items {
				if _, err := arch.Get(a); err != nil {
					return nil, &MatrixError{File: file, Line: v.Content[j].Line, Msg: fmt.Sprintf("arch: %v", err)}
				}
				m.Arch = append(m.Arch, a)
			}
		}
	}
	if len(m.Specs) == 0 {
		return nil, &MatrixError{File: file, Msg: "specs: no spec listed"}
	}
	if len(m.Arch) == 0 {
		return nil, &MatrixError{File: file, Msg: "arch: no arch listed"}
	}
	return m, nil
}

// stringList reads a list of distinct, non-empty strings.
func stringList(file, field string, v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, &MatrixError{File: file, Line: v.Line, Msg: fmt.Sprintf("%s: a list is expected ([a, b] or one \"- item\" per line)", field)}
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range v.Content {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Value == "" {
			return nil, &MatrixError{File: file, Line: n.Line, Msg: fmt.Sprintf("%s: each item is a non-empty string", field)}
		}
		if seen[n.Value] {
			return nil, &MatrixError{File: file, Line: n.Line, Msg: fmt.Sprintf("%s: %q listed twice", field, n.Value)}
		}
		seen[n.Value] = true
		out = append(out, n.Value)
	}
	return out, nil
}

// specRel checks a spec's path: relative, inside the matrix's directory
// (which a fleet ships to its pods whole).
func specRel(s string) (string, error) {
	if filepath.IsAbs(s) || strings.HasPrefix(s, "~") {
		return "", errors.New("name the spec relative to the matrix's directory: the fleet ships that directory to its pods")
	}
	rel := path.Clean(filepath.ToSlash(s))
	if rel == ".." || strings.HasPrefix(rel, "../") || rel == "." {
		return "", errors.New("the spec must be inside the matrix's directory: the fleet ships that directory to its pods")
	}
	return rel, nil
}
