package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
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

// FuzzCanonicalize: any tar stream (what assemble reads, what the build
// VM or the build cache hands back) either is refused or becomes a tar
// that lets nothing escape (every name clean and relative, no entry under
// a symlink or a file, every hard link to an earlier file), whose size is
// linear in the input's, and that canonicalizes to itself. The seeds have
// hostile trees, deep paths and many links.
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
	f.Add(seed([]ent{{tar.Header{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, ""}, {tar.Header{Name: "etc/shadow", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}}))
	f.Add(seed([]ent{{tar.Header{Name: "x", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, ""}}))
	f.Add(seed([]ent{{tar.Header{Name: strings.Repeat("a/", 255) + "x", Typeflag: tar.TypeReg, Mode: 0o644}, "deep"}}))
	f.Add(seed([]ent{{tar.Header{Name: strings.Repeat("a/", 2000) + "x", Typeflag: tar.TypeReg, Mode: 0o644}, "deeper"}}))
	links := []ent{{tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}}
	for i := range 200 {
		links = append(links, ent{tar.Header{Name: "l" + strings.Repeat("x", i), Typeflag: tar.TypeLink, Linkname: "f"}, ""})
	}
	f.Add(seed(links))
	f.Add(seed([]ent{{tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644}, "1"}, {tar.Header{Name: "x", Typeflag: tar.TypeDir, Mode: 0o755}, ""}, {tar.Header{Name: "x/y", Typeflag: tar.TypeReg}, "2"}}))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if _, err := Canonicalize(context.Background(), &out, bytes.NewReader(data), t0, dir); err != nil {
			return
		}
		if out.Len() > linearBound(len(data)) {
			t.Fatalf("%d bytes in, %d out: past the linear bound %d", len(data), out.Len(), linearBound(len(data)))
		}
		tr := tar.NewReader(bytes.NewReader(out.Bytes()))
		kinds := map[string]byte{}
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
			for d := path.Dir(name); d != "."; d = path.Dir(d) {
				if k, ok := kinds[d]; !ok || k != tar.TypeDir {
					t.Fatalf("%s is under %s, not an earlier directory (%q)", name, d, k)
				}
			}
			if h.Typeflag == tar.TypeLink && kinds[h.Linkname] != tar.TypeReg {
				t.Fatalf("%s: hard link to %s, not an earlier file", name, h.Linkname)
			}
			if _, dup := kinds[name]; dup {
				t.Fatalf("%s twice", name)
			}
			kinds[name] = h.Typeflag
		}
		var again bytes.Buffer
		if _, err := Canonicalize(context.Background(), &again, bytes.NewReader(out.Bytes()), t0, dir); err != nil {
			t.Fatalf("the canonical tar is refused: %v", err)
		}
		if !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatal("canonicalizing twice changes the tar")
		}
	})
}
