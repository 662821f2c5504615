package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alpinist/alpinist/arch"
)

// Firmware is a UEFI firmware: its code and the variable store template
// (copied for each VM, which writes it).
type Firmware = arch.Firmware

// firmwares are where distributions put QEMU's UEFI firmware, per arch,
// and what to install when none is found (arch.All's Firmware).
var firmwares = firmwareTable()

func firmwareTable() map[string]struct {
	paths   []Firmware
	install string
} {
	out := map[string]struct {
		paths   []Firmware
		install string
	}{}
	for _, a := range arch.All {
		if len(a.QEMU.Firmware) > 0 {
			out[a.Name] = struct {
				paths   []Firmware
				install string
			}{a.QEMU.Firmware, InstallHint(strings.ToLower(a.QEMU.FirmwareName))}
		}
	}
	return out
}

// FindUEFI finds arch's UEFI firmware on this host.
func FindUEFI(arch string) (Firmware, error) {
	f, ok := firmwares[arch]
	if !ok {
		return Firmware{}, fmt.Errorf("qemu: no UEFI firmware known for %s", arch)
	}
	for _, fw := range f.paths {
		if _, err := os.Stat(fw.Code); err != nil {
			continue
		}
		if _, err := os.Stat(fw.Vars); err != nil && !fw.Payload {
			continue
		}
		return fw, nil
	}
	return Firmware{}, fmt.Errorf("qemu: no UEFI firmware for %s found (looked for %s); install it: %s", arch, f.paths[0].Code, f.install)
}

// DiskVM is a VM that boots a disk image with its firmware: what
// alpinist run starts.
type DiskVM struct {
	Profile   Profile
	Accel     string
	MemoryMiB int
	CPUs      int
	// Image is a raw or qcow2 disk image, Format "raw" or "qcow2".
	Image, Format string
	// Media is how the image is attached: "" or "disk" (a virtio
	// disk), "cdrom" (a CD drive on virtio-scsi) or "usb" (a USB stick
	// on an XHCI controller).
	Media string
	// Snapshot leaves the image unchanged (writes go to a temporary file).
	Snapshot bool
	// UEFI, when Code is set, boots with that firmware; Vars is the
	// VM's own copy of the variable store.
	UEFI Firmware
	// Monitor multiplexes QEMU's monitor on the console (Ctrl-A C), and
	// Ctrl-A X quits: for an interactive terminal.
	Monitor bool
	// Seed is a NoCloud seed image (NoCloudSeed) attached read-only as
	// a second disk ("": none).
	Seed string
	// Forwards are TCP ports of the host's loopback forwarded to the
	// guest through its network card (QEMU's user-mode networking, which
	// every disk VM gets: a DHCP server at 10.0.2.2, the host's network
	// behind NAT).
	Forwards []Forward
}

// Forward is a TCP port forwarded from 127.0.0.1:Host to the guest's
// Guest port.
type Forward struct{ Host, Guest int }

// ParseForward reads "HOST:GUEST" ("2222:22"), two TCP ports.
func ParseForward(s string) (Forward, error) {
	h, g, ok := strings.Cut(s, ":")
	hp, herr := strconv.Atoi(h)
	gp, gerr := strconv.Atoi(g)
	if !ok || herr != nil || gerr != nil || hp < 1 || hp > 65535 || gp < 1 || gp > 65535 {
		return Forward{}, fmt.Errorf("forward %q: want HOST:GUEST, two TCP ports such as 2222:22", s)
	}
	return Forward{hp, gp}, nil
}

// Args is QEMU's command line for a disk VM: the serial console on
// stdio, no display, a virtio disk.
func (v *DiskVM) Args() ([]string, error) {
	p := v.Profile
	if v.Accel != "kvm" && v.Accel != "tcg" {
		return nil, fmt.Errorf("qemu: accelerator %q (want kvm or tcg)", v.Accel)
	}
	if v.Format != "raw" && v.Format != "qcow2" {
		return nil, fmt.Errorf("qemu: image format %q (want raw or qcow2)", v.Format)
	}
	if strings.Contains(v.Image, ",") {
		return nil, fmt.Errorf("qemu: image path %q contains a comma", v.Image)
	}
	cpu := p.CPU
	if v.Accel == "kvm" {
		cpu = "host"
	}
	mem, cpus := max(v.MemoryMiB, 256), max(v.CPUs, 1)
	serial := "stdio"
	if v.Monitor {
		serial = "mon:stdio"
	}
	machine := p.Machine
	if p.DiskMachine != "" {
		machine = p.DiskMachine
	}
	if al := p.MemoryAlignMiB; al > 0 && mem%al != 0 {
		mem += al - mem%al
	}
	if v.UEFI.Secure {
		machine += ",smm=on"
	}
	a := []string{"-machine", machine, "-accel", v.Accel, "-cpu", cpu, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", serial}
	if v.UEFI.Secure {
		a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	switch {
	case v.UEFI.Payload:
		a = append(a, "-kernel", v.UEFI.Code)
	case v.UEFI.Code != "":
		a = append(a, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+v.UEFI.Code,
			"-drive", "if=pflash,format=raw,unit=1,file="+v.UEFI.Vars)
	}
	drive := "file=" + v.Image + ",format=" + v.Format + ",if=none,id=disk"
	if v.Snapshot {
		drive += ",snapshot=on"
	}
	netdev := "user,id=net0"
	for _, f := range v.Forwards {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.Host, f.Guest)
	}
	switch v.Media {
	case "", "disk":
		a = append(a, "-drive", drive, "-device", p.blockDevice()+",drive=disk")
	case "cdrom":
		a = append(a, "-drive", strings.Replace(drive, ",snapshot=on", "", 1)+",media=cdrom,readonly=on")
		a = append(a, p.cdDevices("disk")...)
	case "usb":
		a = append(a, "-drive", drive, "-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=disk,removable=on,bootindex=0")
	default:
		return nil, fmt.Errorf("qemu: media %q (want disk, cdrom or usb)", v.Media)
	}
	if v.Seed != "" {
		if strings.Contains(v.Seed, ",") {
			return nil, fmt.Errorf("qemu: seed path %q contains a comma", v.Seed)
		}
		a = append(a, "-drive", "file="+v.Seed+",format=raw,if=none,id=seed,readonly=on", "-device", p.blockDevice()+",drive=seed")
	}
	return append(a, "-netdev", netdev, "-device", p.netDevice()+",netdev=net0"), nil
}

// RunUntil runs QEMU (bin with args), copying its console to out, until
// text appears on it (then it stops QEMU and returns nil) or timeout
// passes.
func RunUntil(ctx context.Context, bin string, args []string, out io.Writer, text string, timeout time.Duration) error {
	return Console{Bin: bin, Args: args, Out: out, Until: text, Timeout: timeout}.Run(ctx)
}
