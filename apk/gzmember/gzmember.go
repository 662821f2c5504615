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
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// Reader splits its input into gzip members.
type Reader struct {
	src  *source
	z    *gzip.Reader
	cur  *member
	done bool
}

// NewReader reads members from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{src: newSource(r)}
}

// Offset is the number of compressed bytes consumed so far.
func (r *Reader) Offset() int64 { return r.src.consumed() }

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
	off := r.src.consumed()
	var err error
	if r.z == nil {
		r.z, err = gzip.NewReader(r.src.br)
	} else {
		err = r.z.Reset(r.src.br)
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

// source is what the bufio.Reader that gzip reads from reads. A
// *bufio.Reader, because klauspost's inflate has a fast path for it (it
// calls ReadByte on the concrete type, not through an interface: 1.2×
// the speed). source counts what it supplies and keeps it until gzip
// has consumed it (what bufio holds is not consumed), then hands it to
// w: the hashes get exactly each member's bytes.
type source struct {
	src      io.Reader
	br       *bufio.Reader
	pending  []byte // supplied to br, not yet written to w
	supplied int64
	w        io.Writer
}

func newSource(r io.Reader) *source {
	s := &source{src: r}
	s.br = bufio.NewReaderSize(s, 64<<10)
	return s
}

func (s *source) Read(p []byte) (int, error) {
	s.flush()
	n, err := s.src.Read(p)
	s.pending = append(s.pending, p[:n]...)
	s.supplied += int64(n)
	return n, err
}

// consumed is how many bytes gzip has consumed.
func (s *source) consumed() int64 { return s.supplied - int64(s.br.Buffered()) }

// flush writes what gzip consumed and w has not had yet to w.
func (s *source) flush() {
	n := len(s.pending) - s.br.Buffered()
	if n <= 0 {
		return
	}
	if s.w != nil {
		s.w.Write(s.pending[:n]) // hashes never fail
	}
	s.pending = s.pending[:copy(s.pending, s.pending[n:])]
}

// peek tells whether a byte is left, reading one if need be.
func (s *source) peek() error {
	_, err := s.br.Peek(1)
	return err
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
