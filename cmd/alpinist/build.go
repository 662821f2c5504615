package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/assembler/output"
	"github.com/alpinist/alpinist/builder"
	"github.com/alpinist/alpinist/regcache"
)

type buildFlags struct {
	arch, outputs      []string
	out, lockedIn      string
	push               string
	cacheFrom, cacheTo string
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
of docker login or podman login (see alpinist push --help).

--cache-from and --cache-to share the package cache and the build cache
through a registry repository (HOST[:PORT]/REPO), one OCI artifact per
package (tag apk-SHA1) and per rootfs (tag rootfs-KEY): a builder with
--cache-from takes from it what its own cache lacks, each package
verified as a download is, and a build whose VM inputs are unchanged
takes the rootfs and boots no VM; --cache-to pushes the build's
packages and rootfs (what the registry has is not pushed again). See
docs/scale-out.md.`,
		Example: `  alpinist build testdata/specs/demo.yaml -o out --arch x86_64
  alpinist build web.yaml -o out --locked web.lock
  alpinist build web.yaml -o out --output oci,docker-archive --push registry.example.org/web:1.0
  alpinist build web.yaml -o out --cache-from registry.example.org/ci/cache --cache-to registry.example.org/ci/cache`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, e, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output-dir", "o", "", "output `DIR` (required)")
	fl.StringSliceVar(&f.outputs, "output", []string{"tar"}, "outputs to write: "+outputNames()+" (default: the spec's outputs, else tar)")
	fl.StringVar(&f.push, "push", "", "push the OCI image (one arch) or index (several) to the registry `REF` at the end")
	fl.BoolVar(&f.insecure, "insecure", false, "with --push, --cache-from or --cache-to: plain HTTP, for a registry on localhost only")
	fl.StringVar(&f.cacheFrom, "cache-from", "", "take packages and build-cache rootfs from the registry repository `REF` (HOST[:PORT]/REPO)")
	fl.StringVar(&f.cacheTo, "cache-to", "", "push the build's packages and build-cache rootfs to the registry repository `REF`")
	fl.StringSliceVar(&f.arch, "arch", nil, "architectures to build (default: the spec's)")
	fl.StringVar(&f.lockedIn, "locked", "", "build exactly the packages of lock `FILE`")
	fl.StringVar(&f.cacheDir, "cache", "", "package cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	fl.StringVar(&f.accel, "accel", "", "force kvm or tcg (default: probe KVM)")
	fl.StringVar(&f.kernel, "kernel", "", "boot the build VM with this kernel image `FILE` instead of the repository's linux-virt (one arch: the spec's only one, or --arch; armhf takes armv7's)")
	fl.StringVar(&f.modules, "modules", "", "with --kernel: its lib/modules/KVER `DIR` (with modules.dep) to take the virtio modules from")
	fl.IntVar(&f.memory, "memory", 0, "VM memory in MiB (default: from the packages' installed size)")
	fl.IntVar(&f.cpus, "cpus", 0, "VM CPUs (default: up to 2)")
	fl.IntVar(&f.jobs, "jobs", 0, "build VMs run at once, one per arch (default: one per core, at least 2)")
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
	if f.kernel != "" && len(f.arch) > 1 {
		return fmt.Errorf("--kernel boots one architecture, and --arch names %d", len(f.arch))
	}
	sess, err := builder.Open(specPath, builder.OpenOptions{Arches: f.arch, LockPath: f.lockedIn, CacheDir: f.cacheDir, NeedCache: true, Log: e.log})
	if err != nil {
		return err
	}
	if f.kernel != "" && len(sess.Arches) != 1 {
		return fmt.Errorf("--kernel boots one architecture, and %s builds %s: choose one with --arch", specPath, strings.Join(sess.Arches, ", "))
	}
	outputs, from := f.outputs, "--output"
	if !cmd.Flags().Changed("output") && sess.Spec.Outputs != nil {
		outputs, from = sess.Spec.Outputs, specPath+": outputs"
	}
	if err := output.Check(outputs); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	if f.insecure && f.push == "" && f.cacheFrom == "" && f.cacheTo == "" {
		return fmt.Errorf("--insecure goes with --push, --cache-from or --cache-to")
	}
	var cacheFrom, cacheTo *regcache.Cache
	for _, c := range []struct {
		flag, ref string
		cache     **regcache.Cache
	}{{"--cache-from", f.cacheFrom, &cacheFrom}, {"--cache-to", f.cacheTo, &cacheTo}} {
		if c.ref == "" {
			continue
		}
		if *c.cache, err = regcache.Open(cmd.Context(), c.ref, regcache.Options{Insecure: f.insecure}); err != nil {
			return fmt.Errorf("%s: %w", c.flag, err)
		}
	}
	var console io.Writer
	if e.verbose {
		console = e.stderr
	}
	rep, err := builder.Build(cmd.Context(), sess, builder.Options{
		OutDir: f.out, Outputs: outputs, Layout: f.push != "", Tool: "alpinist-" + versionString(),
		Accel: f.accel, Kernel: f.kernel, Modules: f.modules, MemoryMiB: f.memory, CPUs: f.cpus, Jobs: f.jobs,
		BootTimeout: f.bootTimeout, IdleTimeout: f.idle, NoCache: f.noCache,
		Console: console, Log: e.log, Progress: &buildProgress{e: e},
		CacheFrom: cacheFrom, CacheTo: cacheTo,
	})
	if err != nil {
		return err
	}
	defer rep.Close()
	printResults(e, rep.Results)
	for _, l := range rep.Summaries {
		fmt.Fprintln(e.stdout, l)
	}
	fmt.Fprintf(e.stdout, "lock: %s\n", rep.Lock)
	if cacheFrom != nil || cacheTo != nil {
		fmt.Fprintf(e.stdout, "packages: %d downloaded, %d from the shared cache\n", rep.Downloaded, rep.Shared)
	}
	if f.push != "" {
		return push(cmd.Context(), e, rep.Layout, f.push, f.insecure)
	}
	return nil
}

// buildProgress shows a build's progress bars.
type buildProgress struct {
	e    *env
	bars *buildBars
}

func (p *buildProgress) Start(arches []string, download int64) {
	p.bars = p.e.newBuildBars(arches, download)
}
func (p *buildProgress) Bytes(n int64)             { p.bars.bytes(n) }
func (p *buildProgress) Phase(arch, phase string)  { p.bars.phase(arch, phase) }
func (p *buildProgress) Finish(arch, state string) { p.bars.finish(arch, state) }
func (p *buildProgress) Wait()                     { p.bars.wait(p.e) }

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
