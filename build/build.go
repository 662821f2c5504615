// Package build runs a build on the host: it prepares the build VM's kit
// (kernel and modules from the target repository's linux-virt, the
// agent, the initramfs), the package disk and the output disk, runs the
// VM, and turns the rootfs tar it writes into the outputs.
package build

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/counting"

	"github.com/alpinist/alpinist/internal/atomicfile"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/agent/proto"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/apk/version"
	"github.com/alpinist/alpinist/assembler/rootfs"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/qemu"
	"github.com/alpinist/alpinist/spec"
)

// Options describe one architecture's build.
type Options struct {
	Name   string // the spec's name: outputs are NAME-ARCH.*
	Arch   string
	OutDir string
	// Entry is the resolved (or locked) package list; Index the indexes
	// it came from, in the spec's repository order.
	Entry   lock.Arch
	Indexes []*repo.Index
	World   []apk.Dependency
	Client  *repo.Client
	// Keys are the trusted public keys (name -> PEM) put into the target.
	Keys map[string][]byte
	// SourceDateEpoch fixes every time in the output.
	SourceDateEpoch int64
	// Config is applied in the target after the install.
	Config pkgdisk.Config
	// Files are the spec's files (Config.Files says what they are in
	// the target): the host files of copy entries and the content of
	// content entries go on the package disk.
	Files []spec.File
	// Installer is the spec's installer (apk-tools runs the minirootfs's
	// apk in the VM).
	Installer spec.Installer
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
}

// Result tells what a build made and how long each phase took.
type Result struct {
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

// Run builds opts.Arch's rootfs tar into opts.OutDir. Temporary files go
// into a directory under OutDir that is removed afterwards; on failure
// no output is left behind.
func Run(ctx context.Context, opts Options) (*Result, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prof, err := qemu.Lookup(opts.Arch)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(opts.OutDir, ".alpinist-build-"+opts.Arch+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	res := &Result{}
	phase := func(name string, start time.Time) {
		d := time.Since(start)
		res.Phases = append(res.Phases, Phase{name, d})
		log.Info("phase done", "arch", opts.Arch, "phase", name, "time", d.Round(time.Millisecond))
	}
	begin := func(name string) {
		if opts.OnPhase != nil && name != "" {
			opts.OnPhase(name)
		}
	}

	// Fetch the packages (and the kernel package) into the cache.
	begin("fetch")
	start := time.Now()
	items, err := repo.LockItems(&opts.Entry, opts.Indexes, opts.Client.Cache)
	if err != nil {
		return nil, err
	}
	if opts.Kernel == "" {
		kernelItem, err := kernelPackage(opts.Indexes, opts.Arch)
		if err != nil {
			return nil, err
		}
		items = append(items, kernelItem)
	}
	paths, err := opts.Client.Fetch(ctx, items)
	if err != nil {
		return nil, err
	}
	phase("fetch", start)
	begin("kernel+initramfs")

	// The kit: kernel, modules, agent, initramfs.
	start = time.Now()
	var kit *initramfs.Kit
	if opts.Kernel != "" {
		kit, err = initramfs.KitFromFiles(opts.Kernel, opts.Modules, initramfs.BuildVMModules)
	} else {
		kernelPath := paths[len(paths)-1]
		items, paths = items[:len(items)-1], paths[:len(paths)-1]
		kit, err = initramfs.KitFromPackage(kernelPath, opts.Client.Keys, work, initramfs.BuildVMModules)
	}
	if err != nil {
		return nil, err
	}
	agent, err := embed.Agent(opts.Arch)
	if err != nil {
		return nil, err
	}
	ar, err := initramfs.WithAgent(agent, kit)
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(work, "initramfs.cpio")
	initrdSum := sha256.New()
	if err := writeFile(initrd, func(w io.Writer) error { _, err := ar.WriteTo(io.MultiWriter(w, initrdSum)); return err }); err != nil {
		return nil, err
	}
	phase("kernel+initramfs", start)
	begin("disks")

	// The package disk and the output disk.
	start = time.Now()
	pkgDisk := filepath.Join(work, "pkgs.img")
	var installed int64
	pkgSum := sha256.New()
	if err := writeFile(pkgDisk, func(w io.Writer) error {
		var err error
		installed, err = writePackageDisk(io.MultiWriter(w, pkgSum), opts, items, paths)
		return err
	}); err != nil {
		return nil, err
	}
	if err := padTo512(pkgDisk); err != nil {
		return nil, err
	}
	// The build cache's key: everything the VM is given.
	key, err := cacheKey(opts, kit.Kernel, initrdSum.Sum(nil), pkgSum.Sum(nil))
	if err != nil {
		return nil, err
	}
	phase("disks", start)

	res.Tar = filepath.Join(opts.OutDir, opts.Name+"-"+opts.Arch+".tar")
	cache := rootfsCache{dir: RootfsDir(opts.Client.Cache.Dir), log: log}
	if !opts.NoCache {
		unlock, err := cache.lock(ctx, key)
		if err != nil {
			return nil, err
		}
		defer unlock()
		begin("build cache")
		start = time.Now()
		ok, _, err := cache.get(key, res.Tar, opts.Console)
		if err != nil {
			return nil, err
		}
		if ok {
			// The cache's entry is read as any rootfs from elsewhere.
			f, err := os.Open(res.Tar)
			if err != nil {
				return nil, err
			}
			n, err := canonicalTar(ctx, res.Tar, f, work)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: the build cache's rootfs: %w", opts.Arch, err)
			}
			res.Size, res.Cached = n, true
			phase("build cache", start)
			log.Info("the rootfs comes from the build cache: nothing the build VM is given changed", "arch", opts.Arch, "key", key[:16])
			return res, nil
		}
	}
	if _, err := prof.Find(); err != nil {
		return nil, err
	}
	outDisk := filepath.Join(work, "out.img")
	outSize := roundMiB(installed*3/2 + 64<<20)
	if opts.Installer.Type == "apk-tools" {
		installed += 64 << 20 // the unpacked tools root lives in the VM's memory too
	}
	mem := opts.MemoryMiB
	if mem <= 0 {
		// The target is a tmpfs: room for the rootfs, the page cache of
		// the disks and the agent.
		mem = int(roundMiB(installed*2+320<<20) >> 20)
	}
	if err := checkHost(items, mem, work, outSize); err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Arch, err)
	}
	if err := sparseFile(outDisk, outSize); err != nil {
		return nil, err
	}
	consoleLog, err := os.Create(filepath.Join(work, "console.log"))
	if err != nil {
		return nil, err
	}
	defer consoleLog.Close()
	var console io.Writer = consoleLog
	if opts.Console != nil {
		console = io.MultiWriter(opts.Console, consoleLog)
	}

	// The VM: under KVM when the host's answer says it works, and
	// TCG when KVM fails (the same work again, from an empty disk).
	accel, auto := opts.Accel, opts.Accel == ""
	kvmDir := opts.KVMDir
	if kvmDir == "" {
		kvmDir, _ = repo.DefaultCacheDir()
	}
	if auto {
		accel = "tcg"
		if prof.KVM && spec.HostArch() == opts.Arch {
			p := qemu.DetectKVM(ctx, prof.Binary, kvmDir, log)
			if p.Usable {
				accel = "kvm"
			}
		}
	}
	cpus := opts.CPUs
	if cpus <= 0 {
		cpus = min(runtime.NumCPU(), 2)
	}
	vm := &qemu.VM{Profile: prof, Accel: accel, MemoryMiB: mem, CPUs: cpus, Kernel: kit.Kernel, Initrd: initrd,
		Cmdline: []string{"alpinist.mode=build", "alpinist.disks=pkgs,out"},
		Disks:   []qemu.Disk{{Path: pkgDisk, ReadOnly: true, Serial: "pkgs"}, {Path: outDisk, Serial: "out"}}}
	fallback := qemu.KVMFallback{Bin: prof.Binary, Dir: kvmDir, Source: "build VM", Log: log.With("arch", opts.Arch)}
	retried := false
	for {
		log.Info("starting the build VM", "arch", opts.Arch, "accel", vm.Accel, "memory_mib", mem, "cpus", cpus)
		begin("boot")
		start = time.Now()
		var phaseStart = start
		var current = "boot"
		run, err := qemu.Run(ctx, vm, qemu.RunOptions{Console: console, BootTimeout: opts.BootTimeout, IdleTimeout: opts.IdleTimeout,
			OnMessage: func(m proto.Message) error {
				switch m.Type {
				case proto.TypeReady, proto.TypePhase, proto.TypeDone:
					phase(current, phaseStart)
					phaseStart, current = time.Now(), m.Phase
					if m.Type == proto.TypeReady {
						current = "agent"
					}
					begin(current)
				case proto.TypeLog:
					log.Debug(m.Text, "arch", opts.Arch)
				}
				return nil
			}})
		switch {
		case auto && ctx.Err() == nil && fallback.Failed(err):
			fmt.Fprintf(consoleLog, "\n-- KVM failed: the same work under TCG --\n%v\n", err)
			vm.Accel = "tcg"
			if err := sparseFile(outDisk, outSize); err != nil {
				return nil, err
			}
			continue
		case errors.Is(err, qemu.ErrSilent) && !retried && ctx.Err() == nil:
			// A VM that printed nothing at all never ran: start it once
			// more (nothing was written to its disks).
			log.Warn("the build VM printed nothing: starting it once more", "arch", opts.Arch)
			retried = true
			if err := sparseFile(outDisk, outSize); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		}
		if auto {
			fallback.Done(vm.Accel, run.Ready)
		}
		break
	}

	// The rootfs tar: the output disk up to the tar's end.
	begin("tar")
	start = time.Now()
	// The VM's tar is read as any rootfs from elsewhere: install scripts
	// run as root in the VM and could have the agent write anything.
	pr, pw := io.Pipe()
	go func() {
		_, err := copyTar(pw, outDisk)
		pw.CloseWithError(err)
	}()
	res.Size, err = canonicalTar(ctx, res.Tar, pr, work)
	pr.CloseWithError(err)
	if err != nil {
		return nil, fmt.Errorf("%s: the build VM's rootfs: %w", opts.Arch, err)
	}
	phase("tar", start)
	if !opts.NoCache {
		// A cache that cannot be written costs the next build time, not
		// this one its result.
		if err := cache.put(key, res.Tar, consoleLog.Name(), Entry{Key: key, Name: opts.Name, Arch: opts.Arch, Size: res.Size, Created: time.Now().UTC()}); err != nil {
			log.Warn("the rootfs could not be stored in the build cache", "arch", opts.Arch, "err", err)
		}
	}
	return res, nil
}

// cacheKey hashes what the build VM is given: the kernel (a file), the
// initramfs (agent, modules) and the package disk (their sha256, taken
// as they were written), with the arch and installer.
func cacheKey(opts Options, kernel string, initrd, pkgDisk []byte) (string, error) {
	f, err := os.Open(kernel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	kh := sha256.New()
	if _, err := io.Copy(kh, f); err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "alpinist rootfs cache 1\narch %s\ninstaller %s\npackage disk %x\n", opts.Arch, opts.Installer.Type, pkgDisk)
	fmt.Fprintf(h, "file 0 %x\nfile 1 %x\n", kh.Sum(nil), initrd)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// kernelPackage is the newest linux-virt in the indexes: the build VM's
// kernel comes from the target repository.
func kernelPackage(idx []*repo.Index, arch string) (repo.Item, error) {
	var best repo.Item
	for _, x := range idx {
		for _, p := range x.Packages {
			if p.Name == "linux-virt" && (best.Package == nil || version.Compare(p.Version, best.Package.Version) > 0) {
				best = repo.Item{Repository: x.Repository, Arch: arch, Package: p}
			}
		}
	}
	if best.Package == nil {
		return best, fmt.Errorf("the repositories have no linux-virt package for %s, so there is no kernel for the build VM", arch)
	}
	return best, nil
}

func writePackageDisk(w io.Writer, opts Options, items []repo.Item, paths []string) (int64, error) {
	m := pkgdisk.Manifest{Arch: opts.Arch, Repositories: lock.SystemRepositories(opts.Entry.Repositories), SourceDateEpoch: opts.SourceDateEpoch, Config: opts.Config}
	var tools *os.File
	if opts.Installer.Type == "apk-tools" {
		m.Installer, m.Tools = "apk-tools", true
		f, err := openChecked(opts.Installer)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		tools = f
	}
	for _, d := range opts.World {
		m.World = append(m.World, d.String())
	}
	installed, err := installedSize(items)
	if err != nil {
		return 0, err
	}
	for _, it := range items {
		p := it.Package
		m.Packages = append(m.Packages, pkgdisk.Package{Name: p.Name, Version: p.Version, Checksum: apk.EncodeChecksum(p.Checksum), Tag: it.Repository.Tag, Size: p.Size, Arch: p.Arch})
	}
	dw, err := pkgdisk.NewWriter(w, m, opts.Keys)
	if err != nil {
		return 0, err
	}
	if tools != nil {
		st, err := tools.Stat()
		if err != nil {
			return 0, err
		}
		if err := dw.AddTools(tools, st.Size()); err != nil {
			return 0, err
		}
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		st, err := f.Stat()
		if err == nil {
			err = dw.Add(f, st.Size())
		}
		f.Close()
		if err != nil {
			return 0, err
		}
	}
	for i, f := range opts.Files {
		switch f.Kind() {
		case "copy":
			err = dw.AddTree(i, f.Src, f.Mode, f.DirMode)
		case "content":
			err = dw.AddContent(i, f.Content, f.Mode)
		}
		if err != nil {
			return 0, err
		}
	}
	return installed, dw.Close()
}

// openChecked opens the apk-tools installer's minirootfs after checking
// its sha256/sha512 when the spec gives them.
func openChecked(in spec.Installer) (*os.File, error) {
	f, err := os.Open(in.Minirootfs)
	if err != nil {
		return nil, fmt.Errorf("installer: %w", err)
	}
	for _, c := range []struct {
		want string
		h    hash.Hash
	}{{in.SHA256, sha256.New()}, {in.SHA512, sha512.New()}} {
		if c.want == "" {
			continue
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := io.Copy(c.h, f); err != nil {
			f.Close()
			return nil, err
		}
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			f.Close()
			return nil, fmt.Errorf("installer: %s has checksum %s, the spec says %s", in.Minirootfs, got, c.want)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// copyTar copies the tar stream at the start of the disk image to w,
// stopping after its end-of-archive, and returns the bytes copied.
func copyTar(w io.Writer, disk string) (int64, error) {
	f, err := os.Open(disk)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cw := &counting.Writer{W: w}
	tw := tar.NewWriter(cw)
	tr := tar.NewReader(f)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("reading the rootfs from the VM's output disk: %w", err)
		}
		if err := tw.WriteHeader(h); err != nil {
			return 0, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return 0, err
		}
		n++
	}
	if n == 0 {
		return 0, errors.New("the VM's output disk holds no rootfs")
	}
	return cw.N, tw.Close()
}

// writeFile writes path through a temporary file and a rename.
// canonicalTar writes to dst (through a temporary file) the canonical
// rootfs tar of src (assembler/rootfs: what assemble reads imports with),
// and returns its size. Times are left as they are.
func canonicalTar(ctx context.Context, dst string, src io.Reader, work string) (int64, error) {
	var n int64
	err := writeFile(dst, func(w io.Writer) error {
		cw := &counting.Writer{W: w}
		_, err := rootfs.Canonicalize(ctx, cw, src, time.Time{}, work)
		n = cw.N
		return err
	})
	return n, err
}

func writeFile(path string, fill func(io.Writer) error) error {
	if err := atomicfile.Write(path, 0o644, fill); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func padTo512(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if r := st.Size() % 512; r != 0 {
		return os.Truncate(p, st.Size()+512-r)
	}
	return nil
}

func sparseFile(p string, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	return errors.Join(f.Truncate(size), f.Close())
}

func roundMiB(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

// Summary formats the phase times on one line.
func (r *Result) Summary() string {
	var parts []string
	for _, p := range r.Phases {
		parts = append(parts, fmt.Sprintf("%s %v", p.Name, p.Duration.Round(10*time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}
