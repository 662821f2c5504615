package apkfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk/gzmember"
	"github.com/alpinist/alpinist/apk/sign"
)

func FuzzParsePKGINFO(f *testing.F) {
	m := sampleMeta()
	m.DataHash = strings.Repeat("ab", 32)
	info, _ := FormatPKGINFO(m)
	f.Add(info)
	f.Add([]byte("pkgname = x\npkgver = 1\n"))
	f.Add([]byte("# c\n\npkgname = x\npkgver = 1\ndepend = a>1 b<2 !c\nprovider_priority = 9\ndatahash = 00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePKGINFO(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What parses formats and parses back to the same text.
		p.Arch = "x86_64"
		out, err := FormatPKGINFO(p)
		if err != nil {
			return
		}
		q, err := ParsePKGINFO(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("formatted .PKGINFO does not parse: %v\n%s", err, out)
		}
		out2, _ := FormatPKGINFO(q)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}

func FuzzRead(f *testing.F) {
	ka, _ := testKeys(f)
	data, _ := build(f, ka, sign.RSA)
	f.Add(data)
	kr := ring(f, ka)
	f.Fuzz(func(t *testing.T, data []byte) {
		Read(bytes.NewReader(data), ReadOptions{Keys: kr, AllowUntrusted: true, MaxDataSize: 1 << 20,
			Entry: func(h *tar.Header, r io.Reader) error {
				if _, err := CleanPath(h.Name); err != nil {
					t.Fatalf("unclean name %q passed", h.Name)
				}
				return nil
			}})
	})
}

// FuzzReadParts fuzzes the decompressed control and data tars: the fuzzer
// cannot get past gzip CRCs in FuzzRead, so here each part is compressed
// for it (unsigned, read with AllowUntrusted).
func FuzzReadParts(f *testing.F) {
	ka, _ := testKeys(f)
	data, _ := build(f, ka, sign.RSA)
	// Seed with the real parts of a package.
	var parts [][]byte
	gz := gzmember.NewReader(bytes.NewReader(data))
	for {
		r, err := gz.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(r)
		parts = append(parts, b)
	}
	if len(parts) != 3 {
		f.Fatalf("%d parts", len(parts))
	}
	f.Add(parts[1], parts[2])
	f.Fuzz(func(t *testing.T, control, data []byte) {
		var pkg bytes.Buffer
		for _, part := range [][]byte{control, data} {
			zw, _ := gzip.NewWriterLevel(&pkg, gzip.BestSpeed)
			zw.Write(part)
			zw.Close()
		}
		Read(bytes.NewReader(pkg.Bytes()), ReadOptions{AllowUntrusted: true, MaxDataSize: 4 << 20,
			Entry: func(h *tar.Header, r io.Reader) error {
				if _, err := CleanPath(h.Name); err != nil {
					t.Fatalf("unclean name %q passed", h.Name)
				}
				return nil
			}})
	})
}
