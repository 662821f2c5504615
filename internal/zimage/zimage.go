// Package zimage takes the kernel Image out of a 32-bit ARM zImage and
// wraps it as a uImage that QEMU loads where the zImage's decompressor
// would have put it.
//
// A zImage is a small decompressor and the compressed kernel (the piggy
// data). Booted as it is, the decompressor runs in the guest, under TCG
// emulated: 2 to 2.5 s of every armv7 and armhf build VM's boot on this
// project's machine (Debian's armmp kernel is xz with the ARM BCJ
// filter). Here it is decompressed natively, and QEMU loads the Image as
// a uImage: a 64-byte header naming the load and entry address, which
// QEMU's Linux loader honours (a raw Image it would put at the zImage's
// address, RAM + 0x10000, where it cannot run).
//
// The Image must go to RAM's start + TEXT_OFFSET, the offset the kernel
// was linked for (0x8000 usually, 0x208000 in Debian's multi-platform
// armmp kernels): the kernel finds RAM's start from where it runs, and
// a wrong guess maps all of memory 2 MiB off. The zImage says its
// TEXT_OFFSET in its header's table (the KLSZ tag, Linux 4.15 and
// later), with the place of the decompressed size the build appended
// after the compressed data, which ends the piggy data. Where that data
// starts is not written anywhere: it is the first place before its end
// where a stream in a format kcomp reads starts and decompresses to
// exactly that size.
package zimage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/alpinist/alpinist/internal/kcomp"
)

// ErrNotZImage is Extract's error for an image QEMU cannot be given as a
// uImage from here: not a little-endian ARM zImage, no KLSZ table with a
// TEXT_OFFSET (kernels before 4.15), or piggy data in a format kcomp
// does not read (LZMA, LZO) or that fails within its first megabyte.
// The caller boots the zImage as it is.
var ErrNotZImage = errors.New("not an ARM zImage whose kernel can be unpacked")

const (
	zMagic      = 0x016f2818 // at 0x24
	endianFlag  = 0x04030201 // at 0x30, as a little-endian zImage reads it
	tableMagic  = 0x45454545 // at 0x34; the table's offset is at 0x38
	tagKLSZ     = 0x5a534c4b // "KLSZ": piggy size's place, bss, TEXT_OFFSET, malloc
	headerSize  = 0x3c
	maxTableLen = 64 // words read of the table at most
	// HeaderSize is a uImage header's size.
	HeaderSize = 64
)

// Info is what a zImage says of its kernel.
type Info struct {
	TextOffset uint32 // where the Image goes past RAM's start
	// PayloadEnd is where the compressed kernel ends: the decompressed
	// size the build appended (4 bytes, little-endian) is just before.
	PayloadEnd int64
	Size       int64 // the decompressed Image's bytes
	// PayloadStart is where the compressed kernel starts (found by
	// Extract; Parse leaves it 0).
	PayloadStart int64
}

// Parse reads the header and the table of the zImage r (size bytes).
func Parse(r io.ReaderAt, size int64) (Info, error) {
	var h [headerSize]byte
	if size < headerSize {
		return Info{}, fmt.Errorf("%w: %d bytes is too short for a zImage", ErrNotZImage, size)
	}
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrNotZImage, err)
	}
	le := binary.LittleEndian
	if le.Uint32(h[0x24:]) != zMagic {
		return Info{}, fmt.Errorf("%w: no zImage magic at 0x24", ErrNotZImage)
	}
	if le.Uint32(h[0x30:]) != endianFlag {
		return Info{}, fmt.Errorf("%w: a big-endian zImage", ErrNotZImage)
	}
	if le.Uint32(h[0x34:]) != tableMagic {
		return Info{}, fmt.Errorf("%w: no table of sizes in its header (Linux before 4.15)", ErrNotZImage)
	}
	at := int64(le.Uint32(h[0x38:]))
	if at < headerSize || at+8 > size {
		return Info{}, fmt.Errorf("%w: its table at %d is outside the %d-byte image", ErrNotZImage, at, size)
	}
	table := make([]byte, min(maxTableLen*4, size-at))
	if _, err := r.ReadAt(table, at); err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrNotZImage, err)
	}
	for len(table) >= 8 {
		n := int(le.Uint32(table)) // the tag's words, this one included
		if n == 0 {
			break
		}
		if n < 2 || n*4 > len(table) {
			return Info{}, fmt.Errorf("%w: a tag of %d words in its table", ErrNotZImage, n)
		}
		if le.Uint32(table[4:]) == tagKLSZ {
			if n < 5 {
				return Info{}, fmt.Errorf("%w: its size tag has no TEXT_OFFSET", ErrNotZImage)
			}
			return info(r, size, int64(le.Uint32(table[8:])), le.Uint32(table[16:]))
		}
		table = table[n*4:]
	}
	return Info{}, fmt.Errorf("%w: no KLSZ tag in its table", ErrNotZImage)
}

// info checks the KLSZ tag's values and reads the decompressed size.
func info(r io.ReaderAt, size, sizeAt int64, textOffset uint32) (Info, error) {
	if sizeAt < headerSize || sizeAt+4 > size {
		return Info{}, fmt.Errorf("%w: the kernel's size at %d is outside the %d-byte image", ErrNotZImage, sizeAt, size)
	}
	// The kernel's first 16 KiB below it are its page tables; it must
	// be page-aligned past that, and well inside a bank.
	if textOffset < 0x8000 || textOffset%0x1000 != 0 || textOffset > 16<<20 {
		return Info{}, fmt.Errorf("%w: TEXT_OFFSET %#x", ErrNotZImage, textOffset)
	}
	var w [4]byte
	if _, err := r.ReadAt(w[:], sizeAt); err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrNotZImage, err)
	}
	n := int64(binary.LittleEndian.Uint32(w[:]))
	if n == 0 || n > kcomp.MaxSize {
		return Info{}, fmt.Errorf("%w: the kernel claims %d bytes decompressed (at most %d)", ErrNotZImage, n, kcomp.MaxSize)
	}
	return Info{TextOffset: textOffset, PayloadEnd: sizeAt, Size: n}, nil
}

// Extract writes the kernel Image inside the zImage r (size bytes) to w.
// It fails with ErrNotZImage (wrapped, with the reason) for an image it
// cannot unpack; an image that is a zImage but whose kernel does not
// decompress to the size it says is an error of its own.
func Extract(r io.ReaderAt, size int64, w io.Writer) (Info, error) {
	in, err := Parse(r, size)
	if err != nil {
		return Info{}, err
	}
	starts, err := candidates(r, in.PayloadEnd)
	if err != nil {
		return Info{}, err
	}
	if len(starts) == 0 {
		return Info{}, fmt.Errorf("%w: no gzip, zstd, xz, lz4 or bzip2 stream before its size at %d", ErrNotZImage, in.PayloadEnd)
	}
	// Each candidate is tried into a buffer that only grows to the
	// first megabyte: a false start (a magic number in the
	// decompressor's code) fails within it, and the one that gets past
	// it is the kernel.
	var lastErr error
	for _, at := range starts {
		err := decompress(r, at, in, w)
		if err == nil {
			in.PayloadStart = at
			return in, nil
		}
		var partial *wroteError
		if errors.As(err, &partial) {
			return Info{}, partial.err
		}
		lastErr = err
	}
	// LZMA or LZO data, or a stream that breaks early: the zImage's own
	// decompressor is left to read it (or to say what is wrong).
	return Info{}, fmt.Errorf("%w: no stream before %d decompresses to the %d bytes it says (the last: %v)", ErrNotZImage, in.PayloadEnd, in.Size, lastErr)
}

// wroteError is an error after output was written to the caller's
// writer: no other candidate can be tried.
type wroteError struct{ err error }

func (e *wroteError) Error() string { return e.err.Error() }

// probe is how much of a candidate is decompressed before any of it is
// written out.
const probe = 1 << 20

// decompress decompresses the stream at off, up to in.PayloadEnd, into
// w, and checks its size.
func decompress(r io.ReaderAt, off int64, in Info, w io.Writer) error {
	var magic [kcomp.MagicLen]byte
	if _, err := r.ReadAt(magic[:], off); err != nil && err != io.EOF {
		return err
	}
	dec, closeDec, err := kcomp.Reader(magic[:], io.NewSectionReader(r, off, in.PayloadEnd-off))
	if err != nil {
		return err
	}
	defer closeDec()
	lr := io.LimitReader(dec, in.Size+1)
	head := make([]byte, min(probe, in.Size+1))
	k, err := io.ReadFull(lr, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("at %d: %w", off, err)
	}
	if k < len(head) && int64(k) != in.Size {
		return fmt.Errorf("at %d: %d bytes, not %d", off, k, in.Size)
	}
	if _, err := w.Write(head[:k]); err != nil {
		return &wroteError{err}
	}
	rest, err := io.Copy(w, lr)
	if err != nil {
		return &wroteError{fmt.Errorf("decompressing the kernel: %w", err)}
	}
	if got := int64(k) + rest; got != in.Size {
		return &wroteError{fmt.Errorf("decompressing the kernel: %d bytes, but the zImage says %d", got, in.Size)}
	}
	return nil
}

// candidates are the offsets before end where a stream kcomp reads
// starts, read a chunk at a time.
func candidates(r io.ReaderAt, end int64) ([]int64, error) {
	const chunk = 1 << 20
	var at []int64
	buf := make([]byte, chunk+kcomp.MagicLen-1)
	for off := int64(0); off < end; off += chunk {
		n := min(int64(len(buf)), end-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return nil, err
		}
		for _, i := range kcomp.Index(buf[:n]) {
			if int64(i) < chunk {
				at = append(at, off+int64(i))
			}
		}
	}
	return at, nil
}

// Header is the uImage header of a Linux ARM kernel of size bytes whose
// CRC-32 is sum, loaded and entered at load (U-Boot's image format,
// which QEMU's -kernel reads): no time stamp, so the same kernel gives
// the same bytes.
func Header(size int64, sum uint32, load uint32) []byte {
	h := make([]byte, HeaderSize)
	be := binary.BigEndian
	be.PutUint32(h[0:], 0x27051956) // IH_MAGIC
	be.PutUint32(h[12:], uint32(size))
	be.PutUint32(h[16:], load) // load address
	be.PutUint32(h[20:], load) // entry point
	be.PutUint32(h[24:], sum)
	h[28], h[29], h[30], h[31] = 5, 2, 2, 0 // IH_OS_LINUX, IH_ARCH_ARM, IH_TYPE_KERNEL, IH_COMP_NONE
	copy(h[32:], "Linux")
	be.PutUint32(h[4:], crc32.ChecksumIEEE(h))
	return h
}

// Convert writes the kernel of the zImage file src as a uImage to dst,
// to be loaded at ramBase + its TEXT_OFFSET, and says whether it could.
// When the image is not one it unpacks (ErrNotZImage) it returns false
// and leaves no dst; any other error is an error. dst is not synced: it
// is for the VM about to boot.
func Convert(src, dst string, ramBase uint32) (bool, error) {
	return kcomp.UnpackFile(src, dst, func(in *os.File, size int64, out *os.File) (bool, error) {
		if _, err := out.Seek(HeaderSize, io.SeekStart); err != nil {
			return false, err
		}
		bw := bufio.NewWriterSize(out, 1<<20)
		sum := crc32.NewIEEE()
		info, err := Extract(in, size, io.MultiWriter(bw, sum))
		if err != nil {
			if errors.Is(err, ErrNotZImage) {
				return false, nil
			}
			return false, fmt.Errorf("%s: %w", src, err)
		}
		if err := bw.Flush(); err != nil {
			return false, err
		}
		load := uint64(ramBase) + uint64(info.TextOffset)
		if load+uint64(info.Size) > 1<<32 {
			return false, fmt.Errorf("%s: a %d-byte kernel at %#x does not fit below 4 GiB", src, info.Size, load)
		}
		if _, err := out.WriteAt(Header(info.Size, sum.Sum32(), uint32(load)), 0); err != nil {
			return false, err
		}
		return true, nil
	})
}

// IsUImage says whether b starts as a uImage does.
func IsUImage(b []byte) bool {
	return len(b) >= 4 && bytes.Equal(b[:4], []byte{0x27, 0x05, 0x19, 0x56})
}
