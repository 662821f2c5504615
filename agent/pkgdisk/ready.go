package pkgdisk

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"math"
	"os"
)

// A disk can be read while it is written: the build VM boots while the
// host still fetches and prepares the packages. The disk's first block,
// the tar header of its manifest, is then written last (HoldFirst), and
// the VM waits until that block is Ready: it reads it around its own
// cache (O_DIRECT), and drops what it may have cached of the disk before
// reading on (the kernel reads a disk's first blocks when it finds it).

// Ready tells whether block, a disk's first 512 bytes, is the valid tar
// header of a manifest: once it is, the whole disk is written.
func Ready(block []byte) bool {
	if len(block) < blockSize {
		return false
	}
	h, err := tar.NewReader(bytes.NewReader(block[:blockSize])).Next()
	return err == nil && h.Name == manifestName && h.Typeflag == tar.TypeReg
}

// HoldFirst writes a disk to a file, all but its first block, which
// Release writes when the rest is written. The file is written at its
// own offsets (WriteAt), so it can be seeked as AddPrepared needs.
type HoldFirst struct {
	f     *os.File
	pos   int64
	first [blockSize]byte
	// limit, when > 0, is the disk's size as the VM sees it.
	limit int64
}

// NewHoldFirst writes to f (from offset 0), which must not grow beyond
// limit bytes when limit > 0: the size the VM was given.
func NewHoldFirst(f *os.File, limit int64) *HoldFirst { return &HoldFirst{f: f, limit: limit} }

// ErrTooLarge is what HoldFirst returns for a disk larger than its limit.
var ErrTooLarge = errors.New("pkgdisk: the disk is larger than the size the VM was given")

func (h *HoldFirst) Write(p []byte) (int, error) {
	n := 0
	if h.pos < blockSize {
		n = copy(h.first[h.pos:], p)
		h.pos += int64(n)
		p = p[n:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if h.limit > 0 && h.pos+int64(len(p)) > h.limit {
		return n, ErrTooLarge
	}
	m, err := h.f.WriteAt(p, h.pos)
	h.pos += int64(m)
	return n + m, err
}

// Seek moves the write offset (io.SeekStart and io.SeekCurrent).
func (h *HoldFirst) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += h.pos
	default:
		return 0, errors.New("pkgdisk: HoldFirst seeks from the start or the current offset only")
	}
	if off < 0 {
		return 0, errors.New("pkgdisk: negative offset")
	}
	h.pos = off
	return off, nil
}

// Release writes the first block, making the disk Ready.
func (h *HoldFirst) Release() error {
	_, err := h.f.WriteAt(h.first[:], 0)
	return err
}

// Open reads a disk from its file, as the build VM does: buffered, and
// able to seek and read at offsets, so that what a reader does not read
// (the files' bytes, which the installer copies in the kernel from the
// disk at their offsets: Reader.Disk) is skipped, not read through.
func Open(f *os.File) (*Reader, error) {
	r, err := NewReader(&fileReader{ra: f, buf: make([]byte, 256<<10)})
	if err != nil {
		return nil, err
	}
	r.disk = f
	return r, nil
}

// Disk is the file the disk is read from (Open), nil for a stream.
func (r *Reader) Disk() *os.File { return r.disk }

// fileReader is a buffered reader of a file, or of its section from base
// to end (when end > 0), that seeks without reading (offsets relative to
// base) and reads at offsets.
type fileReader struct {
	ra        io.ReaderAt
	buf       []byte
	base, end int64
	off       int64 // the file offset of buf[0]
	r, w      int   // buf[r:w] is unread
}

func (b *fileReader) pos() int64 { return b.off + int64(b.r) }

func (b *fileReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		b.off, b.r, b.w = b.pos(), 0, 0
		left := int64(math.MaxInt64)
		if b.end > 0 {
			if left = b.end - b.off; left <= 0 {
				return 0, io.EOF
			}
		}
		if len(p) >= len(b.buf) {
			p = p[:min(int64(len(p)), left)]
			n, err := b.ra.ReadAt(p, b.off)
			b.off += int64(n)
			if n > 0 {
				err = nil
			}
			return n, err
		}
		n, err := b.ra.ReadAt(b.buf[:min(int64(len(b.buf)), left)], b.off)
		b.w = n
		if n == 0 {
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

func (b *fileReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		offset += b.base
	case io.SeekCurrent:
		offset += b.pos()
	default:
		return 0, errors.New("pkgdisk: seek from the start or the current offset only")
	}
	if offset < b.base {
		return 0, errors.New("pkgdisk: negative offset")
	}
	if offset >= b.off && offset <= b.off+int64(b.w) {
		b.r = int(offset - b.off)
	} else {
		b.off, b.r, b.w = offset, 0, 0
	}
	return offset - b.base, nil
}

// ReadAt reads at an offset of the file (not of the section).
func (b *fileReader) ReadAt(p []byte, off int64) (int, error) { return b.ra.ReadAt(p, off) }
