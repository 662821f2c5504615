package output

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/assembler/fat"
	"github.com/alpinist/alpinist/bootdisk"
)

// bootInfo is what a bootable output needs from the arch's rootfs,
// scanned once for all of them (scanBoot reads the whole tar).
func (s *Set) bootInfo(a *job) (*bootInfo, error) {
	if a.boot == nil {
		info, err := scanBoot(a.Tar)
		if err != nil {
			return nil, err
		}
		a.boot = info
	}
	return a.boot, nil
}

// bootPlan is a bootable output's boot plan (what: "a disk", "the
// ISO"): the spec's disk: firmware, or for assemble without disk.boot
// the boot loaders the rootfs has (biosLoader: the one BIOS boot would
// take, extlinux or ISOLINUX); checked for a kernel and, for UEFI,
// GRUB's EFI image. Each output checks its BIOS loader itself.
func (s *Set) bootPlan(a *job, info *bootInfo, what string, biosLoader bool) (bootdisk.Plan, error) {
	plan := bootdisk.New(s.p.Spec.Disk, a.Arch)
	if s.p.AutoBoot && (s.p.Spec.Disk == nil || len(s.p.Spec.Disk.Boot) == 0) {
		plan.BIOS = biosLoader && arch.HasBIOS(a.Arch)
		plan.UEFI = info.efi != nil
		if !plan.BIOS && !plan.UEFI {
			return plan, fmt.Errorf("the rootfs has no boot loader to boot %s with: install syslinux for BIOS (x86), or put GRUB's EFI image in /%sEFI/BOOT/ for UEFI (grub-install --efi-directory=%s --removable), or build it with alpinist build and a disk: section", what, efiDir, ESPMount)
		}
	}
	if !plan.BIOS && !plan.UEFI && !plan.IEEE1275 {
		return plan, fmt.Errorf("disk.boot: %s boots with neither bios nor uefi (bios is for x86 and x86_64)", a.Arch)
	}
	if info.kernel == "" {
		return plan, fmt.Errorf("the system has no kernel (/boot/vmlinuz-*) to boot %s with: add one, such as linux-virt", what)
	}
	if plan.IEEE1275 && info.prep == nil {
		return plan, fmt.Errorf("the rootfs has no GRUB image for Open Firmware at %s (alpinist build makes it when the spec has a disk: for %s)", bootdisk.PRePGRUB, a.Arch)
	}
	if plan.UEFI && info.efi == nil {
		return plan, fmt.Errorf("the rootfs has no GRUB EFI image under /%s (alpinist build makes it when the spec has a disk: that boots with uefi)", efiDir)
	}
	return plan, nil
}

// bootInfo is what the bootable outputs need from the rootfs.
type bootInfo struct {
	kernel, initrd string // boot/vmlinuz-FLAVOR, boot/initramfs-FLAVOR
	efi            []fat.File
	prep           []byte // GRUB's Open Firmware image (bootdisk.PRePGRUB)
	digest         []byte
	// extlinux is the extlinux program (at extlinuxPath), mbrCode
	// syslinux's MBR boot code by name (mbr.bin, gptmbr.bin).
	extlinux     []byte
	extlinuxPath string
	mbrCode      map[string][]byte
	// isolinux are syslinux's ISOLINUX files by name (isolinux.bin,
	// isohdpfx.bin, ldlinux.c32), for the live ISO.
	isolinux       map[string][]byte
	updateExtlinux []byte // etc/update-extlinux.conf (nil: none)
	fsckVfat       bool   // the system can check a FAT file system (dosfstools)
}

// scanBoot reads the rootfs tar for the kernel, its initramfs, the ESP's
// files, syslinux's files, and its digest.
func scanBoot(tarPath string) (*bootInfo, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(f, h))
	info := &bootInfo{mbrCode: map[string][]byte{}, isolinux: map[string][]byte{}}

	var kernels []string
	initrds := map[string]bool{}
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("rootfs tar: %w", err)
		}
		name := strings.TrimPrefix(hd.Name, "./")
		if name == "sbin/fsck.vfat" || name == "usr/sbin/fsck.vfat" {
			info.fsckVfat = true
		}
		switch {
		case hd.Typeflag != tar.TypeReg:
		case strings.HasPrefix(name, "boot/vmlinuz-"):
			kernels = append(kernels, name)
		case strings.HasPrefix(name, "boot/initramfs-"):
			initrds[name] = true
		case "/"+name == bootdisk.PRePGRUB:
			if info.prep, err = readSmall(tr, name, bootdisk.PReP); err != nil {
				return nil, err
			}
		case strings.HasPrefix(name, efiDir):
			data, err := readSmall(tr, name, 32<<20)
			if err != nil {
				return nil, err
			}
			info.efi = append(info.efi, fat.File{Path: strings.TrimPrefix(name, efiDir), Data: data})
		case path.Base(name) == "extlinux" && info.extlinux == nil && hd.Size < 16<<20:
			// The program (a wrapper script may share its name).
			data, err := readSmall(tr, name, 16<<20)
			if err != nil {
				return nil, err
			}
			if bytes.HasPrefix(data, []byte("\x7fELF")) {
				info.extlinux, info.extlinuxPath = data, name
			}
		case (path.Dir(name) == "usr/share/syslinux" || path.Dir(name) == "usr/lib/syslinux/mbr") && (path.Base(name) == "mbr.bin" || path.Base(name) == "gptmbr.bin"):
			data, err := readSmall(tr, name, 440)
			if err != nil {
				return nil, err
			}
			info.mbrCode[path.Base(name)] = data
		case path.Dir(name) == "usr/share/syslinux" && slices.Contains(isolinuxFiles, path.Base(name)):
			data, err := readSmall(tr, name, 1<<20)
			if err != nil {
				return nil, err
			}
			info.isolinux[path.Base(name)] = data
		case name == "etc/update-extlinux.conf":
			if info.updateExtlinux, err = readSmall(tr, name, 1<<20); err != nil {
				return nil, err
			}
		}
	}
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	info.digest = h.Sum(nil)
	slices.Sort(kernels)
	if len(kernels) > 0 {
		// virt first, as Alpine's VM images boot it; else the first.
		info.kernel = kernels[0]
		if slices.Contains(kernels, "boot/vmlinuz-virt") {
			info.kernel = "boot/vmlinuz-virt"
		}
		if ir := "boot/initramfs-" + strings.TrimPrefix(info.kernel, "boot/vmlinuz-"); initrds[ir] {
			info.initrd = ir
		}
	}
	return info, nil
}

// readSmall reads a file of the rootfs tar that must be small.
func readSmall(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("rootfs tar: /%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("rootfs tar: /%s: larger than %d bytes", name, limit)
	}
	return b, nil
}
