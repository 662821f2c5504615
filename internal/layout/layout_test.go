package layout

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/alpinist/alpinist"

// layers are the tree's layers, bottom first: a package may import its
// own layer's packages and lower ones. A package belongs to the layer of
// the longest prefix that names it.
var layers = []struct {
	name     string
	prefixes []string
}{
	{"utilities", []string{"arch", "internal"}},
	{"apk", []string{"apk"}},
	{"spec", []string{"spec", "bootdisk", "sysconfig"}},
	{"build VM", []string{"agent", "initramfs", "qemu"}},
	{"assembler", []string{"assembler"}},
	{"build", []string{"builder", "repro", "regcache", "fleet"}},
	{"commands", []string{"cmd"}},
	// The test kit: packages that help tests (and the commands that
	// make test data) build repositories, boot VMs and check outputs.
	{"test kit", []string{"internal/testkit", "cmd/testrepo", "cmd/bench"}},
}

// layerOf gives a package's layer index, -1 for none.
func layerOf(rel string) int {
	best, bestLen := -1, -1
	for i, l := range layers {
		for _, p := range l.prefixes {
			if (rel == p || strings.HasPrefix(rel, p+"/")) && len(p) > bestLen {
				best, bestLen = i, len(p)
			}
		}
	}
	return best
}

type pkg struct {
	ImportPath string
	Dir        string
	Doc        string
	Name       string
	GoFiles    []string
	Imports    []string
}

// packages lists the module's packages (go list).
func packages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 40 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

// TestLayers: no package imports a package of a higher layer (test files
// are free to), and every package has a layer.
func TestLayers(t *testing.T) {
	for _, p := range packages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		from := layerOf(rel)
		if from < 0 {
			t.Errorf("%s: in no layer (add it to layers here and to docs/architecture.md)", rel)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			irel := strings.TrimPrefix(imp, module+"/")
			to := layerOf(irel)
			if to > from {
				t.Errorf("%s (%s) imports %s (%s): a lower layer may not import a higher one", rel, layers[from].name, irel, layers[to].name)
			}
		}
	}
}

// TestSizes: no function over 120 lines, no file over 600, outside the
// solver's port of apk's solver; and every package has a doc comment.
func TestSizes(t *testing.T) {
	const maxFunc, maxFile = 120, 600
	fset := token.NewFileSet()
	for _, p := range packages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s: no package comment", rel)
		}
		if rel == "apk/solver" {
			continue
		}
		for _, name := range p.GoFiles {
			path := filepath.Join(p.Dir, name)
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if n := fset.File(f.Pos()).LineCount(); n > maxFile {
				t.Errorf("%s/%s: %d lines, over %d", rel, name, n, maxFile)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				var body *ast.BlockStmt
				what := "a function literal"
				switch x := n.(type) {
				case *ast.FuncDecl:
					body, what = x.Body, x.Name.Name
				case *ast.FuncLit:
					body = x.Body
				}
				if body != nil {
					if lines := fset.Position(body.End()).Line - fset.Position(n.Pos()).Line + 1; lines > maxFunc {
						t.Errorf("%s: %s is %d lines, over %d", fset.Position(n.Pos()), what, lines, maxFunc)
					}
				}
				return true
			})
		}
	}
}

// TestArchitectureDoc: docs/architecture.md names every package (the
// test kit's by their short names in its row).
func TestArchitectureDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range packages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		name := rel
		if short, ok := strings.CutPrefix(rel, "internal/testkit/"); ok {
			name = short
		}
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("docs/architecture.md does not name %s", rel)
		}
	}
}
