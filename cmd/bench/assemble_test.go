package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestGenTree: the tree is the same every time, and the directory holds
// what the tar does.
func TestGenTree(t *testing.T) {
	var tars [2][]byte
	var dir string
	for i := range tars {
		dir = t.TempDir()
		p := filepath.Join(dir, "tree.tar")
		if _, err := genTree(filepath.Join(dir, "tree"), p, 700); err != nil {
			t.Fatal(err)
		}
		tars[i], _ = os.ReadFile(p)
	}
	if !bytes.Equal(tars[0], tars[1]) {
		t.Fatal("two trees differ")
	}
	tr := tar.NewReader(bytes.NewReader(tars[1]))
	files, links := 0, 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "tree", h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			files++
			want, _ := io.ReadAll(tr)
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %v", h.Name, err)
			}
		case tar.TypeSymlink:
			links++
			if got, err := os.Readlink(p); err != nil || got != h.Linkname {
				t.Errorf("%s: %q, %v", h.Name, got, err)
			}
		}
	}
	if files != 700 || links != treeLinks {
		t.Errorf("%d files, %d links", files, links)
	}
}
