// Package gzmember reads a concatenation of gzip members one member at a
// time, handing the exact compressed bytes of each member to hashes.
//
// An APK v2 package is three gzip members (signature, control, data) and
// a signed APKINDEX.tar.gz two (signature, index); signatures and
// checksums cover the compressed bytes of single members, so a reader
// has to know where each member starts and ends. compress/gzip reads
// exactly up to a member's end when its source is an io.ByteReader and
// multistream mode is off; this package relies on that.
package gzmember

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// Reader splits its input into gzip members.
type Reader struct {
	src  *countingReader
	z    *gzip.Reader
	cur  *member
	done bool
}

// NewReader reads members from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{src: newCountingReader(r)}
}

// Offset is the number of compressed bytes consumed so far.
func (r *Reader) Offset() int64 { return r.src.n }

// Next starts the next member; its compressed bytes, header and trailer
// included, are written to the hashes as they are consumed. The returned
// reader yields the member's decompressed bytes and returns io.EOF at the
// member's end, after its CRC and length are checked. Next returns
// io.EOF when the input ends cleanly between members. A member must be
// read to its end before Next is called again.
func (r *Reader) Next(hashes ...io.Writer) (io.Reader, error) {
	return r.start(false, hashes)
}

// Rest reads all remaining members as one stream (as apk reads the data
// part, which may be split in several members), hashing their bytes.
func (r *Reader) Rest(hashes ...io.Writer) (io.Reader, error) {
	return r.start(true, hashes)
}

func (r *Reader) start(multi bool, hashes []io.Writer) (io.Reader, error) {
	if r.done {
		return nil, io.EOF
	}
	if r.cur != nil && !r.cur.eof {
		return nil, errors.New("gzip: previous member not read to its end")
	}
	r.src.flush()
	r.src.w = nil
	if err := r.src.peek(); err != nil {
		if err == io.EOF {
			r.done = true
			return nil, io.EOF
		}
		return nil, err
	}
	r.src.w = io.MultiWriter(hashes...)
	off := r.src.n
	var err error
	if r.z == nil {
		r.z, err = gzip.NewReader(r.src)
	} else {
		err = r.z.Reset(r.src)
	}
	if err != nil {
		return nil, fmt.Errorf("gzip member at byte %d: %w", off, noEOF(err))
	}
	r.z.Multistream(multi)
	if multi {
		r.done = true
	}
	r.cur = &member{r: r, off: off}
	return r.cur, nil
}

// noEOF turns a bare EOF inside a member into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

type member struct {
	r   *Reader
	off int64
	eof bool
}

func (m *member) Read(p []byte) (int, error) {
	if m.eof {
		return 0, io.EOF
	}
	n, err := m.r.z.Read(p)
	if err == io.EOF {
		m.eof = true
		m.r.src.flush()
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("gzip member at byte %d: %w", m.off, noEOF(err))
	}
	return n, nil
}

// countingReader is the io.ByteReader gzip reads from: its own buffer
// window over the source (a byte is an index and an increment, as
// decompression asks for one byte at a time), counting what is consumed
// and copying it to w a buffer at a time.
type countingReader struct {
	src    io.Reader
	buf    []byte
	r, end int // buf[r:end] is read from src, not yet consumed
	hashed int // buf[hashed:r] is consumed, not yet written to w
	w      io.Writer
	n      int64
	err    error
}

func newCountingReader(src io.Reader) *countingReader {
	return &countingReader{src: src, buf: make([]byte, 64<<10)}
}

func (c *countingReader) ReadByte() (byte, error) {
	if c.r == c.end {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	b := c.buf[c.r]
	c.r++
	c.n++
	return b, nil
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.r == c.end {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.end])
	c.r += n
	c.n += int64(n)
	return n, nil
}

// peek tells whether a byte is left, reading one if need be.
func (c *countingReader) peek() error {
	if c.r < c.end {
		return nil
	}
	return c.fill()
}

// fill hands what is consumed to w and reads more from the source.
func (c *countingReader) fill() error {
	c.flush()
	if c.err != nil {
		return c.err
	}
	c.r, c.end, c.hashed = 0, 0, 0
	for c.end == 0 && c.err == nil {
		c.end, c.err = c.src.Read(c.buf)
	}
	if c.end > 0 {
		return nil
	}
	return c.err
}

// flush writes what is consumed and not yet written to w.
func (c *countingReader) flush() {
	if c.w != nil && c.r > c.hashed {
		c.w.Write(c.buf[c.hashed:c.r]) // hashes never fail
	}
	c.hashed = c.r
}

// FirstMemberSize returns the compressed size of data's first gzip
// member (for tests and tools that must tell the signature member apart).
func FirstMemberSize(data []byte) (int64, error) {
	r := NewReader(bytes.NewReader(data))
	m, err := r.Next()
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.Discard, m); err != nil {
		return 0, err
	}
	return r.Offset(), nil
}
