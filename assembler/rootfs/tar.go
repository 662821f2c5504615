package rootfs

import (
	"archive/tar"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alpinist/alpinist/internal/ctxio"
)

// Tar is the canonical rootfs tar of an input, made as it is read and
// never written whole: its entries' headers are kept as they were
// encoded, their data read from the input (or its spool). Its bytes are
// those Canonicalize writes. A Tar is an io.ReaderAt, safe for concurrent use:
// the outputs that read the canonical tar as a stream (the ext4 image,
// the SBOM) read it without a copy of the rootfs on disk.
type Tar struct {
	src   io.ReaderAt // the input tar, or its spool
	spool *os.File    // removed by Close; nil when src is the input
	ents  []outEntry
	hdrs  []byte // the entries' headers, one after the other
	body  int64  // where the two zero blocks that end the tar start
	size  int64
	st    Stats
	sum   *tarSum
}

// outEntry is one entry of the canonical tar.
type outEntry struct {
	h    *tar.Header // as written
	off  int64       // where its header starts in the canonical tar
	hdr  int64       // where its header's bytes are in Tar.hdrs
	hlen int64       // the bytes of its header (PAX records included)
	data int64       // where its data is in the input
}

// span is the bytes of the entry in the tar: header, data, padding.
func (e *outEntry) span() int64 { return e.hlen + (e.h.Size+blockSize-1)/blockSize*blockSize }

const blockSize = 512 // tar's

// Open reads the tar stream r, compressed or not (see Decompress), and
// indexes it as Canonicalize does (same checks, same errors) without
// writing the canonical tar. A plain tar in a regular file (an *os.File
// at its start) is read in place, and must then not change until the
// Tar is closed; anything else is spooled to a temporary file in tmpDir
// first. Close removes the spool.
func Open(ctx context.Context, r io.Reader, epoch time.Time, tmpDir string) (*Tar, error) {
	return open(ctx, r, epoch, tmpDir, true, true)
}

// open is Open (decompress, sum: the canonical tar's sha256 made as it
// is laid out), and Canonicalize's reading of a plain tar stream.
func open(ctx context.Context, r io.Reader, epoch time.Time, tmpDir string, decompress, sum bool) (*Tar, error) {
	if f, size, ok := plainFile(r); ok {
		return newTar(ctx, f, nil, size, epoch, sum)
	}
	if decompress {
		d, err := Decompress(r)
		if err != nil {
			return nil, err
		}
		r = d
	}
	spool, err := os.CreateTemp(tmpDir, ".alpinist-rootfs-*.tar")
	if err != nil {
		return nil, err
	}
	os.Remove(spool.Name()) // gone once closed, even after a crash
	n, err := io.Copy(spool, ctxio.Reader(ctx, r))
	if err != nil {
		spool.Close()
		return nil, fmt.Errorf("rootfs: reading the input: %w", err)
	}
	t, err := newTar(ctx, spool, spool, n, epoch, sum)
	if err != nil {
		spool.Close()
		return nil, err
	}
	return t, nil
}

// plainFile is r as a regular file at its start that holds a plain tar,
// and its size.
func plainFile(r io.Reader) (*os.File, int64, bool) {
	f, ok := r.(*os.File)
	if !ok {
		return nil, 0, false
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, 0, false
	}
	if pos, err := f.Seek(0, io.SeekCurrent); err != nil || pos != 0 {
		return nil, 0, false
	}
	magic := make([]byte, 6)
	n, _ := f.ReadAt(magic, 0)
	if compression(magic[:n]) != "" {
		return nil, 0, false
	}
	return f, st.Size(), true
}

func newTar(ctx context.Context, src io.ReaderAt, spool *os.File, size int64, epoch time.Time, sum bool) (*Tar, error) {
	c, err := index(ctx, src, size, epoch, sum)
	if err != nil {
		return nil, err
	}
	return &Tar{src: src, spool: spool, ents: c.ents, hdrs: c.hdrs, body: c.off, size: c.off + 2*blockSize, st: c.st, sum: c.sum}, nil
}

// add appends the entry of header h, its data at data in the input. Its
// header's bytes are those a tar.Writer writing the whole tar writes
// (they depend on nothing else), kept: 512 bytes a file, where encoding
// them again at each reading cost more than the reading.
func (c *canon) add(h *tar.Header, data int64) error {
	start := len(c.hdrs)
	if err := tar.NewWriter(&c.hdrs).WriteHeader(h); err != nil {
		return fmt.Errorf("rootfs: %s: %w", strings.TrimSuffix(h.Name, "/"), err)
	}
	e := outEntry{h: h, off: c.off, hdr: int64(start), hlen: int64(len(c.hdrs) - start), data: data}
	c.ents = append(c.ents, e)
	c.off += e.span()
	c.sum.add(c.hdrs[start:], e)
	return nil
}

// headers are the canonical tar's headers, one after the other. They are
// only appended to: the bytes of a header handed to the digest's
// goroutine are never written again, whatever array holds them.
type headers []byte

func (h *headers) Write(p []byte) (int, error) {
	*h = append(*h, p...)
	return len(p), nil
}

// Stats describe the canonical tar.
func (t *Tar) Stats() Stats { return t.st }

// Size is the canonical tar's size in bytes.
func (t *Tar) Size() int64 { return t.size }

// Reader reads the canonical tar from its start (it seeks, and reads at
// offsets: an *io.SectionReader of t).
func (t *Tar) Reader() *io.SectionReader { return io.NewSectionReader(t, 0, t.size) }

// Only is a tar of the entry name alone (an empty tar when there is
// none), for a reader that wants one file and not the whole tar.
func (t *Tar) Only(name string) io.Reader {
	end := io.NewSectionReader(t, t.body, 2*blockSize)
	for i := range t.ents {
		if e := &t.ents[i]; e.h.Name == name {
			return io.MultiReader(io.NewSectionReader(t, e.off, e.span()), end)
		}
	}
	return end
}

// SHA256 is the canonical tar's sha256, made on another goroutine while
// Open laid the tar out (Open's Tar only: Canonicalize makes none).
func (t *Tar) SHA256() ([]byte, error) {
	if t.sum == nil {
		return nil, errors.New("rootfs: no digest made")
	}
	<-t.sum.done
	return t.sum.sum, t.sum.err
}

// Entries reads the canonical tar's entries in order as a tar.Reader of
// Reader() does, without parsing their headers: Next gives each entry's
// header as it was written, Read its data.
func (t *Tar) Entries() *Entries { return &Entries{t: t, i: -1} }

// Entries reads a Tar's entries.
type Entries struct {
	t   *Tar
	i   int   // the entry
	pos int64 // the bytes of its data read
}

// Next is the next entry's header (a copy), or io.EOF.
func (r *Entries) Next() (*tar.Header, error) {
	if r.i < len(r.t.ents) {
		r.i++
	}
	r.pos = 0
	if r.i == len(r.t.ents) {
		return nil, io.EOF
	}
	h := *r.t.ents[r.i].h
	return &h, nil
}

// Read reads the entry's data.
func (r *Entries) Read(p []byte) (int, error) {
	if r.i < 0 || r.i >= len(r.t.ents) {
		return 0, io.EOF
	}
	e := &r.t.ents[r.i]
	if r.pos >= e.h.Size {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), e.h.Size-r.pos))
	n, err := r.t.src.ReadAt(p[:k], e.data+r.pos)
	r.pos += int64(n)
	if n < k {
		if err == nil || err == io.EOF {
			err = ErrChanged
		}
		return n, fmt.Errorf("rootfs: %s: %w", e.h.Name, err)
	}
	return n, nil
}

// DataOffset is where the entry's data is in the canonical tar.
func (r *Entries) DataOffset() int64 {
	e := &r.t.ents[r.i]
	return e.off + e.hlen
}

// Close removes the spool, if any, and lets the index go: the Tar is
// empty from then on. The input is the caller's to close.
func (t *Tar) Close() error {
	t.sum.stop()
	t.ents, t.hdrs, t.body, t.size = nil, nil, 0, 0
	if t.spool == nil {
		return nil
	}
	err := t.spool.Close()
	t.spool = nil
	return err
}

// tarSum hashes the canonical tar on a goroutine of its own, its entries
// handed over as they are laid out, their data read from the input.
type tarSum struct {
	src      io.ReaderAt
	ents     chan sumEntry
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	closed   bool // ents
	sum      []byte
	err      error
}

type sumEntry struct {
	hdr        []byte
	data, size int64
	name       string
}

// startSum starts the hash of a tar of at most n entries.
func startSum(src io.ReaderAt, n int) *tarSum {
	s := &tarSum{src: src, ents: make(chan sumEntry, n), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// add hands an entry over (a nil s takes nothing).
func (s *tarSum) add(hdr []byte, e outEntry) {
	if s != nil {
		s.ents <- sumEntry{hdr, e.data, e.h.Size, e.h.Name}
	}
}

// finish tells s that every entry was handed over.
func (s *tarSum) finish() {
	if s != nil && !s.closed {
		s.closed = true
		close(s.ents)
	}
}

// stop stops s (nothing more comes) and waits for it to be gone.
func (s *tarSum) stop() {
	if s == nil {
		return
	}
	s.stopOnce.Do(func() { close(s.quit) })
	s.finish()
	<-s.done
}

func (s *tarSum) run() {
	defer close(s.done)
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for e := range s.ents {
		if s.err != nil {
			continue
		}
		select {
		case <-s.quit:
			s.err = errors.New("rootfs: digest stopped")
			continue
		default:
		}
		h.Write(e.hdr)
		for off := int64(0); off < e.size && s.err == nil; {
			k := min(e.size-off, int64(len(buf)))
			if n, err := s.src.ReadAt(buf[:k], e.data+off); int64(n) < k {
				if err == nil || err == io.EOF {
					err = ErrChanged
				}
				s.err = fmt.Errorf("rootfs: %s: %w", e.name, err)
			}
			h.Write(buf[:k])
			off += k
		}
		h.Write(make([]byte, (blockSize-e.size%blockSize)%blockSize))
	}
	if s.err == nil {
		h.Write(make([]byte, 2*blockSize))
		s.sum = h.Sum(nil)
	}
}

// ErrChanged: the input changed while the canonical tar was read from it.
var ErrChanged = errors.New("rootfs: the input changed while it was read")

// ReadAt reads the canonical tar's bytes at off.
func (t *Tar) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("rootfs: negative offset")
	}
	// The entry that holds off: the last that starts at or before it.
	i, found := slices.BinarySearchFunc(t.ents, off, func(e outEntry, off int64) int { return cmp.Compare(e.off, off) })
	if !found {
		i--
	}
	n := 0
	for n < len(p) && off < t.size {
		if i < 0 || i >= len(t.ents) || off >= t.body {
			k := int(min(int64(len(p)-n), t.size-off)) // the end blocks
			clear(p[n : n+k])
			n, off = n+k, off+int64(k)
			continue
		}
		e := &t.ents[i]
		rel := off - e.off
		var k int
		switch {
		case rel < e.hlen:
			k = copy(p[n:], t.hdrs[e.hdr+rel:e.hdr+e.hlen])
		case rel < e.hlen+e.h.Size:
			d := rel - e.hlen
			want := int(min(int64(len(p)-n), e.h.Size-d))
			got, err := t.src.ReadAt(p[n:n+want], e.data+d)
			if got < want {
				if err == nil || err == io.EOF {
					err = ErrChanged
				}
				return n + got, fmt.Errorf("rootfs: %s: %w", e.h.Name, err)
			}
			k = want
		default:
			k = int(min(int64(len(p)-n), e.off+e.span()-off)) // padding
			clear(p[n : n+k])
		}
		n, off = n+k, off+int64(k)
		if off >= e.off+e.span() {
			i++
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// bufferedAt reads an io.ReaderAt through a buffer and seeks without
// reading, so that the tar reader's header reads, and the one byte it
// reads at the end of each file it seeks over, cost no system call each.
type bufferedAt struct {
	src       io.ReaderAt
	size, pos int64
	buf       []byte
	at        int64 // where buf's bytes are in src
}

func newBufferedAt(src io.ReaderAt, size int64) *bufferedAt {
	return &bufferedAt{src: src, size: size, buf: make([]byte, 0, 64<<10)}
}

func (b *bufferedAt) Read(p []byte) (int, error) {
	if b.pos >= b.size {
		return 0, io.EOF
	}
	if b.pos < b.at || b.pos >= b.at+int64(len(b.buf)) {
		n, err := b.src.ReadAt(b.buf[:min(int64(cap(b.buf)), b.size-b.pos)], b.pos)
		if n == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		b.buf, b.at = b.buf[:n], b.pos
	}
	k := copy(p, b.buf[b.pos-b.at:])
	b.pos += int64(k)
	return k, nil
}

func (b *bufferedAt) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += b.pos
	case io.SeekEnd:
		off += b.size
	}
	if off < 0 {
		return 0, errors.New("rootfs: negative offset")
	}
	b.pos = off
	return off, nil
}
