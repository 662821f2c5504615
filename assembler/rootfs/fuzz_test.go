package rootfs

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"strings"
	"testing"
	"time"
)

// seed is a tar of ents for the fuzz corpus.
func seed(ents []ent) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.h
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		tw.WriteHeader(&h)
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return b.Bytes()
}

// FuzzCanonicalize: any tar stream (the input of alpinist assemble)
// either is refused or becomes a tar whose every name is clean and
// relative, and that canonicalizes to itself.
func FuzzCanonicalize(f *testing.F) {
	t0 := time.Unix(1700000000, 0)
	f.Add(seed([]ent{
		{tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: t0}, ""},
		{tar.Header{Name: "etc/hosts", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: t0, Uname: "root"}, "127.0.0.1 localhost\n"},
		{tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", ModTime: t0}, ""},
		{tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, ModTime: t0}, "ELF"},
		{tar.Header{Name: "bin/ash", Typeflag: tar.TypeLink, Linkname: "bin/busybox", ModTime: t0}, ""},
		{tar.Header{Name: "usr/.wh.old", Typeflag: tar.TypeReg, ModTime: t0}, ""},
	}))
	f.Add(seed([]ent{{tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}}))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if _, err := Canonicalize(&out, bytes.NewReader(data), t0, dir); err != nil {
			return
		}
		tr := tar.NewReader(bytes.NewReader(out.Bytes()))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("the canonical tar does not read back: %v", err)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			if name != "" && name != "." && (path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../")) {
				t.Fatalf("unclean name %q", h.Name)
			}
		}
		var again bytes.Buffer
		if _, err := Canonicalize(&again, bytes.NewReader(out.Bytes()), t0, dir); err != nil {
			t.Fatalf("the canonical tar is refused: %v", err)
		}
		if !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatal("canonicalizing twice changes the tar")
		}
	})
}
