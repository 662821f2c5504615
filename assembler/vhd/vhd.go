// Package vhd writes a raw disk image as a fixed VHD, as Azure takes it:
// the raw bytes, then a 512-byte footer (Microsoft's Virtual Hard Disk
// Image Format Specification, version 1.0). Azure wants a fixed disk
// whose virtual size is a whole number of MiB; that is checked here.
//
// The footer's geometry is the largest (65535 cylinders, 16 heads, 255
// sectors), as qemu-img writes with force_size: every QEMU then takes
// the disk's size from the footer's current size, not from the
// geometry, which could not express most sizes (Hyper-V and Azure read
// the current size too). Its time is the build's (SOURCE_DATE_EPOCH)
// and its unique id comes from the build's hash: the same disk gives
// the same VHD. `qemu-img info` and `qemu-img compare` judge it in the
// tests.
package vhd

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
	"github.com/alpinist/alpinist/internal/sparse"
)

const (
	// FooterSize is the footer's size, after the disk's bytes.
	FooterSize = 512
	// MiB is the unit Azure wants the virtual size in.
	MiB = 1 << 20
	// MaxSize is the largest disk written: QEMU reads no VHD over
	// 0xff000000 sectors (2040 GiB).
	MaxSize = 0xff000000 * 512

	diskTypeFixed = 2
	// vhdEpoch is the footer's time origin, 2000-01-01 00:00:00 UTC.
	vhdEpoch = 946684800
)

// Options give the footer's unique id and time.
type Options struct {
	ID   [16]byte
	Time time.Time
}

// Footer is the footer of a fixed VHD of size bytes.
func Footer(size int64, o Options) ([]byte, error) {
	if err := check(size); err != nil {
		return nil, err
	}
	f := make([]byte, FooterSize)
	be := binary.BigEndian
	copy(f[0:], "conectix")
	be.PutUint32(f[8:], 2)              // features: the reserved bit, always set
	be.PutUint32(f[12:], 0x00010000)    // format version 1.0
	be.PutUint64(f[16:], ^uint64(0))    // data offset: none, a fixed disk
	be.PutUint32(f[24:], stamp(o.Time)) // seconds since 2000
	copy(f[28:], "alpn")                // creator application
	be.PutUint32(f[32:], 0x00010000)    // creator version
	copy(f[36:], "Wi2k")                // creator host OS, as QEMU writes
	be.PutUint64(f[40:], uint64(size))  // original size
	be.PutUint64(f[48:], uint64(size))  // current size
	be.PutUint16(f[56:], 65535)         // cylinders, heads, sectors: the largest
	f[58], f[59] = 16, 255
	be.PutUint32(f[60:], diskTypeFixed)
	copy(f[68:], o.ID[:])
	be.PutUint32(f[64:], Checksum(f))
	return f, nil
}

// Checksum is a footer's checksum: the one's complement of the sum of
// its bytes, the checksum field's own taken as zero.
func Checksum(f []byte) uint32 {
	var sum uint32
	for i, b := range f {
		if i < 64 || i >= 68 {
			sum += uint32(b)
		}
	}
	return ^sum
}

func stamp(t time.Time) uint32 {
	s := t.Unix() - vhdEpoch
	if s < 0 || t.IsZero() {
		return 0
	}
	return uint32(min(s, 1<<32-1))
}

func check(size int64) error {
	switch {
	case size <= 0:
		return fmt.Errorf("vhd: a disk of %d bytes", size)
	case size%MiB != 0:
		return fmt.Errorf("vhd: the disk is %d bytes, not a whole number of MiB, which Azure requires: give disk.size in MiB or GiB", size)
	case size > MaxSize:
		return fmt.Errorf("vhd: the disk is %d bytes; a VHD holds at most %d (2040 GiB)", size, int64(MaxSize))
	}
	return nil
}

// WriteFile writes the raw image src as the fixed VHD dst, which appears
// whole or not at all. The raw image's all-zero blocks stay holes.
func WriteFile(ctx context.Context, dst, src string, o Options) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("vhd: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("vhd: %w", err)
	}
	footer, err := Footer(st.Size(), o)
	if err != nil {
		return err
	}
	err = atomicfile.WriteFile(dst, 0o644, func(f *os.File) error {
		if err := f.Truncate(st.Size() + FooterSize); err != nil {
			return err
		}
		n, err := sparse.Copy(f, 0, ctxio.Reader(ctx, in))
		if err != nil {
			return err
		}
		if n != st.Size() {
			return fmt.Errorf("%s changed while it was read: %d bytes, not %d", src, n, st.Size())
		}
		_, err = f.WriteAt(footer, st.Size())
		return err
	})
	if err != nil {
		return fmt.Errorf("vhd: %s: %w", dst, err)
	}
	return nil
}

// ReadFooter reads and checks the footer at the end of a fixed VHD of
// fileSize bytes, and gives the disk's size.
func ReadFooter(r io.ReaderAt, fileSize int64) (int64, error) {
	if fileSize < FooterSize {
		return 0, fmt.Errorf("vhd: %d bytes is too short", fileSize)
	}
	f := make([]byte, FooterSize)
	if _, err := r.ReadAt(f, fileSize-FooterSize); err != nil {
		return 0, fmt.Errorf("vhd: %w", err)
	}
	be := binary.BigEndian
	switch {
	case string(f[:8]) != "conectix":
		return 0, fmt.Errorf("vhd: no footer (cookie %q)", f[:8])
	case be.Uint32(f[64:]) != Checksum(f):
		return 0, fmt.Errorf("vhd: footer checksum %08x, computed %08x", be.Uint32(f[64:]), Checksum(f))
	case be.Uint32(f[60:]) != diskTypeFixed:
		return 0, fmt.Errorf("vhd: disk type %d, not fixed (2)", be.Uint32(f[60:]))
	}
	size := int64(be.Uint64(f[48:]))
	if size != fileSize-FooterSize {
		return 0, fmt.Errorf("vhd: the footer says %d bytes, the file holds %d", size, fileSize-FooterSize)
	}
	return size, check(size)
}
