package main

import (
	"io"
	"os"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// isTerminal reports whether w is a terminal (progress bars are drawn only
// there; logs and pipes get plain lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress is where progress bars go: stderr, or nowhere with -q.
func (e *env) progress() io.Writer {
	if e.quiet {
		return io.Discard
	}
	return e.stderr
}

// byteBar is a progress bar over a byte count, or a counter when the
// output is not a terminal.
type byteBar struct {
	p   *mpb.Progress
	bar *mpb.Bar
	n   atomic.Int64
}

func newByteBar(w io.Writer, name string, total int64) *byteBar {
	b := &byteBar{}
	if !isTerminal(w) {
		return b
	}
	b.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40))
	b.bar = b.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" "), decor.Percentage()),
	)
	return b
}

// add records n bytes; safe from several goroutines.
func (b *byteBar) add(n int64) {
	b.n.Add(n)
	if b.bar != nil {
		b.bar.IncrInt64(n)
	}
}

// done finishes the bar.
func (b *byteBar) done() {
	if b.bar != nil {
		b.bar.SetTotal(-1, true)
		b.p.Wait()
	}
}
