package qcow2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/benchcmp"
	"github.com/alpinist/alpinist/internal/testkit/disktest"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

func rawImage(t testing.TB, dir string, size int64, seed uint64) string {
	return disktest.RawImage(t, dir, size, seed)
}

func TestQemuAccepts(t *testing.T) {
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	for _, tc := range []struct {
		name string
		size int64
		o    Options
	}{
		{"64k", 6<<20 + 12345, Options{}},
		{"64k-zstd", 6<<20 + 12345, Options{Compress: true}},
		// Small clusters: many L2 tables, several refcount blocks and a
		// refcount table of several clusters.
		{"512", 3<<20 + 100, Options{ClusterBits: 9}},
		{"512-zstd", 3<<20 + 100, Options{ClusterBits: 9, Compress: true}},
		{"4k-zstd", 5 << 20, Options{ClusterBits: 12, Compress: true}},
		{"2m", 9 << 20, Options{ClusterBits: 21}},
		{"empty", 0, Options{}},
		{"one-byte", 1, Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var raw string
			if tc.size > 3 {
				raw = rawImage(t, dir, tc.size, uint64(tc.size))
			} else {
				raw = filepath.Join(dir, "disk.raw")
				os.WriteFile(raw, bytes.Repeat([]byte{1}, int(tc.size)), 0o644)
			}
			q := filepath.Join(dir, "disk.qcow2")
			if err := WriteFile(context.Background(), q, raw, tc.o); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(qemuImg, "check", "-f", "qcow2", q).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img check: %v\n%s", err, out)
			}
			disktest.SameAsRaw(t, raw, q, "qcow2")
			out, err := exec.Command(qemuImg, "info", "--output", "json", q).Output()
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				VirtualSize int64 `json:"virtual-size"`
				ClusterSize int64 `json:"cluster-size"`
				Format      string
				Specific    struct {
					Data struct {
						Compat          string
						CompressionType string `json:"compression-type"`
						RefcountBits    int    `json:"refcount-bits"`
					}
				} `json:"format-specific"`
			}
			json.Unmarshal(out, &info)
			wantType := "zlib"
			if tc.o.Compress {
				wantType = "zstd"
			}
			bits := tc.o.ClusterBits
			if bits == 0 {
				bits = 16
			}
			if info.VirtualSize != (tc.size+511)/512*512 || info.ClusterSize != 1<<bits || info.Specific.Data.Compat != "1.1" ||
				info.Specific.Data.CompressionType != wantType || info.Specific.Data.RefcountBits != 16 {
				t.Errorf("qemu-img info: %s", out)
			}
			// Again: the same bytes.
			q2 := filepath.Join(dir, "again.qcow2")
			WriteFile(context.Background(), q2, raw, tc.o)
			a, _ := os.ReadFile(q)
			b, _ := os.ReadFile(q2)
			if !bytes.Equal(a, b) {
				t.Error("two conversions differ")
			}
		})
	}
}

// Zero clusters take no room; compression makes the image smaller.
func TestSizes(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "sparse.raw")
	f, _ := os.Create(raw)
	f.Truncate(1 << 30)
	f.WriteAt(bytes.Repeat([]byte("data"), 1<<14), 512<<20)
	f.Close()
	q := filepath.Join(dir, "sparse.qcow2")
	if err := WriteFile(context.Background(), q, raw, Options{}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(q)
	// Header, one data cluster, one L2 table, the L1 table, a refcount
	// block and the refcount table: 6 clusters.
	if st.Size() != 6<<16 {
		t.Errorf("a 1 GiB image with 64 KiB of data: %d bytes, want %d", st.Size(), 6<<16)
	}
	text := filepath.Join(dir, "text.raw")
	os.WriteFile(text, bytes.Repeat([]byte("alpine linux compresses well "), 1<<16), 0o644)
	plain, zst := filepath.Join(dir, "plain.qcow2"), filepath.Join(dir, "zst.qcow2")
	WriteFile(context.Background(), plain, text, Options{})
	WriteFile(context.Background(), zst, text, Options{Compress: true})
	sp, _ := os.Stat(plain)
	sz, _ := os.Stat(zst)
	if sz.Size()*4 > sp.Size() {
		t.Errorf("compressed %d bytes, plain %d", sz.Size(), sp.Size())
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	raw := rawImage(t, dir, 1<<20, 1)
	if err := WriteFile(context.Background(), filepath.Join(dir, "x.qcow2"), raw, Options{ClusterBits: 30}); err == nil || !strings.Contains(err.Error(), "cluster bits") {
		t.Errorf("cluster bits 30: %v", err)
	}
	if err := WriteFile(context.Background(), filepath.Join(dir, "y.qcow2"), filepath.Join(dir, "missing.raw"), Options{}); err == nil {
		t.Error("a missing raw image was accepted")
	}
	// A raw image shorter than said: an error, and no file left.
	f, _ := os.Create(filepath.Join(dir, "z.qcow2"))
	defer f.Close()
	in, _ := os.Open(raw)
	defer in.Close()
	if err := Write(f, in, 2<<20, Options{}); err == nil || !strings.Contains(err.Error(), "reading the raw image") {
		t.Errorf("short raw image: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("left: %v", ents)
	}
}

// BenchmarkVsQemuImg times our writer (including the fsync that makes
// the file durable before its rename) and qemu-img convert -O qcow2 (no
// fsync) on the same 64 MiB raw image, side by side.
func BenchmarkVsQemuImg(b *testing.B) {
	qemuImg := hosttool.Need(b, "qemu-img", "qemu-utils")
	dir := b.TempDir()
	raw := rawImage(b, dir, 64<<20, 3)
	benchcmp.SideBySide(b, "qemu-img", func() error {
		return WriteFile(context.Background(), filepath.Join(dir, "ours.qcow2"), raw, Options{})
	}, func() error {
		return disktest.QemuImgConvert(qemuImg, raw, filepath.Join(dir, "qemu.qcow2"), "qcow2", disktest.Synced...)
	})
}

// TestReader reads back what we write and what qemu-img writes: plain,
// zstd- and deflate-compressed, version 2 and 3, several cluster sizes.
func TestReader(t *testing.T) {
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	raw := rawImage(t, dir, 3<<20+512, 5)
	want, _ := os.ReadFile(raw)
	check := func(name, img string) {
		t.Helper()
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r, err := NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Size() != int64(len(want)) {
			t.Fatalf("%s: size %d, want %d", name, r.Size(), len(want))
		}
		got := make([]byte, len(want))
		if _, err := r.ReadAt(got, 0); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the virtual disk differs from the raw image", name)
		}
		// Unaligned reads across clusters, and the end.
		part := make([]byte, 100_000)
		if n, err := r.ReadAt(part, 12345); n != len(part) || err != nil || !bytes.Equal(part, want[12345:12345+len(part)]) {
			t.Errorf("%s: unaligned read: %d %v", name, n, err)
		}
		if n, err := r.ReadAt(part, int64(len(want))-10); n != 10 || err != io.EOF {
			t.Errorf("%s: read past the end: %d %v", name, n, err)
		}
	}
	for _, o := range []Options{{}, {Compress: true}, {ClusterBits: 12, Compress: true}, {ClusterBits: 21}} {
		p := filepath.Join(dir, "ours.qcow2")
		if err := WriteFile(context.Background(), p, raw, o); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("ours %+v", o), p)
	}
	for _, args := range [][]string{{}, {"-c"}, {"-o", "compat=0.10"}, {"-c", "-o", "compression_type=zstd,cluster_size=4096"}} {
		p := filepath.Join(dir, "qemu.qcow2")
		cmd := append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), raw, p)
		if o, err := exec.Command(qemuImg, cmd...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", cmd, err, o)
		}
		check(fmt.Sprintf("qemu-img %v", args), p)
	}
	// What it refuses.
	base := filepath.Join(dir, "base.qcow2")
	WriteFile(context.Background(), base, raw, Options{})
	over := filepath.Join(dir, "over.qcow2")
	if o, err := exec.Command(qemuImg, "create", "-f", "qcow2", "-b", base, "-F", "qcow2", over).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, o)
	}
	f, _ := os.Open(over)
	defer f.Close()
	if _, err := NewReader(f); err == nil || !strings.Contains(err.Error(), "backing file") {
		t.Errorf("overlay: %v", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte("not a qcow2 image at all, but long enough to hold a header of 72 bytes..."))); err == nil || !strings.Contains(err.Error(), "not a qcow2") {
		t.Errorf("garbage: %v", err)
	}
}

// FuzzReader: no input makes the reader panic or allocate without bound.
func FuzzReader(f *testing.F) {
	dir := f.TempDir()
	raw := rawImage(f, dir, 8<<10, 9)
	for _, o := range []Options{{ClusterBits: 9}, {ClusterBits: 9, Compress: true}} {
		p := filepath.Join(dir, "seed.qcow2")
		WriteFile(context.Background(), p, raw, o)
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		buf := make([]byte, 64<<10)
		for off := int64(0); off < min(r.Size(), 1<<20); off += int64(len(buf)) {
			if _, err := r.ReadAt(buf, off); err != nil {
				return
			}
		}
	})
}
