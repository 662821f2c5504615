// Package bootdisk is alpinist's boot-disk planner: every piece of boot
// policy, in one place. New(disk, arch) gives a Plan: the packages the
// disk adds to the world (its boot loaders), what the build VM
// configures (the serial console's getty, GRUB's EFI image), and what
// the host writes when it assembles the disk (the firmware, the
// partition table, /etc/fstab, the kernel command line, extlinux.conf,
// grub.cfg and update-extlinux.conf). The spec's disk: section is this
// package's Disk; the per-arch facts come from package arch.
package bootdisk

import (
	"slices"

	"github.com/alpinist/alpinist/arch"
)

// ESPMount is where the ESP is mounted in the system: the build leaves
// the ESP's files (GRUB's EFI image) there in the rootfs, and the disk
// copies them onto the ESP.
const ESPMount = "/boot/efi"

// ESPSize is the EFI system partition's size: FAT32 needs 33 MiB at
// least.
const ESPSize = 64 << 20

// BootDir is where the kernel and EXTLINUX go in the root file system,
// as Alpine's update-extlinux has it: /boot/ldlinux.sys, ldlinux.c32,
// extlinux.conf. It is the mount point of a separate /boot.
const BootDir = "boot"

// Disk describes the bootable disk image (the spec's disk: section).
type Disk struct {
	// Size in bytes; 0: computed from the content with headroom.
	Size int64
	// Table is gpt (the default) or mbr.
	Table string
	// Boot lists the firmware to boot from: bios, uefi (default: the
	// assembler picks for the architecture).
	Boot []string
	// Console is the serial console getty is started on and the kernel
	// writes to ("": the architecture's; "none": no serial console).
	Console string
	// Cmdline holds extra kernel arguments.
	Cmdline string
	// SeparateBoot puts /boot on a partition of its own (ext4) of
	// BootSize bytes (0: from the content, with headroom).
	SeparateBoot bool
	BootSize     int64
	// Compress stores the qcow2 output's clusters zstd-compressed;
	// CompressSet says the spec gave it, even as false (for extends).
	Compress, CompressSet bool
}

// Loaders are the boot loaders' packages per firmware, and what the
// error messages call them.
var Loaders = []struct{ Firmware, Package, Name string }{
	{"bios", "syslinux", "bios (extlinux)"},
	{"uefi", "grub-efi", "uefi (GRUB)"},
	{"ieee1275", "grub-ieee1275", "ieee1275 (GRUB on Open Firmware)"},
}

// PReP is the PReP boot partition's size, which holds GRUB's image for
// Open Firmware (ppc64le): 8 MiB, as grub-install asks.
const PReP = 8 << 20

// PRePGRUB is where the build leaves GRUB's Open Firmware image in the
// rootfs; the disk copies it into the PReP partition.
const PRePGRUB = "/boot/grub/powerpc-ieee1275/core.elf"

// GRUBModules are built into GRUB's EFI image (iso9660: the same image
// boots the live ISO, whose grub.cfg and kernel are on the ISO 9660).
var GRUBModules = []string{
	"part_gpt", "part_msdos", "fat", "ext2", "iso9660", "normal", "linux", "search", "search_fs_uuid", "search_label", "configfile", "echo",
	"serial", "terminal", "gzio", "efi_gop", "all_video", "sleep", "test",
}

// GRUB is the GRUB EFI image the build VM makes (grub-mkimage), as the
// agent's manifest carries it.
type GRUB struct {
	// Format is grub-mkimage's -O: x86_64-efi, arm64-efi, riscv64-efi.
	Format string `json:"format"`
	// Output is the image's path in the target, such as
	// /boot/efi/EFI/BOOT/BOOTX64.EFI.
	Output string `json:"output"`
	// Prefix is where GRUB finds grub.cfg on the ESP (/EFI/BOOT).
	Prefix string `json:"prefix"`
	// Modules are built into the image.
	Modules []string `json:"modules"`
	// Config is built into the image as its first configuration
	// (grub-mkimage -c): Open Firmware's GRUB has no ESP to find its
	// grub.cfg on, so it searches the file systems for it.
	Config string `json:"config,omitempty"`
}

// Plan is the boot policy of one disk for one architecture.
type Plan struct {
	Disk Disk
	Arch string
	// BIOS, UEFI and IEEE1275 are the firmware the disk boots from.
	BIOS, UEFI, IEEE1275 bool
	// Table is the partition table: gpt or mbr.
	Table string
	// Console is the serial console ("" for none).
	Console string
}

// New plans a disk for an architecture. A nil disk plans the default
// one (alpinist assemble of a tar without a spec).
func New(d *Disk, name string) Plan {
	if d == nil {
		d = &Disk{}
	}
	p := Plan{Disk: *d, Arch: name, Table: d.Table, Console: ConsoleFor(d.Console, name)}
	if p.Table == "" {
		p.Table = "gpt"
	}
	fw := Firmware(d.Boot, name)
	p.BIOS, p.UEFI, p.IEEE1275 = slices.Contains(fw, "bios"), slices.Contains(fw, "uefi"), slices.Contains(fw, "ieee1275")
	return p
}

// Firmware is what a disk for an arch boots from: boot when given, less
// BIOS on the architectures without one; by default BIOS and UEFI on x86
// and x86_64, UEFI elsewhere; nothing where alpinist boots no disk
// (Unbootable: s390x).
func Firmware(boot []string, name string) []string {
	if Unbootable(name) != "" {
		return nil
	}
	if a, _ := arch.Lookup(name); a.PReP {
		// Open Firmware only: given bios or uefi, nothing boots.
		if len(boot) == 0 || slices.Contains(boot, "ieee1275") {
			return []string{"ieee1275"}
		}
		return nil
	}
	if len(boot) == 0 {
		boot = []string{"bios", "uefi"}
	}
	boot = slices.DeleteFunc(slices.Clone(boot), func(b string) bool { return b == "ieee1275" })
	if arch.HasBIOS(name) {
		return boot
	}
	return slices.DeleteFunc(slices.Clone(boot), func(b string) bool { return b == "bios" })
}

// Unbootable says why alpinist makes no bootable disk for an arch, ""
// when it makes one (with the BIOS, or with UEFI and GRUB).
func Unbootable(name string) string {
	a, _ := arch.Lookup(name)
	if a.BIOS || a.GRUB != "" {
		return ""
	}
	switch name {
	case "s390x":
		return "s390x machines IPL from a disk that zipl (s390-tools) prepares, which alpinist does not write; build its container outputs, or ext4 for a disk you make bootable with zipl"
	case "armhf":
		return "armhf (ARMv6) boards boot with their own firmware (a Raspberry Pi's), not UEFI; build its container outputs or ext4, or armv7 for a UEFI disk"
	}
	return name + " boots neither with a PC BIOS nor with UEFI and GRUB here; build its container outputs or ext4"
}

// ConsoleFor gives the serial console of a disk's console setting ("":
// the arch's, "none": none, else itself), "" for none.
func ConsoleFor(console, name string) string {
	switch console {
	case "":
		return arch.SerialConsole(name)
	case "none":
		return ""
	}
	return console
}

// Firmware lists the plan's firmware: bios, uefi.
func (p Plan) Firmware() []string {
	var out []string
	if p.BIOS {
		out = append(out, "bios")
	}
	if p.UEFI {
		out = append(out, "uefi")
	}
	if p.IEEE1275 {
		out = append(out, "ieee1275")
	}
	return out
}

// Packages are the boot loaders the disk's firmware needs: syslinux
// (extlinux) for BIOS, grub-efi for UEFI.
func (p Plan) Packages() []string {
	var out []string
	for _, l := range Loaders {
		if (l.Firmware == "bios" && p.BIOS) || (l.Firmware == "uefi" && p.UEFI) || (l.Firmware == "ieee1275" && p.IEEE1275) {
			out = append(out, l.Package)
		}
	}
	return out
}

// LoaderName is what an error message calls a boot loader's package:
// "bios (extlinux)".
func LoaderName(pkg string) string {
	for _, l := range Loaders {
		if l.Package == pkg {
			return l.Name
		}
	}
	return pkg
}

// GRUBImage is the GRUB image the build VM makes for a UEFI disk (GRUB's
// EFI platform and the removable-media boot file
// EFI/BOOT/BOOT<ARCH>.EFI, arch.All's GRUB and EFIBoot), or nil when the
// disk does not boot with UEFI or UEFI does not boot the arch.
func (p Plan) GRUBImage() *GRUB {
	a, _ := arch.Lookup(p.Arch)
	if p.IEEE1275 && a.PReP {
		// Its first configuration finds the system's grub.cfg by its
		// path, on whichever file system has it.
		cfg := p.LoaderPath(BootDir + "/grub/grub.cfg")
		mods := append(slices.DeleteFunc(slices.Clone(GRUBModules), func(m string) bool { return m == "efi_gop" || m == "all_video" }), "search_fs_file")
		return &GRUB{Format: a.GRUB, Output: PRePGRUB, Prefix: "/" + BootDir + "/grub", Modules: mods,
			Config: "search --no-floppy --file --set=root " + cfg + "\nconfigfile " + cfg + "\n"}
	}
	if !p.UEFI || a.GRUB == "" {
		return nil
	}
	return &GRUB{Format: a.GRUB, Output: ESPMount + "/EFI/BOOT/" + a.EFIBoot, Prefix: "/EFI/BOOT", Modules: slices.Clone(GRUBModules)}
}
