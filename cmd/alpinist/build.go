package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/assembler/output"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/build"
	"github.com/alpinist/alpinist/spec"
)

type buildFlags struct {
	arch, outputs      []string
	out, lockedIn      string
	push               string
	insecure, noCache  bool
	cacheDir, accel    string
	kernel, modules    string
	memory, cpus, jobs int
	bootTimeout, idle  time.Duration
}

func newBuildCmd(e *env) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build SPEC -o DIR",
		Short: "Build the spec's system in a VM and write its outputs",
		Long: `build resolves the spec (or takes --locked FILE), fetches and verifies the
packages, boots a QEMU VM of each target architecture (KVM when it really
works, TCG emulation otherwise) with the kernel of the repository's
linux-virt package, installs the packages inside it so that install
scripts and triggers run natively, and writes into DIR the outputs
asked for (--output, else the spec's outputs:, else tar):

` + outputsHelp() + `
and always:

    NAME-ARCH.spdx.json      the SPDX 2.3 SBOM of the installed packages
    NAME.lock                the lock file of what was installed
    NAME-ARCH.log            the VM's console (the build log)

Every output is reproducible: times come from SOURCE_DATE_EPOCH, else
from the newest package's build date. Phase times are printed at the
end. --push REF pushes the OCI image to a registry with the credentials
of docker login or podman login (see alpinist push --help).`,
		Example: `  alpinist build testdata/specs/demo.yaml -o out --arch x86_64
  alpinist build web.yaml -o out --locked web.lock
  alpinist build web.yaml -o out --output oci,docker-archive --push registry.example.org/web:1.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, e, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output-dir", "o", "", "output `DIR` (required)")
	fl.StringSliceVar(&f.outputs, "output", []string{"tar"}, "outputs to write: "+outputNames()+" (default: the spec's outputs, else tar)")
	fl.StringVar(&f.push, "push", "", "push the OCI image (one arch) or index (several) to the registry `REF` at the end")
	fl.BoolVar(&f.insecure, "insecure", false, "with --push: plain HTTP, for a registry on localhost only")
	fl.StringSliceVar(&f.arch, "arch", nil, "architectures to build (default: the spec's)")
	fl.StringVar(&f.lockedIn, "locked", "", "build exactly the packages of lock `FILE`")
	fl.StringVar(&f.cacheDir, "cache", "", "package cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	fl.StringVar(&f.accel, "accel", "", "force kvm or tcg (default: probe KVM)")
	fl.StringVar(&f.kernel, "kernel", "", "boot the build VM with this kernel image `FILE` instead of the repository's linux-virt")
	fl.StringVar(&f.modules, "modules", "", "with --kernel: its lib/modules/KVER `DIR` (with modules.dep) to take the virtio modules from")
	fl.IntVar(&f.memory, "memory", 0, "VM memory in MiB (default: from the packages' installed size)")
	fl.IntVar(&f.cpus, "cpus", 0, "VM CPUs (default: up to 2)")
	fl.IntVar(&f.jobs, "jobs", 0, "build VMs run at once, one per arch (default: all the arches)")
	fl.BoolVar(&f.noCache, "no-cache", false, "boot the build VM even when the build cache has the rootfs (nothing the VM is given changed)")
	fl.DurationVar(&f.bootTimeout, "boot-timeout", 3*time.Minute, "time allowed until the VM's agent is up")
	fl.DurationVar(&f.idle, "idle-timeout", 30*time.Minute, "time allowed without news from the VM")
	return cmd
}

func runBuild(cmd *cobra.Command, e *env, specPath string, f buildFlags) error {
	if f.out == "" {
		return fmt.Errorf("-o DIR is required")
	}
	if f.modules != "" && f.kernel == "" {
		return fmt.Errorf("--modules needs --kernel")
	}
	if f.kernel != "" && len(f.arch) != 1 {
		return fmt.Errorf("--kernel boots one architecture: give --arch too")
	}
	sc, err := openSpec(e, specPath, f.arch, f.lockedIn, f.cacheDir, true)
	if err != nil {
		return err
	}
	outputs, from := f.outputs, "--output"
	if !cmd.Flags().Changed("output") && sc.spec.Outputs != nil {
		outputs, from = sc.spec.Outputs, specPath+": outputs"
	}
	if err := output.Check(outputs); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	if f.insecure && f.push == "" {
		return fmt.Errorf("--insecure goes with --push")
	}
	keys := map[string][]byte{}
	for _, p := range sc.spec.Keys {
		if err := readKeys(p, keys); err != nil {
			return err
		}
	}
	type resolved struct {
		idx   []*repo.Index
		entry lock.Arch
	}
	lf := &lock.File{Name: sc.spec.Name}
	var archs []resolved
	for _, arch := range sc.arches {
		idx, entry, err := resolveArch(cmd.Context(), sc.client, sc.spec, specPath, arch, sc.locked, f.lockedIn)
		if err != nil {
			return err
		}
		if err := checkDiskPackages(outputs, entry); err != nil {
			return fmt.Errorf("%s: %s: %w", specPath, arch, err)
		}
		lf.Set(entry)
		archs = append(archs, resolved{idx, entry})
	}
	// One date for the whole build: SOURCE_DATE_EPOCH, else the newest
	// build date of the packages installed (on any arch).
	epoch, ok, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	if !ok {
		var se int64
		for _, r := range archs {
			items, err := repo.LockItems(&r.entry, r.idx, sc.client.Cache)
			if err != nil {
				return err
			}
			for _, it := range items {
				se = max(se, it.Package.BuildTime)
			}
		}
		epoch = time.Unix(se, 0).UTC()
	}
	// Everything goes to a staging directory first, and replaces the
	// previous outputs only once all is written.
	stage, err := newStaging(f.out, sc.spec.Name)
	if err != nil {
		return err
	}
	defer stage.cleanup()
	set, err := output.New(output.Plan{
		Spec: sc.spec, Dir: stage.dir, Outputs: outputs, Created: epoch, Tool: "alpinist-" + versionString(),
		Layout: f.push != "", Log: e.log, Context: cmd.Context(),
	})
	if err != nil {
		return err
	}
	defer set.Close()
	// The arches' VMs run side by side (--jobs at a time); their outputs
	// are then written in the spec's arch order.
	type archRun struct {
		res *build.Result
		err error
	}
	runs := make([]archRun, len(sc.arches))
	jobs := f.jobs
	if jobs <= 0 {
		jobs = len(sc.arches)
	}
	var download int64
	for _, r := range archs {
		for _, p := range r.entry.Packages {
			download += p.Size
		}
	}
	bars := e.newBuildBars(sc.arches, download)
	sc.client.OnBytes = bars.bytes
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, arch := range sc.arches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				runs[i].err = ctx.Err()
				return
			}
			logPath := filepath.Join(stage.dir, sc.spec.Name+"-"+arch+".log")
			logFile, err := os.Create(logPath)
			if err != nil {
				runs[i].err = err
				cancel()
				return
			}
			var console io.Writer = logFile
			if e.verbose {
				console = io.MultiWriter(logFile, e.stderr)
			}
			runs[i].res, runs[i].err = build.Run(ctx, build.Options{
				Name: sc.spec.Name, Arch: arch, OutDir: stage.dir, Entry: archs[i].entry, Indexes: archs[i].idx, World: world(sc.spec, arch, archs[i].idx),
				Client: sc.client, Keys: keys, SourceDateEpoch: epoch.Unix(), Accel: f.accel, Kernel: f.kernel, Modules: f.modules, Installer: sc.spec.Installer,
				Config: specConfig(sc.spec, arch), Files: sc.spec.Files, MemoryMiB: f.memory, CPUs: f.cpus,
				Console: console, Log: e.log, BootTimeout: f.bootTimeout, IdleTimeout: f.idle, NoCache: f.noCache,
				OnPhase: func(p string) { bars.phase(arch, p) },
			})
			logFile.Close()
			if runs[i].err != nil {
				bars.finish(arch, "failed")
				cancel() // the other arches stop: the build fails anyway
			} else {
				bars.finish(arch, "built")
			}
		}()
	}
	wg.Wait()
	bars.wait(e)
	sc.client.OnBytes = nil
	// The first real failure, not another arch's stop because of it (or
	// the interruption, when that is all there is). No output: the error
	// carries the console's last lines, and -v shows the whole console.
	var firstErr error
	for i, r := range runs {
		switch {
		case r.err == nil:
		case firstErr == nil, errors.Is(firstErr, context.Canceled) && !errors.Is(r.err, context.Canceled):
			firstErr = fmt.Errorf("%s: %w", sc.arches[i], r.err)
		}
	}
	if firstErr != nil {
		return firstErr
	}
	var summaries []string
	for i, arch := range sc.arches {
		res := runs[i].res
		written, err := set.Add(output.Arch{Arch: arch, Tar: res.Tar, Lock: &archs[i].entry})
		if err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		stage.add(written)
		summaries = append(summaries, fmt.Sprintf("%s: %s", arch, res.Summary()))
	}
	written, err := set.Finish()
	if err != nil {
		return err
	}
	stage.add(written)
	lockName := sc.spec.Name + ".lock"
	if err := lock.Write(filepath.Join(stage.dir, lockName), lf); err != nil {
		return err
	}
	layout := set.Layout() // the work layout, in the stage until the end, unless oci is an output
	if slices.Contains(outputs, "oci") {
		layout = stage.final(layout)
	}
	if err := stage.commit(cmd.Context()); err != nil {
		return err
	}
	printResults(e, stage.results)
	for _, l := range summaries {
		fmt.Fprintln(e.stdout, l)
	}
	fmt.Fprintf(e.stdout, "lock: %s\n", filepath.Join(f.out, lockName))
	if f.push != "" {
		return push(cmd.Context(), e, layout, f.push, f.insecure)
	}
	return nil
}

// printResults prints what was written, one line each, with its size
// and sha256 (of index.json for a directory such as an OCI layout).
func printResults(e *env, rs []output.Result) {
	for _, r := range rs {
		what := r.Output
		if r.Arch != "" {
			what = r.Arch + ": " + r.Output
		}
		fmt.Fprintf(e.stdout, "%s: %s (%d bytes, %s)\n", what, r.Path, r.Size, fileDigest(r.Path))
	}
}

// fileDigest is "sha256 HEX" of a file, or of a directory's index.json.
func fileDigest(p string) string {
	name := "sha256"
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		p, name = filepath.Join(p, "index.json"), "index.json sha256"
	}
	f, err := os.Open(p)
	if err != nil {
		return "no digest: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "no digest: " + err.Error()
	}
	return fmt.Sprintf("%s %x", name, h.Sum(nil))
}

// readKeys adds the public keys of a key directory or file (name -> PEM).
func readKeys(p string, keys map[string][]byte) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	files := []string{p}
	if st.IsDir() {
		ents, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		files = nil
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".pub") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	slices.Sort(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		keys[filepath.Base(f)] = data
	}
	return nil
}

// specConfig is the spec's system configuration as the agent takes it
// for one architecture. A spec with a disk gets a getty on the serial
// console and, unless it says otherwise, DHCP on eth0.
func specConfig(s *spec.Spec, arch string) pkgdisk.Config {
	c := pkgdisk.Config{Hostname: s.Hostname, Timezone: s.Timezone, Run: s.Run}
	c.Services, c.DefaultServices = s.ServicesFor()
	for _, g := range s.Groups {
		c.Groups = append(c.Groups, pkgdisk.Group{Name: g.Name, GID: g.GID})
	}
	for _, u := range s.Users {
		c.Users = append(c.Users, pkgdisk.User{Name: u.Name, UID: u.UID, Group: u.Group, Groups: u.Groups, Home: u.Home,
			Shell: u.Shell, Password: u.Password, AuthorizedKeys: u.AuthorizedKeys})
	}
	for _, f := range s.Files {
		pf := pkgdisk.File{Dst: f.Dst, Kind: f.Kind(), Mode: f.Mode, Owner: f.Owner}
		switch pf.Kind {
		case "symlink":
			pf.Target = f.Symlink
		case "hardlink":
			pf.Target = f.Hardlink
		case "copy", "content":
			pf.Mode = spec.NoMode // the modes travel with the tree
		}
		c.Files = append(c.Files, pf)
	}
	n := s.Network
	if n == nil && s.Disk != nil {
		n = &spec.DefaultNetwork
	}
	if n != nil {
		c.Network = &pkgdisk.Network{DNS: n.DNS}
		for _, in := range n.Interfaces {
			c.Network.Interfaces = append(c.Network.Interfaces, pkgdisk.Interface{Name: in.Name, DHCP: in.DHCP, Addresses: in.Addresses, Gateways: in.Gateways})
		}
	}
	if s.Disk != nil {
		// GRUB's EFI image whenever the disk boots with UEFI, whatever
		// the outputs: the rootfs is the same system for a tar and a disk
		// (and the build cache and alpinist assemble see one system).
		plan := bootdisk.New(s.Disk, arch)
		c.Console, c.EFI = plan.Console, plan.GRUBImage()
	}
	return c
}

// outputNames lists the outputs for a flag's help.
func outputNames() string {
	var names []string
	for _, o := range output.Outputs {
		names = append(names, o.Name)
	}
	return strings.Join(names, ", ")
}

// outputsHelp describes each output and its file, for build's help.
func outputsHelp() string {
	var b strings.Builder
	for _, o := range output.Outputs {
		fmt.Fprintf(&b, "    %-24s %s: %s\n", o.File("NAME", "ARCH"), o.Name, o.Doc)
	}
	return b.String()
}

// checkDiskPackages says, before any VM boots, what a disk image output
// lacks among the resolved packages: a kernel (the boot loaders are in
// the world, spec.World).
func checkDiskPackages(outputs []string, entry lock.Arch) error {
	if !output.AnyDisk(outputs) {
		return nil
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(entry.Packages, func(p lock.Package) bool { return strings.HasPrefix(p.Name, prefix) })
	}
	if !has("linux-") {
		return fmt.Errorf("a disk image needs a kernel: add a linux-* package (such as linux-virt) to packages")
	}
	return nil
}
