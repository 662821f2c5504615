package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/assembler/disk"
	"github.com/alpinist/alpinist/assembler/iso"
	"github.com/alpinist/alpinist/assembler/qcow2"
	"github.com/alpinist/alpinist/qemu"
)

type runFlags struct {
	arch, accel, until  string
	bios, uefi, persist bool
	media               string
	memory, cpus        int
	timeout             time.Duration
	forward             []string
	cloudInit, metaData string
}

func newRunCmd(e *env) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run IMAGE",
		Short: "Boot a disk image or a live ISO in QEMU, on a serial console",
		Long: `run boots a raw or qcow2 disk image (alpinist's raw and qcow2 outputs) in
QEMU with the serial console on this terminal: KVM when it works for the
image's architecture, TCG emulation otherwise. The firmware follows the
disk: UEFI when it has an EFI system partition (the firmware is looked for
where distributions put it), else the BIOS (SeaBIOS, x86) when its MBR has
boot code and a bootable partition; --bios or --uefi chooses.

An ISO (the iso output) goes in a CD drive (virtio-scsi), or with
--media usb on a USB stick, or with --media disk as a virtio disk (the
same file boots all three: it is hybrid); it boots with UEFI when its El
Torito catalog has an EFI entry, else with the BIOS. Its live system runs
from memory: give it --memory enough for the rootfs and its work.

Writes go to a temporary overlay: the image is left as it was, unless
--persist. In a terminal, Ctrl-A X quits and Ctrl-A C is QEMU's monitor.

The VM has a network card on QEMU's user-mode network: its DHCP gives
eth0 10.0.2.15 and the host's network behind NAT. --forward HOST:GUEST
forwards the host's 127.0.0.1:HOST to the guest's TCP port GUEST, to
reach its services: with --forward 2222:22, log in over SSH with
"ssh -p 2222 USER@127.0.0.1" (the key from the spec's users:).

--cloud-init USER-DATA attaches a NoCloud seed, a read-only ISO 9660
volume labeled cidata holding user-data (the file) and meta-data
(--meta-data FILE, else an instance-id and the hostname a #cloud-config
or #alpine-config user data names): what a system built with cloud:
nocloud or cloud: alpine (Alpine's tiny-cloud), or with cloud-init,
configures itself from at its first boot.

--until TEXT runs without a terminal: the console is copied to stdout,
and run stops QEMU and succeeds when TEXT appears (such as "login:"),
or fails after --timeout.`,
		Example: `  alpinist run out/web-x86_64.qcow2
  alpinist run out/web-aarch64.qcow2 --memory 1024
  alpinist run out/web-x86_64.qcow2 --forward 2222:22   # then: ssh -p 2222 alice@127.0.0.1
  alpinist run out/demo-x86_64.qcow2 --until "login:" --timeout 5m
  alpinist run out/demo-x86_64.iso --bios --media usb --memory 1024
  alpinist run out/cloud-x86_64.qcow2 --cloud-init user-data.yaml --forward 2222:22`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImage(cmd.Context(), e, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.arch, "arch", "", "the image's architecture (default: from its name NAME-ARCH.qcow2, else the host's)")
	fl.StringVar(&f.accel, "accel", "", "force kvm or tcg (default: probe KVM)")
	fl.BoolVar(&f.bios, "bios", false, "boot with the BIOS (SeaBIOS; x86 only)")
	fl.BoolVar(&f.uefi, "uefi", false, "boot with UEFI")
	fl.BoolVar(&f.persist, "persist", false, "write to the image itself")
	fl.StringVar(&f.media, "media", "", "attach an ISO as a `cdrom` (its default), a usb stick or a disk")
	fl.IntVar(&f.memory, "memory", 512, "memory in MiB")
	fl.IntVar(&f.cpus, "cpus", 1, "CPUs")
	fl.StringVar(&f.until, "until", "", "stop and succeed when the console shows `TEXT`")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "with --until: how long to wait")
	fl.StringArrayVar(&f.forward, "forward", nil, "forward the host's 127.0.0.1:`HOST:GUEST` TCP port to the guest's (repeatable)")
	fl.StringVar(&f.cloudInit, "cloud-init", "", "attach a NoCloud seed (a cidata volume) with this `USER-DATA` file, for tiny-cloud or cloud-init")
	fl.StringVar(&f.metaData, "meta-data", "", "with --cloud-init: the seed's meta-data `FILE` (default: an instance-id, and the hostname the user data names)")
	return cmd
}

var imageArchRE = regexp.MustCompile(`-(` + strings.Join(arch.Names(), "|") + `)\.(qcow2|raw|img|iso)$`)

// cloudSeed makes the NoCloud seed of --cloud-init and --meta-data in a
// temporary directory, removed by cleanup.
func cloudSeed(userData, metaData string) (string, func(), error) {
	if userData == "" {
		return "", nil, errors.New("--meta-data goes with --cloud-init USER-DATA")
	}
	ud, err := os.ReadFile(userData)
	if err != nil {
		return "", nil, fmt.Errorf("--cloud-init: %w", err)
	}
	var md []byte
	if metaData != "" {
		if md, err = os.ReadFile(metaData); err != nil {
			return "", nil, fmt.Errorf("--meta-data: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "alpinist-seed-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	p, err := qemu.NoCloudSeed(dir, ud, md)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return p, cleanup, nil
}

func runImage(ctx context.Context, e *env, image string, f runFlags) error {
	head := make([]byte, 4)
	in, err := os.Open(image)
	if err != nil {
		return err
	}
	io.ReadFull(in, head)
	in.Close()
	format := "raw"
	if string(head) == "QFI\xfb" {
		format = "qcow2"
	}
	name := f.arch
	if name == "" {
		if m := imageArchRE.FindStringSubmatch(image); m != nil {
			name = m[1]
		} else {
			name = arch.Host()
		}
	}
	prof, err := qemu.Lookup(name)
	if err != nil {
		return err
	}
	bin, err := prof.Find()
	if err != nil {
		return err
	}
	accel, auto := f.accel, f.accel == ""
	if auto {
		accel = "tcg"
		if prof.KVM && name == arch.Host() && qemu.DetectKVM(ctx, bin, cacheDir(), e.log).Usable {
			accel = "kvm"
		}
	}
	abs, err := filepath.Abs(image)
	if err != nil {
		return err
	}
	v := &qemu.DiskVM{Profile: prof, Accel: accel, MemoryMiB: f.memory, CPUs: f.cpus, Image: abs, Format: format, Snapshot: !f.persist}
	if f.cloudInit != "" || f.metaData != "" {
		seed, cleanup, err := cloudSeed(f.cloudInit, f.metaData)
		if err != nil {
			return err
		}
		defer cleanup()
		v.Seed = seed
	}
	for _, s := range f.forward {
		fw, err := qemu.ParseForward(s)
		if err != nil {
			return fmt.Errorf("--%w", err)
		}
		v.Forwards = append(v.Forwards, fw)
	}
	bios, err := attach(e, v, image, name, f)
	if err != nil {
		return err
	}
	if a, _ := arch.Lookup(name); a.PReP {
		// Open Firmware (SLOF) is QEMU's own: it boots the PReP partition.
		if f.bios || f.uefi {
			return fmt.Errorf("--bios, --uefi: %s disks boot with Open Firmware (SLOF), QEMU's own", name)
		}
	} else if !bios {
		fw, err := qemu.FindUEFI(name)
		if err != nil {
			return err
		}
		if v.UEFI = fw; !fw.Payload {
			vars, err := os.CreateTemp("", "alpinist-efivars-*.fd")
			if err != nil {
				return err
			}
			defer os.Remove(vars.Name())
			src, err := os.Open(fw.Vars)
			if err == nil {
				_, err = io.Copy(vars, src)
				src.Close()
			}
			if err = errors.Join(err, vars.Close()); err != nil {
				return fmt.Errorf("UEFI variables: %w", err)
			}
			v.UEFI.Vars = vars.Name()
		}
	}
	v.Monitor = f.until == "" && isTerminal(e.stdout)
	if v.Monitor {
		fmt.Fprintln(e.stderr, "alpinist run: Ctrl-A X quits, Ctrl-A C is QEMU's monitor")
	}
	// Under KVM, a VM that fails for KVM's sake is booted again under
	// TCG (from the same image: a snapshot, or one that never got up).
	fallback := qemu.KVMFallback{Bin: bin, Dir: cacheDir(), Source: "run", Log: e.log}
	for {
		args, err := v.Args()
		if err != nil {
			return err
		}
		e.log.Info("booting", "image", image, "arch", name, "format", format, "accel", v.Accel, "uefi", !bios)
		err = qemu.Console{Bin: bin, Args: args, In: e.stdin, Out: e.stdout, Until: f.until, Timeout: f.timeout, KVM: v.Accel == "kvm"}.Run(ctx)
		if auto && ctx.Err() == nil && fallback.Failed(err) {
			v.Accel = "tcg"
			continue
		}
		if err != nil {
			return err
		}
		if auto && v.Accel == "tcg" {
			fallback.Done("tcg", 0) // under KVM, run knows no ready time: the build VM's answer stands
		}
		break
	}
	if f.until != "" {
		fmt.Fprintf(e.stdout, "\nalpinist run: %q appeared on the console\n", f.until)
	}
	return nil
}

// cacheDir is the default cache directory (for the host's KVM answer),
// or "" for none.
func cacheDir() string {
	d, _ := repo.DefaultCacheDir()
	return d
}

// attach says how the image goes in the VM (an ISO as a CD, a USB stick
// or a disk) and whether it boots with the BIOS: --bios or --uefi, else
// what the image has.
func attach(e *env, v *qemu.DiskVM, image, name string, f runFlags) (bios bool, err error) {
	isoFW, err := detectISO(image, v.Format)
	if err != nil {
		return false, err
	}
	switch {
	case f.media != "" && f.media != "cdrom" && f.media != "usb" && f.media != "disk":
		return false, fmt.Errorf("--media %q: want cdrom, usb or disk", f.media)
	case isoFW.ISO && f.media == "":
		v.Media = "cdrom"
		if a, _ := arch.Lookup(name); a.QEMU.NoCDROM {
			// The hybrid ISO boots as a disk too.
			v.Media = "disk"
		}
	case isoFW.ISO:
		v.Media = f.media
	case f.media != "" && f.media != "disk":
		return false, fmt.Errorf("--media %s: %s is no ISO 9660 image (disk images boot as disks)", f.media, image)
	}
	switch {
	case f.bios && f.uefi:
		return false, errors.New("--bios and --uefi: choose one")
	case f.bios && !arch.HasBIOS(name):
		return false, fmt.Errorf("--bios: %s boots with UEFI only", name)
	case f.bios || f.uefi:
		return f.bios, nil
	case isoFW.ISO:
		if !isoFW.BIOS && !isoFW.EFI {
			e.log.Warn("the ISO has no El Torito boot entry: trying anyway", "image", image)
		}
		return arch.HasBIOS(name) && !isoFW.EFI, nil
	}
	return detectBIOS(e, image, v.Format, name), nil
}

// detectISO reads an image's El Torito boot catalog, when it is an ISO
// 9660 image.
func detectISO(image, format string) (iso.Firmware, error) {
	if format != "raw" {
		return iso.Firmware{}, nil
	}
	f, err := os.Open(image)
	if err != nil {
		return iso.Firmware{}, err
	}
	defer f.Close()
	fw, err := iso.Detect(f)
	if err != nil {
		return fw, fmt.Errorf("%s: %w", image, err)
	}
	return fw, nil
}

// detectBIOS tells whether a disk boots with the BIOS rather than UEFI:
// when it has BIOS boot code and no EFI system partition (x86 only).
func detectBIOS(e *env, image, format, name string) bool {
	if !arch.HasBIOS(name) {
		return false
	}
	f, err := os.Open(image)
	if err != nil {
		return false
	}
	defer f.Close()
	var r io.ReaderAt = f
	if format == "qcow2" {
		q, err := qcow2.NewReader(f)
		if err != nil {
			e.log.Warn("cannot read the image's partition table: booting with UEFI", "image", image, "err", err)
			return false
		}
		r = q
	}
	fw, err := disk.Detect(r)
	switch {
	case err != nil:
		e.log.Warn("cannot read the image's partition table: booting with UEFI", "image", image, "err", err)
		return false
	case fw.UEFI:
		return false
	case !fw.BIOS:
		e.log.Warn("the image has neither an EFI system partition nor BIOS boot code: trying the BIOS", "image", image)
	}
	return true
}
