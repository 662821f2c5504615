package qemu

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/alpinist/alpinist/arch"
)

// Profile says how to run a build VM for one target architecture.
type Profile struct {
	Arch   string // Alpine's name: x86_64, aarch64, ...
	Binary string // qemu-system-*
	// Machine and CPU are used under TCG; under KVM the CPU is "host".
	Machine string
	CPU     string
	// Console is the kernel's serial console device name.
	Console string
	// Transport is the virtio transport for disks and serial ports:
	// "pci" (virtio-*-pci) or "mmio" (virtio-*-device).
	Transport string
	// KVM: whether this arch can use KVM on a host of the same arch.
	KVM bool
	// BootArgs are kernel flags for a fast boot on this machine.
	BootArgs []string
	// MemoryAlignMiB: the machine's memory size is a multiple of it.
	MemoryAlignMiB int
	// DiskMachine boots disks with firmware ("": Machine).
	DiskMachine string
	// RAMBase: where a 32-bit ARM machine's RAM starts, for the build
	// VM's kernel unpacked as a uImage (arch.QEMU.RAMBase).
	RAMBase uint32
	// Tested: the profile boots in the test suite. Untested profiles are
	// the structure for adding an arch; building for one says so.
	Tested bool
}

// Profiles are the known architectures: arch.All's rows with a QEMU
// machine.
var Profiles = profiles()

func profiles() map[string]Profile {
	out := map[string]Profile{}
	for _, a := range arch.All {
		q := a.QEMU
		if q.Binary == "" {
			continue
		}
		out[a.Name] = Profile{Arch: a.Name, Binary: q.Binary, Machine: q.Machine, CPU: q.CPU, Console: a.Console,
			Transport: q.Transport, KVM: q.KVM, BootArgs: q.BootArgs, MemoryAlignMiB: q.MemoryAlignMiB, DiskMachine: q.DiskMachine, RAMBase: q.RAMBase, Tested: q.Tested}
	}
	return out
}

// Lookup returns the profile for an Alpine arch.
func Lookup(arch string) (Profile, error) {
	p, ok := Profiles[arch]
	if !ok {
		var names []string
		for n := range Profiles {
			names = append(names, n)
		}
		slices.Sort(names)
		return Profile{}, fmt.Errorf("qemu: no VM profile for arch %q (known: %s)", arch, strings.Join(names, ", "))
	}
	return p, nil
}

// Disk is a raw image attached as a virtio disk.
type Disk struct {
	Path     string
	ReadOnly bool
	// Serial names the disk for the guest (/dev/disk/by-id/virtio-SERIAL).
	Serial string
}

// VM is one build VM's configuration.
type VM struct {
	Profile Profile
	// Accel is "kvm" or "tcg".
	Accel string
	// MemoryMiB and CPUs size the VM.
	MemoryMiB int
	CPUs      int
	Kernel    string
	Initrd    string
	// Cmdline is appended to the profile's console and boot flags.
	Cmdline []string
	Disks   []Disk
	// QMP is the unix socket path for the control connection.
	QMP string
}

// Args is QEMU's command line (without the binary). The serial console
// goes to QEMU's stdout; nothing else is attached (no network, no
// display, no default devices or option ROMs); the VM never reboots.
func (v *VM) Args() ([]string, error) {
	p := v.Profile
	if v.Kernel == "" {
		return nil, fmt.Errorf("qemu: %s: no kernel", p.Arch)
	}
	if v.Accel != "kvm" && v.Accel != "tcg" {
		return nil, fmt.Errorf("qemu: accelerator %q (want kvm or tcg)", v.Accel)
	}
	if v.Accel == "kvm" && !p.KVM {
		return nil, fmt.Errorf("qemu: %s: no KVM support in this profile", p.Arch)
	}
	mem, cpus := v.MemoryMiB, v.CPUs
	if mem <= 0 {
		mem = 512
	}
	if cpus <= 0 {
		cpus = 1
	}
	if al := p.MemoryAlignMiB; al > 0 && mem%al != 0 {
		mem += al - mem%al
	}
	cpu := p.CPU
	if v.Accel == "kvm" {
		cpu = "host"
	}
	a := []string{
		"-machine", p.Machine, "-accel", v.Accel, "-cpu", cpu,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", v.Kernel,
	}
	if v.Initrd != "" {
		a = append(a, "-initrd", v.Initrd)
	}
	cmdline := append([]string{"console=" + p.Console}, p.BootArgs...)
	a = append(a, "-append", strings.Join(append(cmdline, v.Cmdline...), " "))
	dev := p.blockDevice()
	for i, d := range v.Disks {
		if strings.ContainsAny(d.Path, ",") {
			return nil, fmt.Errorf("qemu: disk path %q contains a comma", d.Path)
		}
		id := "disk" + strconv.Itoa(i)
		drive := "file=" + d.Path + ",format=raw,if=none,id=" + id + ",cache=unsafe"
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		devArg := dev + ",drive=" + id
		if d.Serial != "" {
			devArg += ",serial=" + d.Serial
		}
		a = append(a, "-drive", drive, "-device", devArg)
	}
	if v.QMP != "" {
		a = append(a, "-qmp", "unix:"+v.QMP+",server=on,wait=off")
	}
	return a, nil
}

// blockDevice is QEMU's virtio disk device on the profile's transport.
func (p Profile) blockDevice() string {
	switch p.Transport {
	case "mmio":
		return "virtio-blk-device"
	case "ccw":
		return "virtio-blk-ccw"
	}
	return "virtio-blk-pci"
}

// cdDevices attach the drive id as a CD on a virtio-scsi controller:
// every machine has one, SeaBIOS and UEFI boot from it, and virt
// kernels (Alpine's linux-virt) drive it.
func (p Profile) cdDevices(id string) []string {
	scsi := "virtio-scsi-pci"
	switch p.Transport {
	case "mmio":
		scsi = "virtio-scsi-device"
	case "ccw":
		scsi = "virtio-scsi-ccw"
	}
	return []string{"-device", scsi + ",id=cdscsi", "-device", "scsi-cd,drive=" + id + ",bus=cdscsi.0,bootindex=0"}
}

func (p Profile) netDevice() string {
	switch p.Transport {
	case "mmio":
		return "virtio-net-device"
	case "ccw":
		return "virtio-net-ccw"
	}
	return "virtio-net-pci"
}

// Find looks the profile's QEMU binary up in PATH, and says what to
// install when it is missing.
func (p *Profile) Find() (string, error) {
	bin, err := exec.LookPath(p.Binary)
	if err == nil {
		return bin, nil
	}
	return "", fmt.Errorf("%s is not installed (a %s VM needs it): %s", p.Binary, p.Arch, InstallHint(p.Binary))
}
