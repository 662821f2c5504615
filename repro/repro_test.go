package repro

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/assembler/qcow2"
)

func tarball(t *testing.T, mtime time.Time, body string, level int) []byte {
	var b bytes.Buffer
	var w = &b
	tw := tar.NewWriter(w)
	for _, e := range []struct{ name, body string }{{"etc/", ""}, {"etc/hostname", body}, {"etc/motd", "hi"}} {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if e.name == "etc/motd" {
			h.ModTime = mtime
		}
		tw.WriteHeader(h)
		tw.Write([]byte(e.body))
	}
	tw.Close()
	if level == 0 {
		return b.Bytes()
	}
	var z bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&z, level)
	gz.Write(b.Bytes())
	gz.Close()
	return z.Bytes()
}

func TestCompare(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	epoch := time.Unix(1700000000, 0)
	raw := bytes.Repeat([]byte("alpinist"), 2048)
	raw2 := bytes.Clone(raw)
	copy(raw2[5000:], "XYZ")
	write := func(dir, name string, data []byte) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{a, b} {
		write(dir, "same.txt", []byte("same"))
		write(dir, "x.log", []byte(dir)) // logs are not outputs
	}
	write(a, "demo-x86_64.tar", tarball(t, epoch, "demo", 0))
	write(b, "demo-x86_64.tar", tarball(t, epoch.Add(time.Second), "demo", 0))
	write(a, "demo-x86_64.tar.gz", tarball(t, epoch, "demo", 1))
	write(b, "demo-x86_64.tar.gz", tarball(t, epoch, "demo", 9))
	write(a, "content.tar", tarball(t, epoch, "demo", 0))
	write(b, "content.tar", tarball(t, epoch, "dEmo", 0))
	write(a, "demo-x86_64.ext4", raw)
	write(b, "demo-x86_64.ext4", raw2)
	write(a, "demo.oci/blobs/sha256/aaa", []byte("a"))
	write(b, "demo.oci/blobs/sha256/bbb", []byte("b"))
	for dir, r := range map[string][]byte{a: raw, b: raw2} {
		write(dir, "disk.raw", r)
		if err := qcow2.WriteFile(context.Background(), filepath.Join(dir, "demo-x86_64.qcow2"), filepath.Join(dir, "disk.raw"), qcow2.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	diffs, same, err := Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range diffs {
		got = append(got, d.String())
	}
	want := []string{
		"content.tar: entry 2: etc/hostname: content differs",
		"demo-x86_64.ext4: bytes 5000 to 5002 differ (from 4 KiB block 1)",
		"demo-x86_64.qcow2: virtual disk: bytes 5000 to 5002 differ (from 4 KiB block 1)",
		"demo-x86_64.tar: entry 3: etc/motd: mtime 2023-11-14 22:13:20 +0000 UTC vs 2023-11-14 22:13:21 +0000 UTC",
		"demo-x86_64.tar.gz: the same tar entries, but bytes ",
		"demo.oci/blobs/sha256/aaa: only in " + a,
		"demo.oci/blobs/sha256/bbb: only in " + b,
		"disk.raw: bytes 5000 to 5002 differ (from 4 KiB block 1)",
	}
	if len(got) != len(want) || same != 1 {
		t.Fatalf("%d same, differences:\n%s", same, strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("got  %s\nwant %s…", got[i], want[i])
		}
	}
	// Identical directories.
	if diffs, same, err := Compare(a, a); len(diffs) != 0 || same != 8 || err != nil {
		t.Errorf("a with itself: %v, %d same, %v", diffs, same, err)
	}
	if _, _, err := Compare(a, filepath.Join(b, "missing")); err == nil {
		t.Error("a missing directory compares")
	}
}

func TestReadersLength(t *testing.T) {
	d, err := readers(bytes.NewReader([]byte("abcdef")), bytes.NewReader([]byte("abc")))
	if err != nil || d != "the same first 3 bytes, then one ends" {
		t.Errorf("%q %v", d, err)
	}
}
