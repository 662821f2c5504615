package output

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/assembler/rootfs"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/alpinist/alpinist/internal/treecmp"
	"github.com/alpinist/alpinist/spec"
)

// TestCanon: the outputs of an Arch given as a canonical tar read in
// place (Arch.Canon) are those of the same tar as a file (written first
// for the outputs that read the file), and the plain tar is left only
// when it is asked for.
// Plan.Digests gives the ext4 image's sha256 in its Result.
func TestCanon(t *testing.T) {
	for _, outputs := range [][]string{{"ext4"}, {"ext4", "tar"}, {"ext4", "tar.gz", "oci"}} {
		fromFile := runCanon(t, outputs, false)
		fromCanon := runCanon(t, outputs, true)
		if !maps.Equal(fromFile, fromCanon) {
			t.Errorf("%v: from the file %v\nfrom Canon %v", outputs, fromFile, fromCanon)
		}
	}
}

// runCanon writes outputs for two arches from the test rootfs made
// canonical, as a file or as a rootfs.Tar, and returns the files' sums.
func runCanon(t *testing.T, outputs []string, canon bool) map[string]string {
	dir := t.TempDir()
	sp := &spec.Spec{Name: "web", Hostname: "web", OCI: spec.OCI{Cmd: []string{"/bin/sh"}}}
	s, err := New(Plan{Spec: sp, Dir: dir, Outputs: outputs, Created: rootfstest.Created, Tool: "alpinist-test", Digests: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var results []Result
	for _, arch := range []string{"x86_64", "aarch64"} {
		a := Arch{Arch: arch, Tar: filepath.Join(dir, "web-"+arch+".tar"), Lock: &lock.Arch{Arch: arch, Packages: []lock.Package{{Name: "musl", Version: "1.2.5-r10", Repository: "https://example.org/alpine/main"}}}}
		tr, err := rootfs.Open(context.Background(), bytes.NewReader(rootfstest.Tar(t)), rootfstest.Created, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if canon {
			a.Canon = tr
		} else {
			var b bytes.Buffer
			if _, err := b.ReadFrom(tr.Reader()); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(a.Tar, b.Bytes(), 0o644)
		}
		res, err := s.Add(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(a.Tar); (err == nil) != slices.Contains(outputs, "tar") {
			t.Errorf("%v: the tar file left: %v", outputs, err == nil)
		}
		results = append(results, res...)
	}
	if _, err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Output != "ext4" {
			if r.SHA256 != "" {
				t.Errorf("%s: a digest", r.Path)
			}
			continue
		}
		b, _ := os.ReadFile(r.Path)
		if sum := sha256.Sum256(b); r.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: SHA256 %s, want %x", r.Path, r.SHA256, sum)
		}
	}
	sums, err := treecmp.Sums(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sums
}
