package wsl

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
)

// entries reads a gzip'ed tar: name -> content (and the names in order).
func entries(t *testing.T, path string) (map[string]string, []string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	m := map[string]string{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m, names
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		m[h.Name] = string(b)
		names = append(names, h.Name)
		if h.Name == "etc/motd" && h.PAXRecords["SCHILY.xattr.user.alpinist"] != "v" {
			t.Errorf("etc/motd lost its xattr: %v", h.PAXRecords)
		}
		if h.Name == ConfPath && (h.Mode != 0o644 || h.Uid != 0 || !h.ModTime.Equal(rootfstest.Created)) {
			t.Errorf("wsl.conf header: %+v", h)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(src, rootfstest.Tar(t), 0o644)
	conf := []byte("[user]\ndefault = alice\n")
	dst := filepath.Join(dir, "web-x86_64.wsl.tar.gz")
	if err := WriteFile(context.Background(), dst, src, conf, rootfstest.Created); err != nil {
		t.Fatal(err)
	}
	m, names := entries(t, dst)
	if m[ConfPath] != string(conf) || m["etc/motd"] != "welcome\n" || len(names) != 15 {
		t.Errorf("wsl.conf %q, %d entries: %v", m[ConfPath], len(names), names)
	}
	// Without a conf, the rootfs's own wsl.conf stays.
	dst2 := filepath.Join(dir, "plain.tar.gz")
	if err := WriteFile(context.Background(), dst2, src, nil, rootfstest.Created); err != nil {
		t.Fatal(err)
	}
	if m, _ := entries(t, dst2); m[ConfPath] != "[user]\ndefault = old\n" {
		t.Errorf("wsl.conf without a spec conf: %q", m[ConfPath])
	}
	// Reproducible, and gzip -t accepts it.
	dst3 := filepath.Join(dir, "again.tar.gz")
	WriteFile(context.Background(), dst3, src, conf, rootfstest.Created)
	a, _ := os.ReadFile(dst)
	b, _ := os.ReadFile(dst3)
	if !bytes.Equal(a, b) {
		t.Error("two writes differ")
	}
	if out, err := exec.Command("gzip", "-t", dst).CombinedOutput(); err != nil {
		t.Errorf("gzip -t: %v %s", err, out)
	}
	// A bad source leaves nothing.
	os.WriteFile(src, []byte("not a tar, not at all, but long enough for a header? no"), 0o644)
	if err := WriteFile(context.Background(), filepath.Join(dir, "bad.tar.gz"), src, conf, rootfstest.Created); err == nil {
		t.Error("a bad tar was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.tar.gz")); err == nil {
		t.Error("a failed write left its file")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Errorf("left behind: %v", ents)
	}
}
