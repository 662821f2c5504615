package gce

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

var mtime = time.Unix(1700000000, 0)

// disk writes a sparse GiB disk: data at its start, a few scattered
// blocks (so many that the map needs extension headers), and data, or
// not, at its very end.
func disk(t *testing.T, dir string, size int64, scattered int, tail bool) string {
	t.Helper()
	p := filepath.Join(dir, "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte("alpine "), 100000), 0)
	for i := range scattered {
		f.WriteAt([]byte("block"), int64(i+1)*(size/int64(scattered+2)))
	}
	if tail {
		f.WriteAt([]byte("end"), size-3)
	}
	return p
}

// TestGNUTarExtracts: GNU tar lists disk.raw as a sparse member of its
// full size and extracts the same bytes, whether the disk ends in data
// or in a hole, with a map in the header or in extension blocks; Go's
// reader agrees; two writes give the same bytes.
func TestGNUTarExtracts(t *testing.T) {
	gnuTar := hosttool.Need(t, "tar", "tar")
	for _, tc := range []struct {
		name      string
		scattered int
		tail      bool
	}{{"short map, data at the end", 2, true}, {"extension blocks, hole at the end", 60, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := disk(t, dir, GiB, tc.scattered, tc.tail)
			img := filepath.Join(dir, "disk.tar.gz")
			if err := WriteFile(context.Background(), img, raw, mtime); err != nil {
				t.Fatal(err)
			}
			again := filepath.Join(dir, "again.tar.gz")
			WriteFile(context.Background(), again, raw, mtime)
			a, _ := os.ReadFile(img)
			b, _ := os.ReadFile(again)
			if !bytes.Equal(a, b) {
				t.Error("two writes differ")
			}
			out, err := exec.Command(gnuTar, "-tvzf", img).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "1073741824") || !strings.HasSuffix(strings.TrimSpace(string(out)), " disk.raw") {
				t.Fatalf("tar -tv: %v\n%s", err, out)
			}
			x := filepath.Join(dir, "x")
			os.Mkdir(x, 0o755)
			if out, err := exec.Command(gnuTar, "-xzf", img, "-C", x).CombinedOutput(); err != nil {
				t.Fatalf("tar -x: %v\n%s", err, out)
			}
			if out, err := exec.Command("cmp", raw, filepath.Join(x, "disk.raw")).CombinedOutput(); err != nil {
				t.Errorf("GNU tar's disk.raw differs: %s", out)
			}
			// Go's reader: the member expands to the disk.
			zr, _ := gzip.NewReader(bytes.NewReader(a))
			tr := tar.NewReader(zr)
			h, err := tr.Next()
			if err != nil || h.Name != Name || h.Size != GiB || h.Typeflag != tar.TypeGNUSparse && h.Typeflag != tar.TypeReg {
				t.Fatalf("Go's reader: %+v, %v", h, err)
			}
			want, _ := os.Open(raw)
			defer want.Close()
			if eq, err := sameReader(tr, want); !eq {
				t.Errorf("Go's reader: the data differs: %v", err)
			}
		})
	}
}

func sameReader(a, b io.Reader) (bool, error) {
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, _ := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, ea
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return true, nil
		}
		if ea != nil {
			return false, ea
		}
	}
}

// TestRejects: a disk of no whole GiB is refused, saying why.
func TestRejects(t *testing.T) {
	dir := t.TempDir()
	raw := disk(t, dir, 3<<20, 0, true)
	err := WriteFile(context.Background(), filepath.Join(dir, "x.tar.gz"), raw, mtime)
	if err == nil || !strings.Contains(err.Error(), "whole GiB") {
		t.Errorf("a 3 MiB disk: %v", err)
	}
}

// TestNumbers: octal while it fits, GNU base-256 past 8 GiB (a 10 GiB
// disk's size).
func TestNumbers(t *testing.T) {
	f := make([]byte, 12)
	number(f, 0o1234)
	if string(f) != "00000001234\x00" {
		t.Errorf("octal: %q", f)
	}
	number(f, 10*GiB)
	if f[0] != 0x80 || !bytes.Equal(f[8:], []byte{0x80, 0, 0, 0}) || f[7] != 2 {
		t.Errorf("base-256: % x", f)
	}
}
