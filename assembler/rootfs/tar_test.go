package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tarInput is an input with what the canonical tar has to make of it:
// hard links (one carried by a link), an implied directory, a long name
// (PAX), xattrs, a replaced entry, data of every length around a block.
func tarInput(t *testing.T) []byte {
	t0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	ents := []ent{
		{tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: t0}, ""},
		{tar.Header{Name: "usr/bin/b", Typeflag: tar.TypeReg, Mode: 0o755, ModTime: t0, Uname: "root"}, "bee"},
		{tar.Header{Name: "usr/bin/a", Typeflag: tar.TypeLink, Linkname: "usr/bin/b", ModTime: t0}, ""},
		{tar.Header{Name: "etc/" + strings.Repeat("long", 40), Typeflag: tar.TypeReg, Mode: 0o600, ModTime: t0}, "pax"},
		{tar.Header{Name: "etc/attr", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: t0,
			PAXRecords: map[string]string{"SCHILY.xattr.user.x": "1", "SCHILY.xattr.security.capability": "cap"}}, "x"},
		{tar.Header{Name: "etc/attr", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: t0.Add(time.Hour)}, "replaced"},
		{tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t0}, ""},
		{tar.Header{Name: "lib/sh", Typeflag: tar.TypeSymlink, Linkname: "../usr/bin/b", ModTime: t0}, ""},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, size := range []int{0, 1, 511, 512, 513, 1024, 4095, 4096, 70000} {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		ents = append(ents, ent{tar.Header{Name: "data/f" + string(rune('a'+i)), Typeflag: tar.TypeReg, Mode: 0o644, ModTime: t0}, string(b)})
	}
	return mk(t, ents)
}

// TestTar: the Tar's bytes are Canonicalize's, read whole or at any
// offset, from a plain file in place, from a stream (spooled) and from
// a gzip'ed stream.
func TestTar(t *testing.T) {
	in := tarInput(t)
	epoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var want bytes.Buffer
	if _, err := Canonicalize(context.Background(), &want, bytes.NewReader(in), epoch, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "in.tar")
	if err := os.WriteFile(p, in, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(in)
	zw.Close()
	for name, r := range map[string]io.Reader{"file": f, "stream": bytes.NewReader(in), "gzip": &gz} {
		tr, err := Open(context.Background(), r, epoch, t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if (tr.spool == nil) != (name == "file") {
			t.Errorf("%s: spooled: %v", name, tr.spool != nil)
		}
		got, err := io.ReadAll(tr.Reader())
		if err != nil || !bytes.Equal(got, want.Bytes()) || tr.Size() != int64(want.Len()) {
			t.Fatalf("%s: %d bytes (%v), want Canonicalize's %d", name, len(got), err, want.Len())
		}
		if sum, err := tr.SHA256(); err != nil || !bytes.Equal(sum, sha256Of(want.Bytes())) {
			t.Errorf("%s: SHA256() = %x, %v", name, sum, err)
		}
		if tr.Stats().Entries != 21 {
			t.Errorf("%s: stats %+v", name, tr.Stats())
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for range 2000 {
			off := rng.Int64N(tr.Size() + 10)
			b := make([]byte, rng.IntN(3000))
			n, err := tr.ReadAt(b, off)
			end := min(off+int64(len(b)), tr.Size())
			if off > tr.Size() {
				end = off
			}
			if int64(n) != end-off || !bytes.Equal(b[:n], want.Bytes()[off:end]) || (n < len(b)) != (err == io.EOF) {
				t.Fatalf("%s: ReadAt(%d bytes, %d) = %d, %v", name, len(b), off, n, err)
			}
		}
		// Entries: the headers and data a tar.Reader reads.
		pr := tar.NewReader(tr.Reader())
		er := tr.Entries()
		for {
			wh, werr := pr.Next()
			gh, gerr := er.Next()
			if werr != gerr {
				t.Fatalf("%s: Next: %v, want %v", name, gerr, werr)
			}
			if werr != nil {
				break
			}
			if gh.Name != wh.Name || gh.Typeflag != wh.Typeflag || gh.Size != wh.Size || gh.Mode != wh.Mode || gh.Linkname != wh.Linkname ||
				!gh.ModTime.Equal(wh.ModTime) || gh.Devmajor != wh.Devmajor || gh.Devminor != wh.Devminor || gh.PAXRecords["SCHILY.xattr.user.x"] != wh.PAXRecords["SCHILY.xattr.user.x"] {
				t.Errorf("%s: header %+v, want %+v", name, gh, wh)
			}
			wd, _ := io.ReadAll(pr)
			gd, err := io.ReadAll(er)
			if err != nil || !bytes.Equal(gd, wd) {
				t.Errorf("%s: %s: data %q (%v), want %q", name, wh.Name, gd, err, wd)
			}
			if at := make([]byte, len(wd)); len(wd) > 0 {
				tr.ReadAt(at, er.DataOffset())
				if !bytes.Equal(at, wd) {
					t.Errorf("%s: %s: DataOffset %d", name, wh.Name, er.DataOffset())
				}
			}
		}
		for _, name := range []string{"etc/attr", "dev/", "nothing"} {
			var names []string
			r := tar.NewReader(tr.Only(name))
			for {
				h, err := r.Next()
				if err != nil {
					if err != io.EOF {
						t.Fatal(err)
					}
					break
				}
				b, _ := io.ReadAll(r)
				names = append(names, h.Name+"="+string(b))
			}
			want := map[string]string{"etc/attr": "etc/attr=replaced", "dev/": "dev/=", "nothing": ""}[name]
			if strings.Join(names, ",") != want {
				t.Errorf("%s: Only(%s) = %q", name, name, names)
			}
		}
		tr.Close()
	}
	// Closed while its digest may still be made.
	tr, err := Open(context.Background(), bytes.NewReader(in), epoch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	tr.Close()
	if n, err := tr.ReadAt(make([]byte, 10), 0); n != 0 || err != io.EOF || tr.Size() != 0 {
		t.Errorf("closed: ReadAt = %d, %v", n, err)
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestTarChanged: an input file cut short under the Tar is an error,
// not a shorter tar.
func TestTarChanged(t *testing.T) {
	in := tarInput(t)
	p := filepath.Join(t.TempDir(), "in.tar")
	os.WriteFile(p, in, 0o644)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := Open(context.Background(), f, time.Time{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	os.Truncate(p, 2048)
	if _, err := io.ReadAll(tr.Reader()); err == nil || !strings.Contains(err.Error(), ErrChanged.Error()) {
		t.Errorf("got %v", err)
	}
}
