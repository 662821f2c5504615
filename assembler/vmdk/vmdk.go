// Package vmdk writes a raw disk image as a streamOptimized VMDK, the
// disk format of OVF appliances for VMware and VirtualBox: a header with
// its grain directory "at the end", the descriptor, then each non-zero
// 64 KiB grain zlib-compressed behind its marker, a grain table after
// every 512 grains (none for a table of zero grains), the grain
// directory, a footer (the header with the directory's place) and an
// end-of-stream marker (VMware's Virtual Disk Format 5.0; the layout
// VirtualBox and VMware's open-vmdk write, which ESXi imports: qemu-img's
// streamOptimized, with its tables in front, is not a stream).
//
// Grains are compressed on every core and written in order; the output
// is a pure function of the input and the options. `qemu-img check` and
// `qemu-img compare` judge it in the tests.
package vmdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
	"github.com/alpinist/alpinist/internal/sparse"
)

const (
	sector     = 512
	grainSecs  = 128 // 64 KiB grains
	grainSize  = grainSecs * sector
	gtEntries  = 512 // grains a grain table covers (32 MiB)
	gtSecs     = gtEntries * 4 / sector
	descSecs   = 20
	overhead   = 128 // the first grain's sector
	gdAtEnd    = ^uint64(0)
	flagNL     = 1 << 0
	flagComp   = 1 << 16
	flagMarker = 1 << 17

	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3
)

// Options name the disk and give its identities.
type Options struct {
	// FileName is the name the descriptor gives its extent (the VMDK's
	// own file name).
	FileName string
	// CID is the descriptor's content id, LongContentID (32 hex digits)
	// its long form; both from the build's hash.
	CID           uint32
	LongContentID string
	// AdapterType is the virtual controller the disk sits on: lsilogic
	// (default), ide, buslogic or legacyESX.
	AdapterType string
}

// WriteFile converts the raw image src into the streamOptimized VMDK
// dst, which appears whole or not at all.
func WriteFile(ctx context.Context, dst, src string, o Options) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("vmdk: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("vmdk: %w", err)
	}
	err = atomicfile.Write(dst, 0o644, func(w io.Writer) error { return Write(w, ctxio.Reader(ctx, in), st.Size(), o) })
	if err != nil {
		return fmt.Errorf("vmdk: %s: %w", dst, err)
	}
	return nil
}

// Write writes the raw image r of size bytes to w as a streamOptimized
// VMDK, in one pass.
func Write(w io.Writer, r io.Reader, size int64, o Options) error {
	if size <= 0 {
		return fmt.Errorf("vmdk: a disk of %d bytes", size)
	}
	if o.AdapterType == "" {
		o.AdapterType = "lsilogic"
	}
	capacity := (size + sector - 1) / sector
	grains := (capacity + grainSecs - 1) / grainSecs
	ngt := (grains + gtEntries - 1) / gtEntries
	desc, err := descriptor(capacity, o)
	if err != nil {
		return err
	}
	s := &stream{w: bufio.NewWriterSize(w, 1<<20)}
	hdr := header(capacity, gdAtEnd)
	s.write(hdr)
	s.write(desc)
	s.pad(overhead * sector)
	gd := make([]uint32, ngt)
	gt := make([]uint32, gtEntries)
	used := false // any grain in the current table
	err = s.grains(r, size, grains, func(g int64, comp []byte) {
		if s.pos/sector >= 1<<32-gtSecs-1 && s.err == nil {
			s.err = fmt.Errorf("vmdk: the image passes 2 TiB, which a VMDK's 32-bit sector numbers cannot address")
		}
		if comp != nil {
			gt[g%gtEntries] = uint32(s.pos / sector)
			s.grain(g*grainSecs, comp)
			used = true
		}
		if g%gtEntries == gtEntries-1 || g == grains-1 {
			if used {
				s.marker(gtSecs, markerGT)
				gd[g/gtEntries] = uint32(s.pos / sector)
				s.table(gt, gtSecs)
			}
			clear(gt)
			used = false
		}
	})
	if err != nil {
		return err
	}
	gdSecs := (ngt*4 + sector - 1) / sector
	s.marker(uint64(gdSecs), markerGD)
	gdOffset := uint64(s.pos / sector)
	s.table(gd, gdSecs)
	s.marker(1, markerFooter)
	s.write(header(capacity, gdOffset))
	s.marker(0, markerEOS)
	if s.err != nil {
		return s.err
	}
	return s.w.Flush()
}

// header is the SparseExtentHeader, with the grain directory at
// gdOffset (gdAtEnd in the header, its sector in the footer).
func header(capacity int64, gdOffset uint64) []byte {
	h := make([]byte, sector)
	le := binary.LittleEndian
	copy(h, "KDMV")
	le.PutUint32(h[4:], 3) // version
	le.PutUint32(h[8:], flagNL|flagComp|flagMarker)
	le.PutUint64(h[12:], uint64(capacity))
	le.PutUint64(h[20:], grainSecs)
	le.PutUint64(h[28:], 1) // the descriptor's sector
	le.PutUint64(h[36:], descSecs)
	le.PutUint32(h[44:], gtEntries)
	le.PutUint64(h[48:], 0) // no redundant grain directory
	le.PutUint64(h[56:], gdOffset)
	le.PutUint64(h[64:], overhead)
	h[72] = 0 // clean
	copy(h[73:], "\n \r\n")
	le.PutUint16(h[77:], 1) // deflate (zlib streams)
	return h
}

// descriptor is the embedded descriptor, padded to its sectors.
func descriptor(capacity int64, o Options) ([]byte, error) {
	if strings.ContainsAny(o.FileName, "\"\n/") || o.FileName == "" {
		return nil, fmt.Errorf("vmdk: file name %q", o.FileName)
	}
	heads, secs := 255, 63
	if o.AdapterType == "ide" {
		heads = 16
	}
	cyls := min(capacity/int64(heads*secs), 65535)
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=%08x\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n", o.CID)
	fmt.Fprintf(&b, "# Extent description\nRW %d SPARSE \"%s\"\n\n", capacity, o.FileName)
	fmt.Fprintf(&b, "# The Disk Data Base\n#DDB\n\nddb.adapterType = \"%s\"\n", o.AdapterType)
	fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"%d\"\nddb.geometry.sectors = \"%d\"\n", cyls, heads, secs)
	if o.LongContentID != "" {
		fmt.Fprintf(&b, "ddb.longContentID = \"%s\"\n", o.LongContentID)
	}
	b.WriteString("ddb.toolsInstallType = \"4\"\nddb.toolsVersion = \"2147483647\"\nddb.virtualHWVersion = \"4\"\n")
	if b.Len() > descSecs*sector {
		return nil, fmt.Errorf("vmdk: a descriptor of %d bytes", b.Len())
	}
	out := make([]byte, descSecs*sector)
	copy(out, b.String())
	return out, nil
}

// stream writes in sectors, keeping its position and first error.
type stream struct {
	w   *bufio.Writer
	pos int64
	err error
}

func (s *stream) write(b []byte) {
	if s.err != nil {
		return
	}
	n, err := s.w.Write(b)
	s.pos += int64(n)
	s.err = err
}

// pad writes zeros up to offset to (a sector boundary).
func (s *stream) pad(to int64) {
	for s.pos < to && s.err == nil {
		s.write(make([]byte, min(to-s.pos, 1<<16)))
	}
}

// grain writes a grain's marker and compressed bytes, padded to a sector.
func (s *stream) grain(lba int64, comp []byte) {
	var m [12]byte
	binary.LittleEndian.PutUint64(m[:], uint64(lba))
	binary.LittleEndian.PutUint32(m[8:], uint32(len(comp)))
	s.write(m[:])
	s.write(comp)
	s.pad((s.pos + sector - 1) / sector * sector)
}

// marker writes a metadata marker: numSectors of metadata of typ follow.
func (s *stream) marker(numSectors uint64, typ uint32) {
	m := make([]byte, sector)
	binary.LittleEndian.PutUint64(m, numSectors)
	binary.LittleEndian.PutUint32(m[12:], typ)
	s.write(m)
}

// table writes 32-bit entries, padded to secs sectors.
func (s *stream) table(entries []uint32, secs int64) {
	b := make([]byte, secs*sector)
	for i, e := range entries {
		binary.LittleEndian.PutUint32(b[i*4:], e)
	}
	s.write(b)
}

// grains reads the raw image grain by grain, compresses the non-zero
// ones on every core, and calls put for each grain in order (comp nil
// for a zero grain). The last grain is padded with zeros.
func (s *stream) grains(r io.Reader, size, n int64, put func(g int64, comp []byte)) error {
	workers := runtime.GOMAXPROCS(0)
	type job struct {
		g    int64
		data []byte
		out  chan []byte
	}
	jobs := make(chan job, workers)
	order := make(chan job, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&buf, zlib.DefaultCompression)
			for j := range jobs {
				buf.Reset()
				zw.Reset(&buf)
				zw.Write(j.data)
				zw.Close()
				j.out <- bytes.Clone(buf.Bytes())
			}
		})
	}
	var readErr error
	go func() {
		defer close(order)
		defer close(jobs)
		for g := range n {
			data := make([]byte, grainSize)
			k, err := io.ReadFull(r, data[:min(grainSize, size-g*grainSize)])
			if err != nil && err != io.ErrUnexpectedEOF {
				readErr = err
				return
			}
			if int64(k) != min(grainSize, size-g*grainSize) {
				readErr = fmt.Errorf("the image ended at %d bytes, not %d", g*grainSize+int64(k), size)
				return
			}
			j := job{g: g, out: make(chan []byte, 1)}
			if !sparse.Zero(data) {
				j.data = data
				jobs <- j
			} else {
				j.out <- nil
			}
			order <- j
		}
	}()
	for j := range order {
		put(j.g, <-j.out)
	}
	wg.Wait()
	if readErr != nil {
		return fmt.Errorf("vmdk: reading the raw image: %w", readErr)
	}
	return s.err
}

// CID is a descriptor content id from a hash's first bytes.
func CID(sum []byte) uint32 { return binary.BigEndian.Uint32(sum) }
