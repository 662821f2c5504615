package export

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWriteTar(t *testing.T) {
	root := t.TempDir()
	mk := func(p, data string, mode os.FileMode) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(data), mode)
		os.Chmod(filepath.Join(root, p), mode)
	}
	mk("usr/bin/tool", "tool", 0o755)
	mk("etc/conf", "conf", 0o640)
	os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool2"))
	os.Symlink("tool", filepath.Join(root, "usr/bin/t"))
	syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600)
	os.MkdirAll(filepath.Join(root, "proc/1"), 0o755)
	os.Chmod(filepath.Join(root, "usr/bin/tool"), 0o755|os.ModeSetuid)
	xattrOK := unix.Setxattr(filepath.Join(root, "etc/conf"), "user.alpinist", []byte("v"), 0) == nil
	future := time.Now().Add(48 * time.Hour)
	os.Chtimes(filepath.Join(root, "etc/conf"), future, future)
	var a, b bytes.Buffer
	opts := Options{Epoch: 1700000000, Skip: []string{"proc"}}
	if err := WriteTar(&a, root, opts); err != nil {
		t.Fatal(err)
	}
	if err := WriteTar(&b, root, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("not reproducible")
	}
	tr := tar.NewReader(&a)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s := string(h.Typeflag) + " " + h.Name + " " + h.Linkname
		if h.Name == "usr/bin/tool" && h.Mode != 0o4755 {
			t.Errorf("tool mode %o", h.Mode)
		}
		if h.ModTime.Unix() > 1700000000 {
			t.Errorf("%s: time %v not clamped", h.Name, h.ModTime)
		}
		if h.Name == "etc/conf" && xattrOK && h.PAXRecords["SCHILY.xattr.user.alpinist"] != "v" {
			t.Errorf("xattr lost: %v", h.PAXRecords)
		}
		got = append(got, strings.TrimSpace(s))
	}
	want := "5 etc/\n0 etc/conf\n6 fifo\n5 usr/\n5 usr/bin/\n2 usr/bin/t tool\n0 usr/bin/tool\n1 usr/bin/tool2 usr/bin/tool"
	if strings.Join(got, "\n") != want {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

// TestFill: a reference becomes the regular file it stands for, with
// its bytes from the package disk; a bad one is refused; any other
// entry passes as it is.
func TestFill(t *testing.T) {
	disk := strings.NewReader("0123456789")
	h := &tar.Header{Name: "f", Typeflag: RefType, Linkname: "2:5", Mode: 0o644}
	r, err := Fill(h, nil, disk, 10)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); string(b) != "23456" || h.Typeflag != tar.TypeReg || h.Linkname != "" || h.Size != 5 {
		t.Errorf("%q, %+v", b, h)
	}
	for _, ref := range []string{"2:9", "-1:2", "x:1", "3", "3:-1", ""} {
		if _, err := Fill(&tar.Header{Name: "f", Typeflag: RefType, Linkname: ref}, nil, disk, 10); err == nil {
			t.Errorf("reference %q accepted", ref)
		}
	}
	if _, err := Fill(&tar.Header{Name: "f", Typeflag: RefType, Linkname: "1:1", Size: 3}, nil, disk, 10); err == nil {
		t.Error("a reference with data accepted")
	}
	own := strings.NewReader("own")
	h = &tar.Header{Name: "g", Typeflag: tar.TypeReg, Size: 3}
	if r, err := Fill(h, own, disk, 10); err != nil || r != io.Reader(own) || h.Size != 3 {
		t.Errorf("a regular entry: %v %v", r, err)
	}
}
