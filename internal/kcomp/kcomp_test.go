package kcomp

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/kerneltest"
)

// TestReader reads back each format the kernel's builds write, known by
// its magic alone, and refuses one it does not read.
func TestReader(t *testing.T) {
	want := bytes.Repeat([]byte("a kernel, "), 100000)
	for _, format := range kerneltest.Formats {
		t.Run(format, func(t *testing.T) {
			c := kerneltest.Compress(t, format, want)
			if got := Format(c[:MagicLen]); got != format {
				t.Errorf("Format = %q", got)
			}
			r, done, err := Reader(c[:MagicLen], bytes.NewReader(c))
			if err != nil {
				t.Fatal(err)
			}
			defer done()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("read %d bytes, %v", len(got), err)
			}
		})
	}
	lzma := []byte{0x5d, 0, 0, 0x80, 0, 0xff}
	if _, _, err := Reader(lzma, bytes.NewReader(lzma)); !errors.Is(err, ErrFormat) {
		t.Errorf("LZMA: %v", err)
	}
}

func TestIndex(t *testing.T) {
	data := []byte("code \xfd7zXZ\x00 more \x1f\x8b\x08 BZh9 \x02\x21\x4c\x18 \x28\xb5\x2f\xfd \x1f\x8b\x07 \xfd7zX")
	want := []int{5, 17, 21, 26, 31}
	if got := Index(data); !slices.Equal(got, want) {
		t.Errorf("Index = %v, want %v", got, want)
	}
}
