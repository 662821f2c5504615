// Package rootfstest makes a small canonical rootfs tar for the output
// writers' tests: directories, files of several sizes (one of several
// MiB), a symlink, a hard link, setuid and sticky modes, an xattr, and
// etc/alpine-release, and an apk database.
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

// Installed is lib/apk/db/installed: busybox and musl.
const Installed = `C:Q1sLPKUHsnsP2U1GTJpB9wAjqMkEc=
P:busybox
V:1.37.0-r0
A:x86_64
S:500000
I:900000
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
t:1700000000
D:so:libc.musl-x86_64.so.1
F:bin
R:busybox

C:Q1AQEBAQEBAQEBAQEBAQEBAQEBAQE=
P:musl
V:1.2.5-r10
A:x86_64
S:400000
I:600000
T:the musl c library
U:https://musl.libc.org/
L:MIT
o:musl
t:1700000000
p:so:libc.musl-x86_64.so.1=1

`

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
		{tar.Header{Name: "lib/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "lib/apk/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "lib/apk/db/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "lib/apk/db/installed", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(Installed)},
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
