package tarball

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// sample makes a tar of some compressible and some random-looking files.
func sample(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range 200 {
		data := bytes.Repeat([]byte{byte(i), 'a', byte(i * 7)}, 3000+i*50)
		tw.WriteHeader(&tar.Header{Name: "f" + string(rune('a'+i%26)) + string(rune('0'+i%10)), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	return buf.Bytes()
}

func TestFormats(t *testing.T) {
	in := sample(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.tar")
	os.WriteFile(src, in, 0o600)
	for format, ext := range Formats {
		dst := filepath.Join(dir, "out"+ext)
		if err := WriteFile(context.Background(), dst, src, format); err != nil {
			t.Fatal(err)
		}
		again := filepath.Join(dir, "again"+ext)
		if err := WriteFile(context.Background(), again, src, format); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(dst)
		b, _ := os.ReadFile(again)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two writes differ", format)
		}
		if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v", format, fi.Mode())
		}
		var r io.Reader = bytes.NewReader(a)
		switch format {
		case "tar.gz":
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			if zr.Name != "" || !bytes.Equal(a[4:8], []byte{0, 0, 0, 0}) {
				t.Errorf("gzip header carries %q %v", zr.Name, zr.ModTime)
			}
			r = zr
		case "tar.zst":
			zr, err := zstd.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			r = zr
		}
		out, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(out, in) {
			t.Errorf("%s: round trip: %v, %d bytes of %d", format, err, len(out), len(in))
		}
		// The reference tools accept the files.
		tool := map[string][]string{"tar.gz": {"gzip", "-t"}, "tar.zst": {"zstd", "-t", "-q"}}[format]
		if tool != nil {
			if _, err := exec.LookPath(tool[0]); err == nil {
				if out, err := exec.Command(tool[0], append(tool[1:], dst)...).CombinedOutput(); err != nil {
					t.Errorf("%s rejects %s: %v\n%s", tool[0], dst, err, out)
				}
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 7 {
		t.Errorf("left behind: %v", entries)
	}
	if err := WriteFile(context.Background(), filepath.Join(dir, "x.tar.xz"), src, "tar.xz"); err == nil {
		t.Error("unknown format accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar.xz")); err == nil {
		t.Error("a failed write left its file")
	}
}

func BenchmarkCompress(b *testing.B) {
	in := sample(b)
	for _, format := range []string{"tar.gz", "tar.zst"} {
		b.Run(format, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if err := Compress(io.Discard, bytes.NewReader(in), format); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCanceled: a done context stops the writer at its next read, and
// leaves no file.
func TestCanceled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.tar")
	os.WriteFile(src, make([]byte, 1<<20), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(dir, "out.tar.gz")
	if err := WriteFile(ctx, dst, src, "tar.gz"); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a canceled write left its file")
	}
}
