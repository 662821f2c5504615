package rootfstar

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tgz(t *testing.T, hs ...*tar.Header) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Linkname))
		}
		data := h.Linkname
		if h.Typeflag == tar.TypeReg {
			h.Linkname = ""
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(data))
		}
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

func TestUnpack(t *testing.T) {
	dir := t.TempDir()
	data := tgz(t,
		&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755},
		&tar.Header{Typeflag: tar.TypeDir, Name: "./tmp/", Mode: 0o1777},
		&tar.Header{Typeflag: tar.TypeReg, Name: "./bin/busybox", Mode: 0o4755, Linkname: "bb"},
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "./bin/sh", Linkname: "/bin/busybox"},
		&tar.Header{Typeflag: tar.TypeLink, Name: "./bin/bb2", Linkname: "./bin/busybox"},
	)
	if err := Unpack(bytes.NewReader(data), dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "bin/busybox")); err != nil || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("busybox %v %v", st, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "tmp")); st.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp %v", st.Mode())
	}
	if l, _ := os.Readlink(filepath.Join(dir, "bin/sh")); l != "/bin/busybox" {
		t.Errorf("sh -> %q", l)
	}
	for _, bad := range []string{"../x", "a/../b", "/etc/passwd"} {
		err := Unpack(bytes.NewReader(tgz(t, &tar.Header{Typeflag: tar.TypeReg, Name: bad, Mode: 0o644, Linkname: "x"})), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "unsafe path") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
