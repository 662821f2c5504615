// Package gce writes a raw disk image as Google Compute Engine imports
// it: a gzip'ed tar holding one file, disk.raw, whose size is a whole
// number of GiB, in GNU tar's oldgnu format (what `gcloud compute images
// create --source-uri` and Google's docs ask for: `tar --format=oldgnu
// -Sczf`), as a sparse member: only the disk's non-zero blocks are
// stored.
//
// The sparse map comes from the disk's content (4 KiB blocks of zeros
// are holes), not from the file system's holes, so the same disk gives
// the same bytes on any host. Go's archive/tar reads such members but
// cannot write them; the headers are written here.
package gce

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
	"github.com/alpinist/alpinist/internal/sparse"
)

// GiB is the unit GCE wants the disk's size in.
const GiB = 1 << 30

// Name is the disk's name in the tar, the one GCE reads.
const Name = "disk.raw"

const block = 512

// Chunk is one stored (non-zero) region of the disk.
type Chunk struct{ Offset, Size int64 }

// WriteFile writes the raw disk src as the GCE image dst (whole or not
// at all).
func WriteFile(ctx context.Context, dst, src string, mtime time.Time) error {
	if ctx == nil {
		ctx = context.Background()
	}
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("gce: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("gce: %w", err)
	}
	if st.Size()%GiB != 0 || st.Size() == 0 {
		return fmt.Errorf("gce: the disk is %d bytes; Compute Engine imports only whole GiB", st.Size())
	}
	chunks, err := Map(ctx, f, st.Size())
	if err != nil {
		return fmt.Errorf("gce: %s: %w", src, err)
	}
	err = atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		zw, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(ctxio.Writer(ctx, zw), 1<<20)
		if err := Write(bw, f, st.Size(), chunks, mtime); err != nil {
			return err
		}
		return errors.Join(bw.Flush(), zw.Close())
	})
	if err != nil {
		return fmt.Errorf("gce: %s: %w", dst, err)
	}
	return nil
}

// Map finds the non-zero 4 KiB blocks of the file r of size bytes, as
// chunks. The file system's holes (SEEK_DATA) are skipped unread: they
// are zeros; data is read and its zero blocks left out too.
func Map(ctx context.Context, f *os.File, size int64) ([]Chunk, error) {
	var chunks []Chunk
	add := func(off, n int64) {
		if k := len(chunks); k > 0 && chunks[k-1].Offset+chunks[k-1].Size == off {
			chunks[k-1].Size += n
			return
		}
		chunks = append(chunks, Chunk{off, n})
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) { // only a hole is left
				break
			}
			data = off // no SEEK_DATA here: read everything
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		data &^= sparse.Block - 1
		for p := data; p < hole; {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-p)], p)
			if n == 0 && err != nil {
				return nil, err
			}
			for i := 0; i < n; i += sparse.Block {
				b := buf[i:min(i+sparse.Block, n)]
				if !sparse.Zero(b) {
					add(p+int64(i), int64(len(b)))
				}
			}
			p += int64(n)
		}
		off = max(hole, data+1)
	}
	return chunks, nil
}

// Write writes the tar of disk.raw (size bytes, its data in chunks, read
// from r) to w, uncompressed.
func Write(w io.Writer, r io.ReaderAt, size int64, chunks []Chunk, mtime time.Time) error {
	entries := append([]Chunk(nil), chunks...)
	stored := int64(0)
	for _, c := range chunks {
		stored += c.Size
	}
	// A disk that ends in a hole ends its map with an empty chunk there,
	// as GNU tar writes it: the extracted file gets its full size.
	if k := len(entries); k == 0 || entries[k-1].Offset+entries[k-1].Size < size {
		entries = append(entries, Chunk{size, 0})
	}
	hdr, ext := headers(size, stored, entries, mtime)
	for _, b := range append([][]byte{hdr}, ext...) {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	buf := make([]byte, 1<<20)
	for _, c := range chunks {
		for p := c.Offset; p < c.Offset+c.Size; {
			n := min(int64(len(buf)), c.Offset+c.Size-p)
			if _, err := r.ReadAt(buf[:n], p); err != nil {
				return err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			p += n
		}
	}
	pad := (block - stored%block) % block
	_, err := w.Write(make([]byte, pad+2*block)) // and the end of the archive
	return err
}

// headers are the oldgnu 'S' header of disk.raw and the extension
// blocks its map needs past the header's four entries.
func headers(size, stored int64, entries []Chunk, mtime time.Time) ([]byte, [][]byte) {
	h := make([]byte, block)
	copy(h[0:], Name)
	octal(h[100:108], 0o644)
	octal(h[108:116], 0)
	octal(h[116:124], 0)
	number(h[124:136], stored)
	octal(h[136:148], mtime.Unix())
	h[156] = 'S'
	copy(h[257:], "ustar  \x00") // the old GNU magic and version
	const inHeader = 4
	for i, c := range entries[:min(len(entries), inHeader)] {
		number(h[386+i*24:398+i*24], c.Offset)
		number(h[398+i*24:410+i*24], c.Size)
	}
	number(h[483:495], size)
	var ext [][]byte
	for rest := entries[min(len(entries), inHeader):]; len(rest) > 0; {
		b := make([]byte, block)
		n := min(len(rest), 21)
		for i, c := range rest[:n] {
			number(b[i*24:i*24+12], c.Offset)
			number(b[i*24+12:i*24+24], c.Size)
		}
		rest = rest[n:]
		if len(rest) > 0 {
			b[504] = 1
		}
		ext = append(ext, b)
	}
	if len(ext) > 0 {
		h[482] = 1
	}
	// The checksum: the header's bytes, its own field taken as spaces.
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h, ext
}

// octal writes v as octal digits and a NUL.
func octal(f []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	for len(s) < len(f)-1 {
		s = "0" + s
	}
	copy(f, s)
	f[len(f)-1] = 0
}

// number writes v in a 12-byte field: octal while it fits (8 GiB), else
// GNU's base-256 (0x80, then big-endian).
func number(f []byte, v int64) {
	if v < 1<<33 {
		octal(f, v)
		return
	}
	for i := len(f) - 1; i > 0; i-- {
		f[i] = byte(v)
		v >>= 8
	}
	f[0] = 0x80
}
