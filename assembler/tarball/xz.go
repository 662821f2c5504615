package tarball

import (
	"bytes"
	"errors"
	"io"
	"runtime"

	"github.com/ulikunitz/xz"
)

// The xz output is a sequence of independent xz streams, one per
// xzBlock bytes of input, compressed up to xzJobs at a time and written
// in order. xz-utils, tar -J, Incus and Go's xz readers all read
// concatenated streams. The bytes depend on the block size only, never
// on the number of CPUs.
var (
	xzBlock = 4 << 20 // a variable for the tests only
	xzJobs  = min(max(runtime.GOMAXPROCS(0), 1), 4)
)

// xzDictCap is each stream's dictionary: a block never needs more.
const xzDictCap = 4 << 20

type xzResult struct {
	out []byte
	err error
}

// xzWriter is the parallel xz compressor.
type xzWriter struct {
	w       io.Writer
	buf     []byte
	pending []chan xzResult
	wrote   bool // a block was compressed: Close need not write an empty stream
	err     error
}

func newXZWriter(w io.Writer) *xzWriter {
	return &xzWriter{w: w, buf: make([]byte, 0, xzBlock)}
}

func (z *xzWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && z.err == nil {
		k := min(len(p), xzBlock-len(z.buf))
		z.buf = append(z.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(z.buf) == xzBlock {
			z.submit()
		}
	}
	return n, z.err
}

// submit compresses the buffered block in the background, first writing
// out the oldest block when xzJobs are in flight.
func (z *xzWriter) submit() {
	if len(z.pending) == xzJobs {
		z.drainOne()
	}
	block := z.buf
	z.buf = make([]byte, 0, xzBlock)
	ch := make(chan xzResult, 1)
	z.pending = append(z.pending, ch)
	z.wrote = true
	go func() {
		var b bytes.Buffer
		xw, err := xz.WriterConfig{DictCap: xzDictCap, CheckSum: xz.CRC64}.NewWriter(&b)
		if err == nil {
			_, err = xw.Write(block)
			err = errors.Join(err, xw.Close())
		}
		ch <- xzResult{b.Bytes(), err}
	}()
}

func (z *xzWriter) drainOne() {
	r := <-z.pending[0]
	z.pending = z.pending[1:]
	if z.err != nil {
		return
	}
	if r.err != nil {
		z.err = r.err
		return
	}
	_, z.err = z.w.Write(r.out)
}

// Close compresses what is left and writes every stream (at least one:
// empty input is one empty stream).
func (z *xzWriter) Close() error {
	if len(z.buf) > 0 || !z.wrote {
		z.submit()
	}
	for len(z.pending) > 0 {
		z.drainOne()
	}
	return z.err
}
