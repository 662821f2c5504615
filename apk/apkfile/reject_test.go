package apkfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk/gzmember"
	"github.com/alpinist/alpinist/apk/sign"
)

type rawEntry struct {
	h    tar.Header
	body []byte
}

// rawPackage assembles an unsigned package by hand from a .PKGINFO text
// and data entries, none of the writer's checks in the way: what a
// hostile repository could serve.
func rawPackage(t *testing.T, pkginfo string, ents []rawEntry) []byte {
	t.Helper()
	var pkg bytes.Buffer
	for i, part := range [][]rawEntry{{{tar.Header{Name: ".PKGINFO", Mode: 0o644, Typeflag: tar.TypeReg}, []byte(pkginfo)}}, ents} {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, e := range part {
			h := e.h
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len(e.body))
			}
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			tw.Write(e.body)
		}
		if i == 1 {
			tw.Close()
		} else {
			tw.Flush() // the control part has no end-of-archive
		}
		zw, _ := gzip.NewWriterLevel(&pkg, gzip.BestCompression)
		zw.Write(b.Bytes())
		zw.Close()
	}
	return pkg.Bytes()
}

func reg(name, body string) rawEntry {
	return rawEntry{tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}, []byte(body)}
}

// TestReadRejects: what a hostile or broken repository may serve, each
// refused with an error that names the package and the problem.
func TestReadRejects(t *testing.T) {
	ka, _ := testKeys(t)
	info := "pkgname = evil\npkgver = 1-r0\narch = x86_64\nsize = 100\n"
	bomb := rawEntry{tar.Header{Name: "zero", Mode: 0o644, Typeflag: tar.TypeReg}, make([]byte, 40<<20)}
	for _, tc := range []struct {
		name  string
		data  []byte
		keys  bool // read with a keyring (else AllowUntrusted)
		want  string
		isErr error
	}{
		{"unsigned", rawPackage(t, info, []rawEntry{reg("a", "a")}), true, "evil-1-r0: UNTRUSTED signature: not signed", sign.ErrUntrusted},
		{"gzip bomb", rawPackage(t, info, []rawEntry{bomb}), false, "data inflates beyond 16777416 bytes, more than its size allows (a decompression bomb?)", nil},
		{"dot dot", rawPackage(t, info, []rawEntry{reg("../x", "x")}), false, `path "../x" leaves the root`, ErrFormat},
		{"dot dot inside", rawPackage(t, info, []rawEntry{reg("a/../../x", "x")}), false, `path "a/../../x" is not clean`, ErrFormat},
		{"absolute", rawPackage(t, info, []rawEntry{reg("/etc/passwd", "x")}), false, `bad path "/etc/passwd"`, ErrFormat},
		{"duplicate", rawPackage(t, info, []rawEntry{reg("a", "1"), reg("a", "2")}), false, "a appears twice", ErrFormat},
		{"hard link out", rawPackage(t, info, []rawEntry{{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"}, nil}}), false, `h: hard link: path "../../etc/shadow" leaves the root`, ErrFormat},
		{"hard link absolute", rawPackage(t, info, []rawEntry{{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, nil}}), false, `h: hard link: bad path "/etc/shadow"`, ErrFormat},
		{"hard link later", rawPackage(t, info, []rawEntry{{tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "b"}, nil}, reg("b", "b")}), false, "h: hard link to b, which is not earlier in the package", ErrFormat},
		{"through a symlink", rawPackage(t, info, []rawEntry{{tar.Header{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, nil}, reg("x/passwd", "root::0:0::/:/bin/sh\n")}), false, "x/passwd is under x, a symlink of the package", ErrFormat},
		{"global header", rawPackage(t, info, []rawEntry{{tar.Header{Name: "s", Typeflag: tar.TypeXGlobalHeader}, nil}}), false, "", ErrFormat},
		{"html", []byte("<html><body>502 Bad Gateway</body></html>\n"), false, "gzip: invalid header", ErrFormat},
		{"empty", nil, false, "", ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ReadOptions{AllowUntrusted: true}
			if tc.keys {
				o = ReadOptions{Keys: ring(t, ka)}
			}
			_, err := Read(bytes.NewReader(tc.data), o)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || tc.isErr != nil && !errors.Is(err, tc.isErr) {
				t.Errorf("%v\nwant %q (%v)", err, tc.want, tc.isErr)
			}
			if len(tc.data) > 0 && tc.data[0] == 0x1f && !strings.Contains(err.Error(), "evil-1-r0") {
				t.Errorf("the error does not name the package: %v", err)
			}
		})
	}
}

// TestDataHashMismatch: a signed package whose data part was replaced
// (here: the same tar compressed anew) fails the SHA-256 that .PKGINFO,
// which the signature covers, gives for it.
func TestDataHashMismatch(t *testing.T) {
	ka, _ := testKeys(t)
	data, _ := build(t, ka, sign.RSA)
	gz := gzmember.NewReader(bytes.NewReader(data))
	var ends []int64
	var parts [][]byte
	for {
		r, err := gz.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(r)
		parts = append(parts, b)
		ends = append(ends, gz.Offset())
	}
	if len(parts) != 3 {
		t.Fatalf("%d members", len(parts))
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	zw.Write(parts[2])
	zw.Close()
	swapped := append(bytes.Clone(data[:ends[1]]), z.Bytes()...)
	_, err := Read(bytes.NewReader(swapped), ReadOptions{Keys: ring(t, ka)})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "data part has sha256") || !strings.Contains(err.Error(), "hello-1.2-r3") {
		t.Errorf("%v", err)
	}
}
