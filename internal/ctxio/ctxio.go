// Package ctxio gives readers that fail once a context is done, so that
// a long loop reading its input (an output writer, the canonical rootfs
// reader) stops at its next read after Ctrl-C.
package ctxio

import (
	"context"
	"io"
)

// Reader reads r until ctx is done, then fails with ctx's error. A nil
// ctx never stops it.
func Reader(ctx context.Context, r io.Reader) io.Reader {
	if ctx == nil {
		return r
	}
	return reader{ctx, r}
}

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ReadSeeker is Reader for an io.ReadSeeker; seeking is not stopped.
func ReadSeeker(ctx context.Context, r io.ReadSeeker) io.ReadSeeker {
	if ctx == nil {
		return r
	}
	return readSeeker{reader{ctx, r}, r}
}

type readSeeker struct {
	reader
	s io.Seeker
}

func (c readSeeker) Seek(off int64, whence int) (int64, error) { return c.s.Seek(off, whence) }

// Writer writes to w until ctx is done, then fails with ctx's error: for
// a writer whose reads are not ours (a library pulling its own input).
func Writer(ctx context.Context, w io.Writer) io.Writer {
	if ctx == nil {
		return w
	}
	return writer{ctx, w}
}

type writer struct {
	ctx context.Context
	w   io.Writer
}

func (c writer) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
