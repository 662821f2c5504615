package main

import (
	"io"
	"log/slog"
	"os"
	"sync"
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

// buildBars shows a build on a terminal: a line per arch with its phase
// and time, and the downloads. Nothing is drawn when stderr is not a
// terminal, or with -q or -v (-v shows the VM consoles instead).
type buildBars struct {
	p        *mpb.Progress
	bars     map[string]*mpb.Bar
	phases   map[string]*atomic.Value
	download int64
	dlOnce   sync.Once
	dl       atomic.Pointer[mpb.Bar]
}

func (e *env) newBuildBars(arches []string, download int64) *buildBars {
	if e.quiet || e.verbose || !isTerminal(e.stderr) {
		return &buildBars{}
	}
	return e.buildBarsTo(e.stderr, arches, download)
}

// buildBarsTo draws the bars on w (options add mpb's, for tests).
func (e *env) buildBarsTo(w io.Writer, arches []string, download int64, opts ...mpb.ContainerOption) *buildBars {
	b := &buildBars{bars: map[string]*mpb.Bar{}, phases: map[string]*atomic.Value{}, download: download}
	b.p = mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(24)}, opts...)...)
	for _, arch := range arches {
		v := &atomic.Value{}
		v.Store("waiting")
		b.phases[arch] = v
		b.bars[arch] = b.p.New(0, mpb.SpinnerStyle(),
			mpb.PrependDecorators(decor.Name(arch, decor.WCSyncSpaceR), decor.Any(func(decor.Statistics) string { return v.Load().(string) }, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO)),
			mpb.BarFillerClearOnComplete())
	}
	// The bars say what the info lines would: only warnings and errors
	// are logged meanwhile, above the bars.
	level := e.level
	e.level = max(level, slog.LevelWarn)
	e.logTo(b.p)
	e.level = level
	return b
}

// phase shows an arch's phase.
func (b *buildBars) phase(arch, name string) {
	if v := b.phases[arch]; v != nil {
		v.Store(name)
	}
}

// bytes counts downloaded bytes; the download bar appears with the first
// (nothing is drawn when every package is in the cache).
func (b *buildBars) bytes(n int64) {
	if b.p == nil {
		return
	}
	b.dlOnce.Do(func() {
		b.dl.Store(b.p.AddBar(b.download,
			mpb.PrependDecorators(decor.Name("download", decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
			mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" "), decor.Percentage())))
	})
	b.dl.Load().IncrInt64(n)
}

// finish ends an arch's line with what became of it.
func (b *buildBars) finish(arch, how string) {
	if bar := b.bars[arch]; bar != nil {
		b.phase(arch, how)
		bar.SetTotal(-1, true)
	}
}

// wait ends the display, and gives the log back to stderr.
func (b *buildBars) wait(e *env) {
	if b.p == nil {
		return
	}
	if dl := b.dl.Load(); dl != nil && !dl.Completed() {
		// Some packages were in the cache: the bar stops short of its
		// total. (SetTotal would leave Wait hanging on this bar.)
		dl.Abort(false)
	}
	for _, bar := range b.bars {
		bar.SetTotal(-1, true)
	}
	b.p.Wait()
	e.logTo(e.stderr)
}
