// Package sparse writes images sparsely: all-zero 4 KiB blocks are left
// unwritten (they read as zeros from a file truncated to its size), runs
// of other blocks go in one write each.
package sparse

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"
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
// Reading and writing overlap: one goroutine reads the next chunk while
// the caller's goroutine writes the last one (qemu-img convert keeps
// several requests in flight the same way).
func Copy(w io.WriterAt, off int64, r io.Reader) (int64, error) {
	const chunk, inFlight = 2 << 20, 3
	type read struct {
		b   []byte
		err error
	}
	free := make(chan []byte, inFlight)
	for range inFlight {
		free <- make([]byte, chunk)
	}
	full := make(chan read, inFlight)
	stop := make(chan struct{})
	done := make(chan struct{})
	defer func() {
		// r is the caller's again only once the reader has stopped.
		close(stop)
		<-done
	}()
	go func() {
		defer close(done)
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			k, err := io.ReadFull(r, b)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			select {
			case full <- read{b[:k], err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	f, isFile := w.(*os.File)
	var n int64
	for rd := range full {
		if len(rd.b) > 0 {
			if err := WriteAt(w, rd.b, off+n); err != nil {
				return n, err
			}
			if isFile {
				// Start writing back what was just written: the
				// caller's final sync then waits for less.
				_ = unix.SyncFileRange(int(f.Fd()), off+n, int64(len(rd.b)), unix.SYNC_FILE_RANGE_WRITE)
			}
			n += int64(len(rd.b))
		}
		if rd.err == io.EOF {
			return n, nil
		}
		if rd.err != nil {
			return n, rd.err
		}
		free <- rd.b[:cap(rd.b)]
	}
	return n, nil
}
