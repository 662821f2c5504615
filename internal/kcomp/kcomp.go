// Package kcomp reads the compressed kernels Linux's builds pack into
// their boot images (an x86 bzImage's payload, an ARM zImage's piggy
// data): gzip, zstd, xz (with the x86 or ARM BCJ filter), LZ4's legacy
// frame and bzip2, each known by its magic. The kernel's build appends
// the decompressed size to the compressed stream; Reader's callers check
// it.
package kcomp

import (
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/alpinist/alpinist/internal/xzbcj"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// MaxSize bounds a decompressed kernel: the size a boot image claims is
// checked against it before anything is decompressed.
const MaxSize = 512 << 20

// ErrFormat is Reader's error for a stream in none of the formats read
// here (LZMA and LZO, which no kernel this project boots uses).
var ErrFormat = errors.New("not a kernel compression read here")

// magics are the formats' first bytes.
var magics = []struct {
	name  string
	magic []byte
}{
	{"gzip", []byte{0x1f, 0x8b, 0x08}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0}},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}},
	{"bzip2", []byte("BZh")},
}

// MagicLen is how many first bytes of a stream Format needs.
const MagicLen = 6

// Format names the format a stream starting with magic is in, "" for
// none read here.
func Format(magic []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(magic, m.magic) {
			return m.name
		}
	}
	return ""
}

// Index gives the offsets in data where a stream of a format read here
// may start, in order.
func Index(data []byte) []int {
	var at []int
	for i, c := range data {
		switch c {
		case 0x1f, 0x28, 0xfd, 0x02, 'B': // the magics' first bytes
			if Format(data[i:min(len(data), i+MagicLen)]) != "" {
				at = append(at, i)
			}
		}
	}
	return at
}

// Reader decompresses src, the stream whose first bytes are magic, and
// gives the function that frees the decoder.
func Reader(magic []byte, src io.Reader) (io.Reader, func(), error) {
	nop := func() {}
	switch Format(magic) {
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, nil, fmt.Errorf("the kernel's gzip stream: %w", err)
		}
		zr.Multistream(false)
		return zr, func() { zr.Close() }, nil
	case "zstd":
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxSize*2))
		if err != nil {
			return nil, nil, fmt.Errorf("the kernel's zstd stream: %w", err)
		}
		return zr, zr.Close, nil
	case "xz":
		// xz with the x86 BCJ filter (Debian's 686 kernels), the ARM
		// one (its armmp kernels), or LZMA2 alone.
		zr, err := xzbcj.NewReader(src)
		if err != nil {
			return nil, nil, fmt.Errorf("the kernel's xz stream: %w", err)
		}
		return zr, nop, nil
	case "lz4":
		return newLZ4Legacy(src), nop, nil
	case "bzip2":
		return bzip2.NewReader(src), nop, nil
	}
	return nil, nil, fmt.Errorf("%w: compressed as % x, not gzip, zstd, xz, lz4 or bzip2", ErrFormat, magic)
}

// UnpackFile runs unpack on the kernel image file src (with its size)
// and a new file dst, and removes dst again unless unpack says it wrote
// it (true) without an error.
func UnpackFile(src, dst string, unpack func(in *os.File, size int64, out *os.File) (bool, error)) (ok bool, err error) {
	in, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return false, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return false, err
	}
	defer func() {
		err = errors.Join(err, out.Close())
		if !ok || err != nil {
			os.Remove(dst)
			ok = false
		}
	}()
	return unpack(in, st.Size(), out)
}
