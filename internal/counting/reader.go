package counting

import (
	"errors"
	"io"
)

// Reader passes reads from R and adds the bytes read to N. A reader
// (archive/tar) reads no further than it needs, so when R is read from
// its start N is where it is in R.
type Reader struct {
	R io.Reader
	N int64
}

func (c *Reader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

// Seek seeks R, when it can seek, and N becomes the offset it returns
// (archive/tar then skips what it is not asked for without reading it).
func (c *Reader) Seek(offset int64, whence int) (int64, error) {
	s, ok := c.R.(io.Seeker)
	if !ok {
		return 0, errors.New("counting: the reader cannot seek")
	}
	n, err := s.Seek(offset, whence)
	if err == nil {
		c.N = n
	}
	return n, err
}
