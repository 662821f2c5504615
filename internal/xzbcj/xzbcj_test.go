package xzbcj

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"testing/iotest"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

// sample is data with many x86 CALL/JMP opcodes and ARM BL words, as
// code has, so that the filters change much of it: /usr/bin/xz itself
// (an x86-64 binary), then generated words.
func sample(t testing.TB) []byte {
	data, err := os.ReadFile("/usr/bin/xz")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	for range 200_000 {
		switch r.IntN(4) {
		case 0:
			data = append(data, 0xe8, byte(r.Uint32()), byte(r.Uint32()), 0, 0)
		case 1:
			data = append(data, 0xe9, byte(r.Uint32()), 0xff, 0xff, 0xff)
		case 2:
			data = append(data, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), 0xeb)
		default:
			data = append(data, byte(r.Uint32()))
		}
	}
	return data
}

// compress runs xz-utils with the options.
func compress(t testing.TB, data []byte, opts ...string) []byte {
	xz := hosttool.Need(t, "xz", "xz-utils")
	cmd := exec.Command(xz, append([]string{"-c", "--check=crc32"}, opts...)...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v", opts, err)
	}
	return out
}

// TestLikeXZUtils: what xz-utils compresses with each filter chain
// Linux uses reads back as it was, through readers that give one byte
// at a time too.
func TestLikeXZUtils(t *testing.T) {
	data := sample(t)
	for _, opts := range [][]string{{"--x86", "--lzma2"}, {"--arm", "--lzma2"}, {"--lzma2"}, {"--x86=start=4096", "--lzma2=dict=1MiB"}} {
		comp := compress(t, data, opts...)
		for name, wrap := range map[string]func(io.Reader) io.Reader{"whole": func(r io.Reader) io.Reader { return r }, "one byte": iotest.OneByteReader} {
			zr, err := NewReader(wrap(bytes.NewReader(comp)))
			if err != nil {
				t.Fatalf("%v: %v", opts, err)
			}
			got, err := io.ReadAll(wrap(zr))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%v, %s: %d of %d bytes, equal %v, %v", opts, name, len(got), len(data), bytes.Equal(got, data), err)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	data := sample(t)[:100_000]
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"not xz", []byte("hello world, not xz")},
		{"powerpc BCJ", compress(t, data, "--powerpc", "--lzma2")},
		{"delta", compress(t, data, "--delta", "--lzma2")},
	} {
		if _, err := NewReader(bytes.NewReader(tc.in)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	big := compress(t, data, "--lzma2=dict=128MiB")
	if _, err := NewReader(bytes.NewReader(big)); err == nil {
		t.Error("a 128 MiB dictionary was taken")
	}
}

func FuzzReader(f *testing.F) {
	data := sample(f)[:4000] // small inputs: the minimizer goes through each byte
	for _, opts := range [][]string{{"--x86", "--lzma2"}, {"--arm", "--lzma2"}, {"--lzma2"}} {
		f.Add(compress(f, data, opts...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		zr, err := NewReader(bytes.NewReader(in))
		if err != nil {
			return
		}
		// (1 MiB: a stream of long matches gives megabytes per input,
		// slow under the fuzzer's instrumentation.)
		io.Copy(io.Discard, io.LimitReader(zr, 1<<20))
	})
}
