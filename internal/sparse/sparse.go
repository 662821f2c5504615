// Package sparse writes images sparsely: all-zero 4 KiB blocks are left
// unwritten (they read as zeros from a file truncated to its size), runs
// of other blocks go in one write each.
package sparse

import (
	"bytes"
	"io"
)

// Block is the unit zeros are skipped in.
const Block = 4096

var zeros [Block]byte

// Zero tells whether b holds only zero bytes.
func Zero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), Block)
		if !bytes.Equal(b[:k], zeros[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// WriteAt writes b at off in w, skipping the all-zero blocks of b.
func WriteAt(w io.WriterAt, b []byte, off int64) error {
	for len(b) > 0 {
		// A run of non-zero blocks goes in one write.
		i := 0
		for i < len(b) && !Zero(b[i:min(i+Block, len(b))]) {
			i += Block
		}
		i = min(i, len(b))
		if i > 0 {
			if _, err := w.WriteAt(b[:i], off); err != nil {
				return err
			}
		}
		if i < len(b) {
			i += min(Block, len(b)-i) // the zero block
		}
		b, off = b[i:], off+int64(i)
	}
	return nil
}

// Copy copies r to w from off on, sparsely, and returns the bytes read.
func Copy(w io.WriterAt, off int64, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if werr := WriteAt(w, buf[:k], off+n); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
