package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/builder"
	"github.com/alpinist/alpinist/qemu"
)

// check is one line of alpinist doctor.
type check struct {
	what, state, detail string
	// fix says what to do (install hints) when the state is not ok.
	fix string
	// required: a build for the host's arch cannot do without it.
	required bool
}

func newDoctorCmd(e *env) *cobra.Command {
	var arches []string
	var cacheFlag string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host: QEMU, firmware, KVM, cache, free disk",
		Long: `doctor checks what alpinist needs on this host and says what to install
for each missing piece (Debian/Ubuntu, Fedora, Arch, macOS):

    qemu-system-* for each architecture (--arch; default all eight:
                  x86_64, x86, aarch64, armv7, armhf, ppc64le, s390x,
                  riscv64): builds and alpinist run boot them
    qemu-img      optional: to check and convert images yourself
    UEFI firmware for alpinist run of a disk: OVMF (x86_64), OVMF32 (x86),
                  AAVMF (aarch64), AAVMF32 (armv7), U-Boot (riscv64)
    /dev/kvm      whether it exists, and whether KVM really runs guest code
                  (else builds use TCG emulation: slower, same result)
    the cache     where it is, that it is writable, what it holds
    free disk     in the cache and the current directory

It exits 1 when something the host's own architecture needs is missing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			checks := doctor(cmd.Context(), e, arches, cacheFlag)
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			missing := 0
			for _, c := range checks {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", c.what, c.state, c.detail)
				if c.state != "ok" && c.required {
					missing++
				}
			}
			tw.Flush()
			var fixes []string
			for _, c := range checks {
				if c.state != "ok" && c.fix != "" {
					fixes = append(fixes, fmt.Sprintf("  %s: %s", c.what, c.fix))
				}
			}
			if len(fixes) > 0 {
				fmt.Fprintf(e.stdout, "\nto fix:\n%s\n", strings.Join(fixes, "\n"))
			}
			if missing > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d required piece(s) missing", missing)}
			}
			fmt.Fprintln(e.stdout, "\nalpinist can build here.")
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&arches, "arch", arch.Where(func(a arch.Arch) bool { return a.QEMU.Tested }), "architectures to check QEMU for")
	cmd.Flags().StringVar(&cacheFlag, "cache", "", "cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	return cmd
}

func doctor(ctx context.Context, e *env, arches []string, cacheFlag string) []check {
	var out []check
	host := arch.Host()
	// One line per QEMU binary, naming the arches it runs (qemu-system-arm:
	// armv7, armhf).
	var bins []string
	forBin := map[string][]string{}
	for _, arch := range arches {
		prof, err := qemu.Lookup(arch)
		if err != nil {
			out = append(out, check{what: "qemu " + arch, state: "unknown", detail: err.Error()})
			continue
		}
		if forBin[prof.Binary] == nil {
			bins = append(bins, prof.Binary)
		}
		forBin[prof.Binary] = append(forBin[prof.Binary], arch)
	}
	for _, b := range bins {
		names := strings.Join(forBin[b], ", ")
		c := check{what: b, required: slices.Contains(forBin[b], host)}
		if bin, err := exec.LookPath(b); err != nil {
			c.state, c.detail, c.fix = "missing", "builds for "+names+" need it", qemu.InstallHint(b)
		} else {
			c.state, c.detail = "ok", names+": "+bin+" "+qemuVersion(bin)
		}
		out = append(out, c)
	}
	if bin, err := exec.LookPath("qemu-img"); err != nil {
		out = append(out, check{what: "qemu-img", state: "missing", detail: "optional: to check and convert images yourself", fix: qemu.InstallHint("qemu-img")})
	} else {
		out = append(out, check{what: "qemu-img", state: "ok", detail: bin})
	}
	for _, a := range arch.All {
		if a.QEMU.FirmwareName == "" {
			continue
		}
		c := check{what: "UEFI firmware " + a.Name + " (" + a.QEMU.FirmwareName + ")"}
		if f, err := qemu.FindUEFI(a.Name); err != nil {
			c.state, c.detail, c.fix = "missing", "alpinist run needs it to boot "+a.Name+" disks with UEFI", qemu.InstallHint(strings.ToLower(a.QEMU.FirmwareName))
		} else if f.Secure {
			c.state, c.detail = "ok", f.Code+" (a Secure Boot build: run boots it on an SMM machine, no keys enrolled)"
		} else if f.Payload {
			c.state, c.detail = "ok", f.Code+" (UEFI as OpenSBI's payload)"
		} else {
			c.state, c.detail = "ok", f.Code
		}
		out = append(out, c)
	}
	out = append(out, kvmCheck(ctx, e, host))
	cache, err := repo.DefaultCacheDir()
	if cacheFlag != "" {
		cache, err = cacheFlag, nil
	}
	if err != nil {
		out = append(out, check{what: "cache", state: "missing", detail: err.Error(), fix: "set ALPINIST_CACHE or XDG_CACHE_HOME, or give --cache", required: true})
	} else {
		out = append(out, cacheCheck(cache))
	}
	wd, _ := os.Getwd()
	for _, d := range []struct{ what, dir string }{{"free disk (cache)", cache}, {"free disk (here)", wd}} {
		if d.dir == "" {
			continue
		}
		out = append(out, diskCheck(d.what, d.dir))
	}
	return out
}

// qemuVersion is the first line of qemu-system-* --version, shortened.
func qemuVersion(bin string) string {
	b, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return "(" + strings.TrimSpace(strings.TrimPrefix(line, "QEMU emulator ")) + ")"
}

func kvmCheck(ctx context.Context, e *env, host string) check {
	c := check{what: "KVM"}
	if _, err := os.Stat(qemu.KVMDevice); err != nil {
		c.state, c.detail = "absent", "no /dev/kvm: builds use TCG emulation (slower, same result)"
		c.fix = "enable virtualization in the firmware and load kvm_intel or kvm_amd; in a VM, enable nested virtualization"
		return c
	}
	if f, err := os.OpenFile(qemu.KVMDevice, os.O_RDWR, 0); err != nil {
		c.state, c.detail = "no access", "/dev/kvm: "+err.Error()+": builds use TCG emulation"
		c.fix = "add your user to the kvm group (sudo usermod -aG kvm $USER), then log in again"
		return c
	} else {
		f.Close()
	}
	prof, err := qemu.Lookup(host)
	if err != nil || !prof.KVM {
		c.state, c.detail = "unused", "alpinist does not use KVM on "+host+" yet: builds use TCG"
		return c
	}
	bin, err := exec.LookPath(prof.Binary)
	if err != nil {
		c.state, c.detail = "unknown", "/dev/kvm is there; "+prof.Binary+" is needed to try it"
		return c
	}
	p := qemu.DetectKVM(ctx, bin, cacheDir(), slog.New(slog.DiscardHandler)) // the line says it
	when := p.Checked.Local().Format("2006-01-02 15:04")
	switch {
	case !p.Usable && p.FromVM():
		c.state, c.detail = "broken", fmt.Sprintf("/dev/kvm is there but a %s failed under KVM on %s (%s): builds use TCG emulation (slower, same result) until %s",
			p.Source, when, p.Reason, p.Checked.Add(qemu.KVMCacheTTL).Local().Format("2006-01-02 15:04"))
		c.fix = "often nested virtualization: enable it on the outer host, or ignore (TCG works); " + qemu.KVMFile(cacheDir()) + " holds the answer: remove it to try KVM again"
	case !p.Usable:
		c.state, c.detail = "broken", "/dev/kvm is there but KVM does not run guest code ("+p.Reason+"): builds use TCG emulation (slower, same result)"
		c.fix = "often nested virtualization: enable it on the outer host, or ignore (TCG works)"
	case p.FromVM():
		c.state, c.detail = "ok", fmt.Sprintf("Linux booted under KVM (a %s on %s, ready in %s)", p.Source, when, p.Elapsed)
	default:
		c.state, c.detail = "untried", "the probe's real-mode code runs under KVM; Linux has not booted under KVM here yet: the first build tries, and falls back to TCG if it fails"
	}
	return c
}

func cacheCheck(dir string) check {
	c := check{what: "cache", required: true}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.state, c.detail, c.fix = "not writable", err.Error(), "give --cache DIR or set ALPINIST_CACHE to a writable directory"
		return c
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		c.state, c.detail, c.fix = "not writable", err.Error(), "give --cache DIR or set ALPINIST_CACHE to a writable directory"
		return c
	}
	f.Close()
	os.Remove(f.Name())
	n, size, _ := dirUsage(filepath.Join(dir, "packages"))
	entries, _ := builder.Entries(dir)
	var rootfs int64
	for _, en := range entries {
		rootfs += en.Size
	}
	c.state = "ok"
	c.detail = fmt.Sprintf("%s: %d packages (%s), %d rootfs in the build cache (%s)", dir, n, humanSize(size), len(entries), humanSize(rootfs))
	return c
}

// diskCheck warns below 2 GiB free: a build needs its packages, a
// rootfs and the outputs.
func diskCheck(what, dir string) check {
	c := check{what: what}
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Statfs_t
		err := syscall.Statfs(d, &st)
		if errors.Is(err, os.ErrNotExist) && d != filepath.Dir(d) {
			continue
		}
		if err != nil {
			c.state, c.detail = "unknown", err.Error()
			return c
		}
		free := int64(st.Bavail) * int64(st.Bsize)
		c.state, c.detail = "ok", fmt.Sprintf("%s free in %s", humanSize(free), d)
		if free < 2<<30 {
			c.state, c.fix = "low", "free some space: a build needs its packages, the rootfs and the outputs (alpinist cache prune helps)"
		}
		return c
	}
}
