package output

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/assembler/disk"
	"github.com/alpinist/alpinist/assembler/extlinux"
	"github.com/alpinist/alpinist/assembler/fat"
	"github.com/alpinist/alpinist/assembler/iso"
	"github.com/alpinist/alpinist/assembler/tarball"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/rootfstar"
)

// isolinuxFiles are what the live ISO takes from syslinux
// (/usr/share/syslinux): ISOLINUX, its module loader, and the isohybrid
// MBR that starts it from a disk.
var isolinuxFiles = []string{"isolinux.bin", "ldlinux.c32", "isohdpfx.bin"}

// LiveModules are what the live ISO's initramfs loads (those its kernel
// has as modules) to find the ISO: as a CD on SATA (AHCI), IDE or
// virtio-scsi, or as a disk on virtio, SCSI, NVMe or USB.
var LiveModules = []string{
	"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_scsi", "sd_mod", "sr_mod", "cdrom", "isofs",
	"ahci", "ata_piix", "nvme", "xhci_pci", "ehci_pci", "uhci_hcd", "ohci_pci", "usb_storage", "uas",
}

// The live ISO's layout, as Alpine's ISOs have it.
const (
	isoKernelDir = "boot/"
	isoInitrd    = "boot/initramfs-live"
	isoSyslinux  = "boot/syslinux/"
	isoEFIImage  = "boot/grub/efi.img"
	isoGRUBCfg   = "EFI/BOOT/grub.cfg" // on the ISO and in its EFI image
)

// iso writes the arch's live system on a bootable hybrid ISO: the kernel,
// an initramfs of alpinist's agent that unpacks the rootfs into memory
// (root=live:LABEL=), ISOLINUX for BIOS, GRUB in an El Torito EFI image
// for UEFI, and the rootfs as rootfs.tar.gz.
func (s *Set) iso(o Output, a *job) (string, error) {
	info, err := s.bootInfo(a)
	if err != nil {
		return "", err
	}
	plan, err := s.isoPlan(a, info)
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(s.workDir(), "iso-"+a.Arch+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)

	kit, err := initramfs.KitFromTar(a.Tar, work, LiveModules)
	if err != nil {
		return "", err
	}
	agent, err := embed.Agent(a.Arch)
	if err != nil {
		return "", err
	}
	ar, err := initramfs.WithAgent(agent, kit)
	if err != nil {
		return "", err
	}
	initrd, err := ar.Bytes()
	if err != nil {
		return "", err
	}
	label := isoLabel(s.p.Spec.Name, a.Arch)
	kernel := isoKernelDir + filepath.Base(info.kernel)
	files := []iso.File{
		{Path: kernel, Source: kit.Kernel},
		{Path: isoInitrd, Data: initrd},
		{Path: rootfstar.LiveTar, Source: filepath.Join(work, rootfstar.LiveTar)},
	}
	// The rootfs, gzip'ed: the tar.gz output's when it is one.
	if slices.Contains(s.p.Outputs, "tar.gz") {
		files[2].Source = s.path(Output{File: perArch(".tar.gz")}, a.Arch)
	} else if err := tarball.WriteFile(s.p.Context, files[2].Source, a.Tar, "tar.gz"); err != nil {
		return "", err
	}
	seed := append([]byte(s.p.Spec.Name+"\x00"+a.Arch+"\x00iso\x00"), info.digest...)
	o2 := iso.Options{VolumeID: label, SystemID: "LINUX", Preparer: "alpinist", Time: s.p.Created, Seed: seed, Hybrid: true}
	if plan.BIOS {
		conf := extlinux.Config{Name: "isolinux.cfg", Serial: plan.Serial(), Kernel: "/" + kernel, Initrd: "/" + isoInitrd, Append: plan.LiveCmdline(label)}
		files = append(files,
			iso.File{Path: isoSyslinux + "isolinux.bin", Data: info.isolinux["isolinux.bin"]},
			iso.File{Path: isoSyslinux + "ldlinux.c32", Data: info.isolinux["ldlinux.c32"]},
			iso.File{Path: isoSyslinux + "isolinux.cfg", Data: []byte(conf.String())})
		o2.Boot = append(o2.Boot, iso.Boot{Path: isoSyslinux + "isolinux.bin", LoadSectors: 4, InfoTable: true})
		o2.HybridMBR = info.isolinux["isohdpfx.bin"]
		o2.Catalog = isoSyslinux + "boot.cat"
	}
	if plan.UEFI {
		cfg := []byte(plan.LiveGRUBConfig(label, "/"+kernel, "/"+isoInitrd))
		img := filepath.Join(work, "efi.img")
		if err := writeEFIImage(img, append(slices.Clone(info.efi), fat.File{Path: isoGRUBCfg, Data: cfg}), seed, s.p.Created); err != nil {
			return "", err
		}
		files = append(files, iso.File{Path: isoEFIImage, Source: img}, iso.File{Path: isoGRUBCfg, Data: cfg})
		o2.Boot = append(o2.Boot, iso.Boot{Path: isoEFIImage, EFI: true})
		if o2.Catalog == "" {
			o2.Catalog = "boot/grub/boot.cat"
		}
	}
	p := s.path(o, a.Arch)
	if err := iso.WriteFile(s.p.Context, p, files, o2); err != nil {
		return "", err
	}
	return p, nil
}

// isoPlan is the live ISO's boot plan (bootPlan), with ISOLINUX for
// BIOS.
func (s *Set) isoPlan(a *job, info *bootInfo) (bootdisk.Plan, error) {
	hasISOLINUX := len(info.isolinux) == len(isolinuxFiles)
	plan, err := s.bootPlan(a, info, "the ISO", hasISOLINUX)
	if err != nil || !plan.BIOS || hasISOLINUX {
		return plan, err
	}
	var missing []string
	for _, f := range isolinuxFiles {
		if info.isolinux[f] == nil {
			missing = append(missing, "/usr/share/syslinux/"+f)
		}
	}
	return plan, fmt.Errorf("BIOS boot of an ISO needs ISOLINUX, and the system has no %s (package syslinux)", strings.Join(missing, ", "))
}

// isoLabel is the live ISO's volume ID: NAME-ARCH, at most 32 bytes.
func isoLabel(name, arch string) string {
	return name[:min(len(name), 31-len(arch))] + "-" + arch
}

// writeEFIImage writes the El Torito EFI image: a FAT of files, a whole
// number of MiB with room to spare, at least 4 MiB.
func writeEFIImage(p string, files []fat.File, seed []byte, created time.Time) error {
	var size int64
	for _, f := range files {
		size += int64(len(f.Data)+511) &^ 511
	}
	size = max(4<<20, (size+size/8+1<<20+1<<20-1)&^(1<<20-1))
	return atomicfile.WriteFile(p, 0o644, func(f *os.File) error {
		if err := f.Truncate(size); err != nil {
			return err
		}
		return fat.Write(f, 0, size, files, fat.Options{Label: "EFIBOOT", VolumeID: disk.VolumeID(append(slices.Clone(seed), "efi image"...)), Time: created})
	})
}
