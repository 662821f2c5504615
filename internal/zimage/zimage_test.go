package zimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/kerneltest"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
)

// image is a stand-in kernel Image of n bytes.
func image(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// noise is n bytes that do not compress.
func noise(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// zImage lays out a zImage as Linux's build does: the header with its
// magic and table offset, a stand-in decompressor that holds an xz
// magic and a gzip magic of its own (as the real one's code does), the
// KLSZ table, the compressed kernel and the decompressed size after it.
func zImage(payload []byte, size int, textOffset uint32) []byte {
	img := make([]byte, 0x200)
	le := binary.LittleEndian
	le.PutUint32(img[0x24:], zMagic)
	le.PutUint32(img[0x30:], endianFlag)
	le.PutUint32(img[0x34:], tableMagic)
	copy(img[0x40:], "\xfd7zXZ\x00 not a stream \x1f\x8b\x08 nor this")
	table := len(img)
	le.PutUint32(img[0x38:], uint32(table))
	sizeAt := table + 7*4 + len(payload)
	for _, w := range []uint32{6, tagKLSZ, uint32(sizeAt), 0x40000, textOffset, 0x10000, 0} {
		img = le.AppendUint32(img, w)
	}
	img = append(img, payload...)
	return le.AppendUint32(img, uint32(size))
}

func TestExtract(t *testing.T) {
	want := image(3<<20 + 5)
	for _, format := range kerneltest.Formats {
		t.Run(format, func(t *testing.T) {
			img := zImage(kerneltest.Compress(t, format, want), len(want), 0x208000)
			var out bytes.Buffer
			in, err := Extract(bytes.NewReader(img), int64(len(img)), &out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%d bytes out, not the kernel's %d", out.Len(), len(want))
			}
			if in.TextOffset != 0x208000 || in.Size != int64(len(want)) || in.PayloadStart != 0x200+7*4 || in.PayloadEnd != int64(len(img)-4) {
				t.Errorf("info %+v", in)
			}
		})
	}
}

// TestExtractRejects: what is not a zImage unpacked here is ErrNotZImage
// (the zImage boots as it is), and so is a kernel in no stream that
// decompresses through its first megabyte; one that breaks later or is
// not the size it says is another error.
func TestExtractRejects(t *testing.T) {
	k := image(2 << 20)
	good := zImage(kerneltest.Compress(t, "gzip", k), len(k), 0x8000)
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	le := binary.LittleEndian
	for _, c := range []struct {
		name string
		img  []byte
		not  bool // ErrNotZImage
		want string
	}{
		{"short", good[:0x30], true, "too short"},
		{"no magic", edit(func(b []byte) []byte { b[0x24] = 0; return b }), true, "no zImage magic"},
		{"big-endian", edit(func(b []byte) []byte { le.PutUint32(b[0x30:], 0x01020304); return b }), true, "big-endian"},
		{"no table", edit(func(b []byte) []byte { b[0x34] = 0; return b }), true, "no table"},
		{"table outside", edit(func(b []byte) []byte { le.PutUint32(b[0x38:], 1<<30); return b }), true, "outside"},
		{"no KLSZ", edit(func(b []byte) []byte { b[0x204] = 'X'; return b }), true, "no KLSZ"},
		{"short tag", edit(func(b []byte) []byte { le.PutUint32(b[0x200:], 4); le.PutUint32(b[0x210:], 0); return b }), true, "no TEXT_OFFSET"},
		{"tag too long", edit(func(b []byte) []byte { le.PutUint32(b[0x200:], 1000); return b }), true, "a tag of 1000 words"},
		{"text offset", edit(func(b []byte) []byte { le.PutUint32(b[0x210:], 0x8100); return b }), true, "TEXT_OFFSET 0x8100"},
		{"size outside", edit(func(b []byte) []byte { le.PutUint32(b[0x208:], uint32(len(b))); return b }), true, "outside"},
		{"huge", edit(func(b []byte) []byte { le.PutUint32(b[len(b)-4:], 1<<30); return b }), true, "claims 1073741824 bytes"},
		{"unknown compression", zImage([]byte("\x5d\x00\x00\x80\x00 an LZMA stream"), 100, 0x8000), true, "decompresses to the 100 bytes"},
		{"no stream", func() []byte {
			b := zImage([]byte("\x5d\x00\x00\x80\x00 an LZMA stream"), 100, 0x8000)
			copy(b[0x40:0x100], make([]byte, 0xc0)) // the stand-in decompressor's magics
			return b
		}(), true, "no gzip, zstd, xz, lz4 or bzip2 stream"},
		{"size differs", edit(func(b []byte) []byte { le.PutUint32(b[len(b)-4:], uint32(len(k)+1)); return b }), false, "the zImage says 2097153"},
		{"truncated early", zImage(kerneltest.Compress(t, "gzip", k)[:5000], len(k), 0x8000), true, "bytes, not 2097152"},
		{"truncated late", zImage(kerneltest.Compress(t, "gzip", noise(2<<20))[:3<<20/2], 2<<20, 0x8000), false, "decompressing the kernel"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := Extract(bytes.NewReader(c.img), int64(len(c.img)), &out)
			if err == nil || errors.Is(err, ErrNotZImage) != c.not || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Extract: %v; want ErrNotZImage %v, %q", err, c.not, c.want)
			}
		})
	}
}

// checkUImage checks a uImage's header: its CRCs, size, addresses and
// types, and gives its data.
func checkUImage(t *testing.T, u []byte, load uint32) []byte {
	t.Helper()
	if len(u) < HeaderSize || !IsUImage(u) {
		t.Fatalf("not a uImage: % x", u[:min(len(u), 8)])
	}
	be := binary.BigEndian
	h := bytes.Clone(u[:HeaderSize])
	hcrc := be.Uint32(h[4:])
	be.PutUint32(h[4:], 0)
	data := u[HeaderSize:]
	switch {
	case crc32.ChecksumIEEE(h) != hcrc:
		t.Error("header CRC")
	case be.Uint32(h[24:]) != crc32.ChecksumIEEE(data):
		t.Error("data CRC")
	case be.Uint32(h[12:]) != uint32(len(data)):
		t.Errorf("size %d, data %d", be.Uint32(h[12:]), len(data))
	case be.Uint32(h[16:]) != load || be.Uint32(h[20:]) != load:
		t.Errorf("load %#x, entry %#x; want %#x", be.Uint32(h[16:]), be.Uint32(h[20:]), load)
	case !bytes.Equal(h[28:32], []byte{5, 2, 2, 0}) || be.Uint32(h[8:]) != 0:
		t.Errorf("os, arch, type, compression % x; time %d", h[28:32], be.Uint32(h[8:]))
	}
	return data
}

// TestConvert writes the uImage QEMU loads, and nothing for an image
// that is not a zImage.
func TestConvert(t *testing.T) {
	k := image(1<<20 + 3)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "zImage"), filepath.Join(dir, "uImage")
	if err := os.WriteFile(src, zImage(kerneltest.Compress(t, "xz", k), len(k), 0x208000), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := Convert(src, dst, 0x40000000); !ok || err != nil {
		t.Fatalf("Convert = %v, %v", ok, err)
	}
	u, _ := os.ReadFile(dst)
	if data := checkUImage(t, u, 0x40208000); !bytes.Equal(data, k) {
		t.Error("the uImage's data is not the kernel")
	}
	// The same kernel gives the same bytes.
	again := filepath.Join(dir, "again")
	Convert(src, again, 0x40000000)
	if u2, _ := os.ReadFile(again); !bytes.Equal(u, u2) {
		t.Error("two conversions differ")
	}
	os.WriteFile(src, []byte("MZ not a zImage at all, but long enough to have a header and be read as one"), 0o644)
	if ok, err := Convert(src, dst, 0x40000000); ok || err != nil {
		t.Errorf("a non-zImage: %v, %v", ok, err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("a non-zImage left %s: %v", dst, err)
	}
	// A kernel that does not fit below 4 GiB at the load address.
	os.WriteFile(src, zImage(kerneltest.Compress(t, "gzip", k), len(k), 0x8000), 0o644)
	if ok, err := Convert(src, dst, 0xfff00000); ok || err == nil || !strings.Contains(err.Error(), "below 4 GiB") {
		t.Errorf("a kernel past 4 GiB: %v, %v", ok, err)
	}
}

// TestConvertRealKernel unpacks the test repository's armv7 linux-virt
// (Debian's armmp-lpae: xz with the ARM BCJ filter, TEXT_OFFSET
// 0x208000) and checks the Image against xz-utils' reading of the same
// stream.
func TestConvertRealKernel(t *testing.T) {
	xz := hosttool.Need(t, "xz", "xz-utils")
	src := testrepo.Extract(t, "armv7", "linux-virt", "boot/vmlinuz-virt")
	dir := t.TempDir()
	dst := filepath.Join(dir, "uImage")
	if ok, err := Convert(src, dst, 0x40000000); !ok || err != nil {
		t.Fatalf("Convert = %v, %v", ok, err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	in, err := Parse(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := os.ReadFile(dst)
	data := checkUImage(t, u, 0x40000000+in.TextOffset)
	zimg, _ := os.ReadFile(src)
	var info Info
	if info, err = Extract(bytes.NewReader(zimg), int64(len(zimg)), new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(xz, "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(zimg[info.PayloadStart:info.PayloadEnd])
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz -dc: %v", err)
	}
	if !bytes.Equal(data, want) {
		t.Errorf("the Image (%d bytes) is not xz-utils' (%d bytes)", len(data), len(want))
	}
	t.Logf("TEXT_OFFSET %#x, payload %d..%d, Image %d bytes", in.TextOffset, info.PayloadStart, info.PayloadEnd, len(data))
}

func FuzzExtract(f *testing.F) {
	k := image(3000)
	for _, format := range kerneltest.Formats {
		f.Add(zImage(kerneltest.Compress(f, format, k), len(k), 0x8000))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, img []byte) {
		var out bytes.Buffer
		in, err := Extract(bytes.NewReader(img), int64(len(img)), &out)
		if err == nil && in.Size != int64(out.Len()) {
			t.Fatalf("said %d bytes, wrote %d", in.Size, out.Len())
		}
	})
}
