// Package builder is alpinist's build as a library: from a spec to the
// outputs in a directory, for every architecture. Open reads the spec
// and prepares the repository client; Session.Resolve solves (or checks
// against a lock) one arch's packages; Build does the whole multi-arch
// build: resolve, one date for all (SOURCE_DATE_EPOCH, else the newest
// package's), the build VMs side by side (RunVM: fetch, kernel and
// initramfs, package disk, build cache, QEMU, the canonical rootfs tar),
// the output set, the lock file, and staging, so that the previous
// outputs are replaced only once all is written. cmd/alpinist parses
// flags, calls it and prints.
package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/assembler/output"
	"github.com/alpinist/alpinist/internal/epoch"
	"github.com/alpinist/alpinist/regcache"
)

// Options are a build's choices beyond the spec.
type Options struct {
	// OutDir receives the outputs (through a stage in it).
	OutDir string
	// Outputs are the outputs to write (output.Check'ed by the caller).
	Outputs []string
	// Layout keeps the OCI layout even when oci is not an output (to
	// push it).
	Layout bool
	// Tool names the tool in the SBOMs: alpinist-VERSION.
	Tool string
	// Accel, Kernel, Modules, MemoryMiB, CPUs, BootTimeout, IdleTimeout
	// and NoCache are the build VMs' (see VMOptions).
	Accel, Kernel, Modules   string
	MemoryMiB, CPUs          int
	BootTimeout, IdleTimeout time.Duration
	NoCache                  bool
	// Jobs is how many build VMs run at once (0: as many as the host
	// has cores, at least 2: more VMs than cores only slow each other,
	// under TCG most of all).
	Jobs int
	// Console, when set, gets every VM's console besides its log file.
	Console io.Writer
	Log     *slog.Logger
	// Progress is told how the build goes (nil: nothing).
	Progress Progress
	// CacheFrom and CacheTo are shared caches in a registry: the build
	// takes packages and build-cache rootfs from CacheFrom when the
	// local cache lacks them, and pushes its own to CacheTo.
	CacheFrom, CacheTo *regcache.Cache
}

// Progress follows a build: the bytes to download, each arch's phases,
// and its end.
type Progress interface {
	Start(arches []string, download int64)
	Bytes(n int64)
	Phase(arch, phase string)
	Finish(arch, state string)
	Wait()
}

// Report is what a build wrote.
type Report struct {
	// Results are the outputs, at their final paths.
	Results []output.Result
	// Summaries are each arch's phase times: "ARCH: fetch 1s, ...".
	Summaries []string
	// Lock is the lock file's path.
	Lock string
	// Layout is the OCI layout (in OutDir when oci is an output; else
	// gone once Build returns, unless Layout was asked for).
	Layout string
	// Downloaded and Shared count the packages fetched from the
	// repositories and from CacheFrom (local cache hits are in neither).
	Downloaded, Shared int64
	// Cached lists the arches whose rootfs came from the build cache
	// (local or shared): no VM ran for them.
	Cached []string
	stage  *Staging
}

// Close removes what the report's build left in its stage (the OCI
// layout kept for a push).
func (r *Report) Close() {
	if r.stage != nil {
		r.stage.Cleanup()
	}
}

// archBuild is one arch of a build.
type archBuild struct {
	*Resolved
	items []repo.Item
	res   *VMResult
	err   error
}

// Build builds the session's arches and writes the outputs into
// o.OutDir. The caller closes the report.
func Build(ctx context.Context, sess *Session, o Options) (*Report, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = noProgress{}
	}
	keys, err := ReadKeys(sess.Spec.Keys)
	if err != nil {
		return nil, err
	}
	if from := o.CacheFrom; from != nil {
		sess.Client.Shared = func(_ context.Context, sum []byte) (io.ReadCloser, error) {
			rc, err := from.OpenPackage(sum)
			if errors.Is(err, regcache.ErrMiss) {
				return nil, fmt.Errorf("%w: %w", repo.ErrNotShared, err)
			}
			return rc, err
		}
	}
	lf := &lock.File{Name: sess.Spec.Name}
	var archs []*archBuild
	for _, arch := range sess.Arches {
		if err := output.CheckArch(o.Outputs, arch); err != nil {
			return nil, fmt.Errorf("%s: %w", sess.SpecPath, err)
		}
	}
	if err := CheckDiskSection(sess.Spec, o.Outputs); err != nil {
		return nil, fmt.Errorf("%s: %w", sess.SpecPath, err)
	}
	for _, arch := range sess.Arches {
		r, err := sess.Resolve(ctx, arch)
		if err != nil {
			return nil, err
		}
		if err := CheckDiskPackages(o.Outputs, r.Entry); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", sess.SpecPath, arch, err)
		}
		lf.Set(r.Entry)
		items, err := r.Items(sess.Client.Cache)
		if err != nil {
			return nil, err
		}
		archs = append(archs, &archBuild{Resolved: r, items: items})
	}
	created, err := buildDate(archs)
	if err != nil {
		return nil, err
	}
	stage, err := NewStaging(o.OutDir, sess.Spec.Name)
	if err != nil {
		return nil, err
	}
	rep := &Report{stage: stage}
	if err := rep.build(ctx, sess, o, archs, created, keys, lf); err != nil {
		rep.Close()
		return nil, err
	}
	rep.Downloaded, rep.Shared = sess.Client.Fetched()
	for _, a := range archs {
		if a.res != nil && a.res.Cached {
			rep.Cached = append(rep.Cached, a.Arch)
		}
	}
	return rep, nil
}

// buildDate is the one date of the whole build: SOURCE_DATE_EPOCH, else
// the newest build date of the packages installed (on any arch).
func buildDate(archs []*archBuild) (time.Time, error) {
	t, ok, err := epoch.FromEnv()
	if err != nil || ok {
		return t, err
	}
	var newest int64
	for _, a := range archs {
		for _, it := range a.items {
			newest = max(newest, it.Package.BuildTime)
		}
	}
	return time.Unix(newest, 0).UTC(), nil
}

// build runs the VMs, writes the outputs and the lock into the stage
// and commits it.
func (rep *Report) build(ctx context.Context, sess *Session, o Options, archs []*archBuild, created time.Time, keys map[string][]byte, lf *lock.File) error {
	stage := rep.stage
	set, err := output.New(output.Plan{
		Spec: sess.Spec, Dir: stage.Dir, Outputs: o.Outputs, Created: created, Tool: o.Tool,
		Layout: o.Layout, Log: o.Log, Context: ctx, Digests: true,
	})
	if err != nil {
		return err
	}
	defer set.Close()
	if err := runVMs(ctx, sess, o, stage.Dir, archs, created, keys); err != nil {
		return err
	}
	// The outputs, in the spec's arch order.
	for _, a := range archs {
		written, err := set.Add(output.Arch{Arch: a.Arch, Tar: a.res.Tar, Lock: &a.Entry})
		if err != nil {
			return fmt.Errorf("%s: %w", a.Arch, err)
		}
		stage.Add(written)
		rep.Summaries = append(rep.Summaries, fmt.Sprintf("%s: %s", a.Arch, a.res.Summary()))
	}
	written, err := set.Finish()
	if err != nil {
		return err
	}
	stage.Add(written)
	lockName := sess.Spec.Name + ".lock"
	if err := lock.Write(filepath.Join(stage.Dir, lockName), lf); err != nil {
		return err
	}
	rep.Layout = set.Layout() // the work layout, in the stage until the end, unless oci is an output
	if output.AnyLayout(o.Outputs) {
		rep.Layout = stage.Final(rep.Layout)
	}
	if err := stage.Commit(ctx); err != nil {
		return err
	}
	rep.Results, rep.Lock = stage.Results, filepath.Join(o.OutDir, lockName)
	return nil
}

// runVMs runs the arches' build VMs side by side (o.Jobs at a time,
// DefaultJobs when 0),
// and returns the first real failure, not another arch's stop because
// of it (or the interruption, when that is all there is).
func runVMs(ctx context.Context, sess *Session, o Options, dir string, archs []*archBuild, created time.Time, keys map[string][]byte) error {
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs()
	}
	var download int64
	for _, a := range archs {
		for _, p := range a.Entry.Packages {
			download += p.Size
		}
	}
	o.Progress.Start(sess.Arches, download)
	sess.Client.OnBytes = o.Progress.Bytes
	defer func() { sess.Client.OnBytes = nil }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for _, a := range archs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				a.err = ctx.Err()
				return
			}
			a.res, a.err = runArch(ctx, sess, o, dir, a, created, keys)
			if a.err != nil {
				o.Progress.Finish(a.Arch, "failed")
				cancel() // the other arches stop: the build fails anyway
			} else {
				o.Progress.Finish(a.Arch, "built")
			}
		})
	}
	wg.Wait()
	o.Progress.Wait()
	var first error
	for _, a := range archs {
		switch {
		case a.err == nil:
		case first == nil, errors.Is(first, context.Canceled) && !errors.Is(a.err, context.Canceled):
			first = fmt.Errorf("%s: %w", a.Arch, a.err)
		}
	}
	return first
}

// runArch runs one arch's build VM into dir, its console to
// NAME-ARCH.log there (and to o.Console).
func runArch(ctx context.Context, sess *Session, o Options, dir string, a *archBuild, created time.Time, keys map[string][]byte) (*VMResult, error) {
	logFile, err := os.Create(filepath.Join(dir, sess.Spec.Name+"-"+a.Arch+".log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	var console io.Writer = logFile
	if o.Console != nil {
		console = io.MultiWriter(logFile, o.Console)
	}
	return RunVM(ctx, VMOptions{
		Spec: sess.Spec, Arch: a.Arch, OutDir: dir, Entry: a.Entry, Items: a.items, Indexes: a.Indexes, World: a.World,
		Client: sess.Client, Keys: keys, SourceDateEpoch: created.Unix(), Accel: o.Accel, Kernel: o.Kernel, Modules: o.Modules,
		MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, Console: console, Log: o.Log, BootTimeout: o.BootTimeout, IdleTimeout: o.IdleTimeout,
		NoCache: o.NoCache, OnPhase: func(p string) { o.Progress.Phase(a.Arch, p) },
		CacheFrom: o.CacheFrom, CacheTo: o.CacheTo,
	})
}

// noProgress follows nothing.
type noProgress struct{}

func (noProgress) Start([]string, int64) {}
func (noProgress) Bytes(int64)           {}
func (noProgress) Phase(string, string)  {}
func (noProgress) Finish(string, string) {}
func (noProgress) Wait()                 {}

// DefaultJobs is how many build VMs a build runs at once by default: one
// per core, at least 2. Eight arches at once on two cores starved one
// VM's boot past its 3-minute watchdog under TCG.
func DefaultJobs() int {
	return max(2, runtime.NumCPU())
}
