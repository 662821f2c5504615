// Package kerneltest compresses stand-in kernels as Linux's builds pack
// them, for the tests of the packages that unpack boot images (pvh,
// zimage, kcomp).
package kerneltest

import (
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Formats are the formats Compress writes.
var Formats = []string{"gzip", "zstd", "xz", "lz4"}

// Compress compresses data in format (gzip, zstd, xz without a BCJ
// filter, or lz4's legacy frame, as the kernel's build writes it).
func Compress(t testing.TB, format string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch format {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "zstd":
		w, err = zstd.NewWriter(&b)
	case "xz":
		w, err = xz.NewWriter(&b)
	case "lz4":
		zw := lz4.NewWriter(&b)
		err = zw.Apply(lz4.LegacyOption(true))
		w = zw
	default:
		t.Fatalf("kerneltest: no format %q", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
