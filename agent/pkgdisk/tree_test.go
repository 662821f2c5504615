package pkgdisk

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileTrees(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc", "app"), 0o700)
	os.WriteFile(filepath.Join(src, "etc", "app", "conf"), []byte("x=1\n"), 0o600)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o700)
	os.Symlink("etc/app/conf", filepath.Join(src, "conf"))
	m := Manifest{SourceDateEpoch: 1700000000, Config: Config{Files: []File{
		{Dst: "/", Kind: "copy", Mode: -1},
		{Dst: "/usr/bin/x", Kind: "symlink", Target: "/bin/busybox", Mode: -1},
		{Dst: "/etc/motd", Kind: "content", Mode: 0o600},
		{Dst: "/srv/run", Kind: "copy", Mode: 0o750},
	}}}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddContent(0, "x", -1); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTree(0, src, -1, -1); err == nil {
		t.Fatal("AddTree accepted an index already written")
	}
	buf.Reset()
	w, _ = NewWriter(&buf, m, nil)
	if err := w.AddTree(0, src, -1, -1); err != nil {
		t.Fatal(err)
	}
	if err := w.AddContent(2, "hello\n", 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTree(3, filepath.Join(src, "run.sh"), 0o750, -1); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		i, rel, h, body, err := r.NextFile()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(body)
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 1700000000 {
			t.Errorf("%s: owner %d:%d time %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		got = append(got, fmt.Sprintf("%d|%s|%c|%o|%s|%s", i, rel, h.Typeflag, h.Mode, h.Linkname, data))
	}
	want := []string{
		"0||5|755||", "0|conf|2|777|etc/app/conf|", "0|etc|5|755||", "0|etc/app|5|755||",
		"0|etc/app/conf|0|644||x=1\n", "0|run.sh|0|755||#!/bin/sh\n",
		"2||0|600||hello\n", "3||0|750||#!/bin/sh\n",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFileTreeBadNames(t *testing.T) {
	for _, name := range []string{"files/x", "files/1/../../etc", "files/9", "other", "files/01"} {
		var buf bytes.Buffer
		m := Manifest{Config: Config{Files: []File{{Dst: "/a", Kind: "content"}, {Dst: "/b", Kind: "content"}}}}
		w, _ := NewWriter(&buf, m, nil)
		w.entry(&tar.Header{Typeflag: tar.TypeReg, Name: name}, nil)
		w.Close()
		r, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, _, err := r.NextFile(); err == nil || err == io.EOF {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}
