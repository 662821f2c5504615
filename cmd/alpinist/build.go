package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/assembler/tarball"
	"github.com/alpinist/alpinist/build"
	"github.com/alpinist/alpinist/spec"
)

type buildFlags struct {
	arch, outputs     []string
	out, lockedIn     string
	cacheDir, accel   string
	kernel, modules   string
	memory, cpus      int
	bootTimeout, idle time.Duration
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
scripts and triggers run natively, and writes into DIR:

    NAME-ARCH.tar     the root filesystem (--output tar; also tar.gz, tar.zst)
    NAME.lock         the lock file of what was installed
    NAME-ARCH.log     the VM's console (the build log)

Times in the outputs come from SOURCE_DATE_EPOCH, else from the newest
package's build date. Phase times are printed at the end.`,
		Example: `  alpinist build testdata/specs/demo.yaml -o out --arch x86_64
  alpinist build web.yaml -o out --locked web.lock`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, e, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output-dir", "o", "", "output `DIR` (required)")
	fl.StringSliceVar(&f.outputs, "output", []string{"tar"}, "outputs to write: tar, tar.gz, tar.zst (default: the spec's outputs, else tar)")
	fl.StringSliceVar(&f.arch, "arch", nil, "architectures to build (default: the spec's)")
	fl.StringVar(&f.lockedIn, "locked", "", "build exactly the packages of lock `FILE`")
	fl.StringVar(&f.cacheDir, "cache", "", "package cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	fl.StringVar(&f.accel, "accel", "", "force kvm or tcg (default: probe KVM)")
	fl.StringVar(&f.kernel, "kernel", "", "boot the build VM with this kernel image `FILE` instead of the repository's linux-virt")
	fl.StringVar(&f.modules, "modules", "", "with --kernel: its lib/modules/KVER `DIR` (with modules.dep) to take the virtio modules from")
	fl.IntVar(&f.memory, "memory", 0, "VM memory in MiB (default: from the packages' installed size)")
	fl.IntVar(&f.cpus, "cpus", 0, "VM CPUs (default: up to 2)")
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
	for _, o := range outputs {
		if _, ok := tarball.Formats[o]; !ok {
			return fmt.Errorf("%s: %s: this version of alpinist writes tar, tar.gz and tar.zst (the container and disk outputs are not implemented yet)", from, o)
		}
	}
	keys := map[string][]byte{}
	for _, p := range sc.spec.Keys {
		if err := readKeys(p, keys); err != nil {
			return err
		}
	}
	lf := &lock.File{Name: sc.spec.Name}
	for _, arch := range sc.arches {
		idx, entry, err := resolveArch(cmd.Context(), sc.client, sc.spec, specPath, arch, sc.locked, f.lockedIn)
		if err != nil {
			return err
		}
		lf.Set(entry)
		epoch, ok, err := sourceDateEpoch()
		if err != nil {
			return err
		}
		var se int64
		if ok {
			se = epoch.Unix()
		} else {
			// The newest build date of exactly the packages installed.
			items, err := repo.LockItems(&entry, idx, sc.client.Cache)
			if err != nil {
				return err
			}
			for _, it := range items {
				se = max(se, it.Package.BuildTime)
			}
		}
		logPath := filepath.Join(f.out, sc.spec.Name+"-"+arch+".log")
		if err := os.MkdirAll(f.out, 0o755); err != nil {
			return err
		}
		logFile, err := os.Create(logPath)
		if err != nil {
			return err
		}
		var console io.Writer = logFile
		if e.verbose {
			console = io.MultiWriter(logFile, e.stderr)
		}
		res, err := build.Run(cmd.Context(), build.Options{
			Name: sc.spec.Name, Arch: arch, OutDir: f.out, Entry: entry, Indexes: idx, World: sc.spec.Packages,
			Client: sc.client, Keys: keys, SourceDateEpoch: se, Accel: f.accel, Kernel: f.kernel, Modules: f.modules, Installer: sc.spec.Installer,
			Config: specConfig(sc.spec, arch), Files: sc.spec.Files, MemoryMiB: f.memory, CPUs: f.cpus,
			Console: console, Log: e.log, BootTimeout: f.bootTimeout, IdleTimeout: f.idle,
		})
		logFile.Close()
		if err != nil {
			// No partial output: the error carries the console's last
			// lines, and -v shows the whole console live.
			os.Remove(logPath)
			return fmt.Errorf("%s: %w", arch, err)
		}
		if err := tarOutputs(e, sc.spec.Name, arch, f.out, res.Tar, outputs); err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", arch, res.Summary())
	}
	lockPath := filepath.Join(f.out, sc.spec.Name+".lock")
	if err := lock.Write(lockPath, lf); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "lock: %s\n", lockPath)
	return nil
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
	c := pkgdisk.Config{Hostname: s.Hostname, Timezone: s.Timezone, Services: s.Services, Run: s.Run}
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
		c.Console = s.Disk.ConsoleFor(arch)
	}
	return c
}

// tarOutputs writes the compressed tar outputs from the rootfs tar, and
// removes the plain tar when it was not asked for.
func tarOutputs(e *env, name, arch, dir, tarPath string, outputs []string) error {
	for _, o := range outputs {
		p := filepath.Join(dir, name+"-"+arch+tarball.Formats[o])
		if o != "tar" {
			if err := tarball.WriteFile(p, tarPath, o); err != nil {
				return err
			}
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: %s (%d bytes)\n", arch, p, st.Size())
	}
	if !slices.Contains(outputs, "tar") {
		return os.Remove(tarPath)
	}
	return nil
}
