package builder

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/agent/proto"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/qemu"
	"github.com/alpinist/alpinist/regcache"
	"github.com/alpinist/alpinist/spec"
)

// VMOptions describe one architecture's build VM.
type VMOptions struct {
	// Spec is the spec: its name (outputs are NAME-ARCH.*), installer,
	// system configuration and files.
	Spec   *spec.Spec
	Arch   string
	OutDir string
	// Entry is the resolved (or locked) package list, Items its packages
	// as the indexes have them (repo.LockItems), and Indexes the indexes
	// in the spec's repository order.
	Entry   lock.Arch
	Items   []repo.Item
	Indexes []*repo.Index
	World   []apk.Dependency
	Client  *repo.Client
	// Keys are the trusted public keys (name -> PEM) put into the target.
	Keys map[string][]byte
	// SourceDateEpoch fixes every time in the output.
	SourceDateEpoch int64
	// Kernel and Modules override the kernel of the repository's
	// linux-virt: a kernel image and a lib/modules/KVER directory.
	Kernel, Modules string
	// Accel forces "kvm" or "tcg"; empty uses KVM when the host's
	// answer says it works, falling back to TCG when it fails.
	Accel string
	// KVMDir holds the host's KVM answer (kvm.json); empty is
	// repo.DefaultCacheDir, whatever the build's cache.
	KVMDir    string
	MemoryMiB int
	CPUs      int
	// Console receives the VM's console (the build log).
	Console io.Writer
	Log     *slog.Logger
	// BootTimeout and IdleTimeout bound the VM (see qemu.RunOptions).
	BootTimeout, IdleTimeout time.Duration
	// NoCache boots the VM even when the build cache has the rootfs
	// (and does not store it).
	NoCache bool
	// OnPhase, when set, is told each phase as it begins (fetch,
	// kernel+initramfs, disks, build cache, boot, agent, install, …, tar).
	OnPhase func(phase string)
	// CacheFrom, when set, is asked for the rootfs when the local build
	// cache has none (its packages are the Client's Shared source);
	// CacheTo gets the build-cache entry and the packages after the
	// build.
	CacheFrom, CacheTo *regcache.Cache
}

// VMResult tells what a build VM made and how long each phase took.
type VMResult struct {
	Tar    string // NAME-ARCH.tar
	Size   int64
	Phases []Phase
	// Cached: the rootfs came from the build cache, no VM ran.
	Cached bool
}

// Phase is one timed step.
type Phase struct {
	Name     string
	Duration time.Duration
}

// vmRun is one RunVM under way.
type vmRun struct {
	ctx  context.Context
	opts VMOptions
	log  *slog.Logger
	work string
	res  *VMResult
	mu   sync.Mutex // res.Phases: the VM runs while the disk is written
	prof qemu.Profile
	// What the VM boots (kit: the files of --kernel and --modules), and
	// the disks.
	kit       *initramfs.Kit
	bootKit   *bootKit
	initrdSum []byte
	agent     []byte // the embedded agent, read once
	plan      *diskPlan
	pkgDisk   string
	installed int64 // the packages' installed size
	items     []repo.Item
	key       string // the build cache's key
	// kernelPkg is the repositories' linux-virt the VM boots (its
	// Package nil with --kernel), found once by makePlan.
	kernelPkg repo.Item
}

// RunVM builds opts.Arch's rootfs tar into opts.OutDir. Temporary files
// go into a directory under OutDir that is removed afterwards; on
// failure no output is left behind.
//
// The build cache's key is known before anything is fetched, so a hit
// does nothing else. Otherwise the kernel package is fetched first and
// the VM boots with it while the other packages are fetched and
// prepared: the VM waits for its package disk (pkgdisk.HoldFirst).
func RunVM(ctx context.Context, opts VMOptions) (*VMResult, error) {
	r := &vmRun{ctx: ctx, opts: opts, log: opts.Log, res: &VMResult{}, items: opts.Items}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if r.prof, err = qemu.Lookup(opts.Arch); err != nil {
		return nil, err
	}
	if r.installed, err = installedSize(r.items); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	if r.work, err = os.MkdirTemp(opts.OutDir, ".alpinist-build-"+opts.Arch+"-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.work)
	r.res.Tar = filepath.Join(opts.OutDir, opts.Spec.Name+"-"+opts.Arch+".tar")
	if err := r.step("plan", r.makePlan); err != nil {
		return nil, err
	}
	cache := rootfsCache{dir: RootfsDir(opts.Client.Cache.Dir), log: r.log}
	if !opts.NoCache {
		unlock, err := cache.lock(ctx, r.key)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if r.opts.CacheFrom != nil {
			r.pullRootfs(cache)
		}
		if ok, err := r.fromCache(cache); ok || err != nil {
			if err == nil && r.opts.CacheTo != nil {
				err = r.pushCache(cache)
			}
			return r.res, err
		}
	}
	defer func() { r.bootKit.close() }()
	if r.bootKit == nil {
		if err := r.step("kernel+initramfs", r.makeKit); err != nil {
			return nil, err
		}
	}
	consoleLog, err := r.build()
	if err != nil {
		return nil, err
	}
	defer consoleLog.Close()
	if !opts.NoCache {
		// A cache that cannot be written costs the next build time, not
		// this one its result.
		if err := cache.put(r.key, r.res.Tar, consoleLog.Name(), Entry{Key: r.key, Name: opts.Spec.Name, Arch: opts.Arch, Size: r.res.Size, Created: time.Now().UTC()}); err != nil {
			r.log.Warn("the rootfs could not be stored in the build cache", "arch", opts.Arch, "err", err)
		} else if opts.CacheTo != nil {
			if err := r.pushCache(cache); err != nil {
				return nil, err
			}
		}
	}
	return r.res, nil
}

// pullRootfs puts the shared cache's entry of the build key into the
// local build cache when the local one has none. A miss, or an entry
// that does not pull whole, leaves the local cache as it was (the build
// runs its VM); the entry's tar is read as a local one is, through the
// canonical reader, when the build takes it.
func (r *vmRun) pullRootfs(cache rootfsCache) {
	if _, err := os.Stat(cache.path(r.key, ".tar")); err == nil {
		return
	}
	r.begin("cache pull")
	start := time.Now()
	err := pullEntry(cache, r.opts.CacheFrom, r.key)
	if errors.Is(err, regcache.ErrMiss) {
		r.log.Info("the shared build cache has no rootfs for this build", "arch", r.opts.Arch, "cache", r.opts.CacheFrom.String(), "key", r.key[:16])
		return
	}
	if err != nil {
		r.log.Warn("the shared build cache's rootfs is not taken: the VM builds it", "arch", r.opts.Arch, "err", err)
		return
	}
	r.phase("cache pull", start)
}

// pushCache pushes the build-cache entry of the build key, and the
// packages of the build that the package cache has, to CacheTo (each
// unless the registry has it).
func (r *vmRun) pushCache(cache rootfsCache) error {
	r.begin("cache push")
	start := time.Now()
	to := r.opts.CacheTo
	var pushed int
	items := r.items
	if r.kernelPkg.Package != nil {
		// The build VM's kernel too: a builder that boots its VM needs it.
		items = append(slices.Clip(items), r.kernelPkg)
	}
	for _, it := range items {
		p, ok := r.opts.Client.Cache.Lookup(it.Package.Checksum)
		if !ok {
			continue
		}
		did, err := to.PutPackage(it.Package.Checksum, p)
		if err != nil {
			return fmt.Errorf("%s: --cache-to: %w", r.opts.Arch, err)
		}
		if did {
			pushed++
		}
	}
	did, err := cache.push(to, r.key)
	if err != nil {
		return fmt.Errorf("%s: --cache-to: %w", r.opts.Arch, err)
	}
	r.log.Info("pushed to the shared cache", "arch", r.opts.Arch, "cache", to.String(), "packages", pushed, "rootfs", did)
	r.phase("cache push", start)
	return nil
}

// step runs and times one phase.
func (r *vmRun) step(name string, run func() error) error {
	r.begin(name)
	start := time.Now()
	if err := run(); err != nil {
		return err
	}
	r.phase(name, start)
	return nil
}

// phase records a phase's time.
func (r *vmRun) phase(name string, start time.Time) {
	d := time.Since(start)
	r.mu.Lock()
	r.res.Phases = append(r.res.Phases, Phase{name, d})
	r.mu.Unlock()
	r.log.Info("phase done", "arch", r.opts.Arch, "phase", name, "time", d.Round(time.Millisecond))
}

// begin tells OnPhase a phase begins.
func (r *vmRun) begin(name string) {
	if r.opts.OnPhase != nil && name != "" {
		r.opts.OnPhase(name)
	}
}

// makePlan plans the package disk and takes the build cache's key. A
// kernel given as files is read here, into the kit, for the key.
func (r *vmRun) makePlan() error {
	var err error
	if r.plan, err = planDisk(r.opts, r.items); err != nil {
		return err
	}
	if r.agent, err = embed.Agent(r.opts.Arch); err != nil {
		return err
	}
	agentSum := sha256.Sum256(r.agent)
	var kernel string
	if r.opts.Kernel != "" {
		if err := r.makeKit(); err != nil {
			return err
		}
		f, err := os.Open(r.opts.Kernel)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		kernel = fmt.Sprintf("file %x initramfs %x", h.Sum(nil), r.initrdSum)
	} else {
		if r.kernelPkg, err = kernelPackage(r.opts.Indexes, r.opts.Arch); err != nil {
			return err
		}
		it := r.kernelPkg
		kernel = fmt.Sprintf("package %s-%s %s", it.Package.Name, it.Package.Version, apk.EncodeChecksum(it.Package.Checksum))
	}
	r.key = cacheKey(r.opts, r.plan.identity, kernel, initramfs.BuildVMModules(r.prof.Transport), agentSum[:])
	return nil
}

// makeKit makes what the VM boots: from the boot cache, or the
// repository's linux-virt (fetched here) and the agent, or the files of
// --kernel and --modules.
func (r *vmRun) makeKit() error {
	if r.opts.Kernel != "" {
		var err error
		if r.kit, err = initramfs.KitFromFiles(r.opts.Kernel, r.opts.Modules, initramfs.BuildVMModules(r.prof.Transport)); err != nil {
			return err
		}
		k := &bootKit{initrd: filepath.Join(r.work, "initramfs.cpio")}
		if k.kernel, k.form, err = hostKernel(r.kit.Kernel, filepath.Join(r.work, "kernel"), r.prof, r.log); err != nil {
			return err
		}
		sum := sha256.New()
		if err := writeInitramfs(k.initrd, r.agent, r.kit, sum); err != nil {
			return err
		}
		r.bootKit, r.initrdSum = k, sum.Sum(nil)
		r.log.Debug("the build VM boots --kernel", "arch", r.opts.Arch, "kernel", r.opts.Kernel, "form", k.form)
		return nil
	}
	it := r.kernelPkg
	agentSum := sha256.Sum256(r.agent)
	dir, key := BootDir(r.opts.Client.Cache.Dir), bootKey(r.opts.Arch, it.Package, r.prof.Transport, agentSum[:])
	if r.bootKit = cachedBootKit(dir, key); r.bootKit != nil {
		r.log.Debug("the build VM's kernel and initramfs come from the boot cache", "arch", r.opts.Arch, "key", key[:16], "form", r.bootKit.form)
		return nil
	}
	paths, err := r.opts.Client.Fetch(r.ctx, []repo.Item{it})
	if err != nil {
		return err
	}
	if r.bootKit, err = makeBootKit(paths[0], r.opts.Client.Keys, r.agent, r.prof, dir, key, r.log); err != nil {
		return err
	}
	r.log.Debug("made the build VM's kernel and initramfs", "arch", r.opts.Arch, "key", key[:16], "form", r.bootKit.form)
	return nil
}

// build boots the build VM while the packages are fetched and the
// package disk is written, and returns the VM's console log. The first
// of the two to fail stops the other.
func (r *vmRun) build() (*os.File, error) {
	r.pkgDisk = filepath.Join(r.work, "pkgs.img")
	f, err := os.Create(r.pkgDisk)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The VM sees the disk's size when it starts: the most it can hold.
	if err := f.Truncate(r.plan.bound); err != nil {
		return nil, fmt.Errorf("%s: %w", r.pkgDisk, err)
	}
	parent := r.ctx
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	r.ctx = ctx
	defer func() { r.ctx = parent }()
	type result struct {
		log *os.File
		err error
	}
	done := make(chan result, 1)
	r.bootKit.keep(r.log) // synced and linked into the boot cache while the VM runs
	go func() {
		l, err := r.boot()
		if err != nil {
			cancel(err)
		}
		done <- result{l, err}
	}()
	derr := r.writeDisk(f)
	if derr != nil {
		cancel(derr)
	}
	vm := <-done
	if derr == nil && vm.err == nil {
		return vm.log, nil
	}
	if vm.log != nil {
		vm.log.Close()
	}
	return nil, context.Cause(ctx) // the first error
}

// writeDisk fetches the packages and writes the package disk to f, its
// first block last (the VM waits for it).
func (r *vmRun) writeDisk(f *os.File) error {
	var paths []string
	err := r.step("fetch", func() error {
		var err error
		paths, err = r.opts.Client.Fetch(r.ctx, r.items)
		return err
	})
	if err != nil {
		return err
	}
	return r.step("disks", func() error {
		hf := pkgdisk.NewHoldFirst(f, r.plan.bound)
		if err := writePackageDisk(r.ctx, hf, r.opts, r.plan, paths); err != nil {
			return fmt.Errorf("the package disk: %w", err)
		}
		return hf.Release()
	})
}

// fromCache gives the rootfs from the build cache when it has it: the
// entry is read as any rootfs from elsewhere, straight into the output.
func (r *vmRun) fromCache(cache rootfsCache) (bool, error) {
	r.begin("build cache")
	start := time.Now()
	f, err := cache.open(r.key, r.opts.Console)
	if err != nil || f == nil {
		return false, err
	}
	n, err := canonicalTar(r.ctx, r.res.Tar, f, r.work)
	f.Close()
	if err != nil {
		return false, fmt.Errorf("%s: the build cache's rootfs: %w", r.opts.Arch, err)
	}
	r.res.Size, r.res.Cached = n, true
	r.phase("build cache", start)
	r.log.Info("the rootfs comes from the build cache: nothing the build VM is given changed", "arch", r.opts.Arch, "key", r.key[:16])
	return true, nil
}

// boot runs the build VM and reads the rootfs tar off its output disk,
// and returns the console log.
func (r *vmRun) boot() (*os.File, error) {
	if _, err := r.prof.Find(); err != nil {
		return nil, err
	}
	outDisk := filepath.Join(r.work, "out.img")
	outSize := roundMiB(r.installed*3/2 + 64<<20)
	installed := r.installed
	if r.opts.Spec.Installer.Type == "apk-tools" {
		installed += 64 << 20 // the unpacked tools root lives in the VM's memory too
	}
	mem := r.opts.MemoryMiB
	if mem <= 0 {
		// The target is a tmpfs: room for the rootfs, the page cache of
		// the disks and the agent.
		mem = int(roundMiB(installed*2+320<<20) >> 20)
	}
	if err := checkHost(r.items, mem, r.work, outSize); err != nil {
		return nil, fmt.Errorf("%s: %w", r.opts.Arch, err)
	}
	consoleLog, err := os.Create(filepath.Join(r.work, "console.log"))
	if err != nil {
		return nil, err
	}
	var console io.Writer = consoleLog
	if r.opts.Console != nil {
		console = io.MultiWriter(r.opts.Console, consoleLog)
	}
	cpus := r.opts.CPUs
	if cpus <= 0 {
		cpus = min(runtime.NumCPU(), 2)
	}
	vm := &qemu.VM{Profile: r.prof, MemoryMiB: mem, CPUs: cpus, Kernel: r.bootKit.kernel, Initrd: r.bootKit.initrd,
		Cmdline: []string{"alpinist.mode=build", "alpinist.disks=pkgs,out"},
		Disks:   []qemu.Disk{{Path: r.pkgDisk, ReadOnly: true, Serial: "pkgs"}, {Path: outDisk, Serial: "out"}}}
	if err := r.runVM(vm, console, consoleLog, outDisk, outSize); err != nil {
		consoleLog.Close()
		return nil, err
	}
	if err := r.readTar(outDisk); err != nil {
		consoleLog.Close()
		return nil, err
	}
	return consoleLog, nil
}

// runVM runs the VM: under KVM when the host's answer says it works, and
// TCG when KVM fails (the same work again, from an empty disk).
func (r *vmRun) runVM(vm *qemu.VM, console, consoleLog io.Writer, outDisk string, outSize int64) error {
	opts, log := r.opts, r.log
	accel, auto := opts.Accel, opts.Accel == ""
	kvmDir := opts.KVMDir
	if kvmDir == "" {
		kvmDir, _ = repo.DefaultCacheDir()
	}
	if auto {
		accel = "tcg"
		if r.prof.KVM && arch.Host() == opts.Arch && qemu.DetectKVM(r.ctx, r.prof.Binary, kvmDir, log).Usable {
			accel = "kvm"
		}
	}
	vm.Accel = accel
	fallback := qemu.KVMFallback{Bin: r.prof.Binary, Dir: kvmDir, Source: "build VM", Log: log.With("arch", opts.Arch)}
	retried := false
	for {
		if err := sparseFile(outDisk, outSize); err != nil {
			return err
		}
		log.Info("starting the build VM", "arch", opts.Arch, "accel", vm.Accel, "memory_mib", vm.MemoryMiB, "cpus", vm.CPUs)
		run, err := qemu.Run(r.ctx, vm, qemu.RunOptions{Console: console, BootTimeout: opts.BootTimeout, IdleTimeout: opts.IdleTimeout,
			OnMessage: r.onMessage()})
		switch {
		case auto && r.ctx.Err() == nil && fallback.Failed(err):
			fmt.Fprintf(consoleLog, "\n-- KVM failed: the same work under TCG --\n%v\n", err)
			vm.Accel = "tcg"
			continue
		case errors.Is(err, qemu.ErrSilent) && !retried && r.ctx.Err() == nil:
			// A VM that printed nothing at all never ran: start it once
			// more (nothing was written to its disks).
			log.Warn("the build VM printed nothing: starting it once more", "arch", opts.Arch)
			retried = true
			continue
		case err != nil:
			return err
		}
		if auto {
			fallback.Done(vm.Accel, run.Ready)
		}
		return nil
	}
}

// onMessage times the agent's phases as it reports them, from boot.
func (r *vmRun) onMessage() func(proto.Message) error {
	r.begin("boot")
	phaseStart, current := time.Now(), "boot"
	return func(m proto.Message) error {
		switch m.Type {
		case proto.TypeReady, proto.TypePhase, proto.TypeDone:
			r.phase(current, phaseStart)
			phaseStart, current = time.Now(), m.Phase
			if m.Type == proto.TypeReady {
				current = "agent"
			}
			r.begin(current)
		case proto.TypeLog:
			r.log.Debug(m.Text, "arch", r.opts.Arch)
		}
		return nil
	}
}

// readTar writes the rootfs tar: the output disk up to the tar's end,
// read as any rootfs from elsewhere (install scripts run as root in the
// VM and could have the agent write anything).
func (r *vmRun) readTar(outDisk string) error {
	r.begin("tar")
	start := time.Now()
	pr, pw := io.Pipe()
	go func() {
		_, err := copyTar(pw, outDisk, r.pkgDisk)
		pw.CloseWithError(err)
	}()
	var err error
	r.res.Size, err = canonicalTar(r.ctx, r.res.Tar, pr, r.work)
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("%s: the build VM's rootfs: %w", r.opts.Arch, err)
	}
	r.phase("tar", start)
	return nil
}
