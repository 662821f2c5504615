// Package rootfstest makes a small canonical rootfs tar for the output
// writers' tests: directories, files of several sizes (one of several
// MiB), a symlink, a hard link, setuid and sticky modes, an xattr, and
// etc/alpine-release.
package rootfstest

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"
)

// Created is the date of every entry.
var Created = time.Unix(1700000000, 0)

// Release is etc/alpine-release's content.
const Release = "3.22.1"

// Tar returns the rootfs tar.
func Tar(t testing.TB) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	big := bytes.Repeat([]byte("alpine linux layer block "), 3<<20/25+7)
	ents := []struct {
		h    tar.Header
		body []byte
	}{
		{tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o4755}, []byte("#!/bin/sh\necho busybox\n")},
		{tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox", Mode: 0o777}, nil},
		{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "etc/alpine-release", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(Release + "\n")},
		{tar.Header{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, PAXRecords: map[string]string{"SCHILY.xattr.user.alpinist": "v"}}, []byte("welcome\n")},
		{tar.Header{Name: "etc/motd.link", Typeflag: tar.TypeLink, Linkname: "etc/motd", Mode: 0o644}, nil},
		{tar.Header{Name: "etc/wsl.conf", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("[user]\ndefault = old\n")},
		{tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "usr/big", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000}, big},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
	}
	for _, e := range ents {
		h := e.h
		h.Size = int64(len(e.body))
		h.ModTime = Created
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
