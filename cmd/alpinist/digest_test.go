package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/alpinist/alpinist/assembler/output"
)

// TestSparseDigest: the digest of a sparse file, its holes hashed from
// memory, is its sha256; a result's own digest is taken as it is.
func TestSparseDigest(t *testing.T) {
	dir := t.TempDir()
	for name, layout := range map[string][]int64{"empty": nil, "data": {0}, "holes": {5 << 20, 9<<20 + 17}, "hole at the end": {0, -1}} {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range layout {
			if off < 0 {
				f.Truncate(20 << 20)
				continue
			}
			f.WriteAt([]byte("data here "+name), off)
		}
		f.Close()
		b, _ := os.ReadFile(p)
		want := fmt.Sprintf("sha256 %x", sha256.Sum256(b))
		if got := resultDigest(output.Result{Path: p}); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if got := resultDigest(output.Result{Path: "/nowhere", SHA256: "ab"}); got != "sha256 ab" {
		t.Errorf("given digest: %s", got)
	}
}
