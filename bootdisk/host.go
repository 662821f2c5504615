package bootdisk

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The host's steps: the files the assembler writes into the system and
// onto the ESP, by the UUIDs of its file systems.

// IDs are the disk's file systems' UUIDs, as blkid and fstab write them.
type IDs struct {
	Root, Boot string // lower-case, dashed
	ESP        string // the FAT volume ID, XXXX-XXXX
}

// Fstab is /etc/fstab as setup-disk writes it: the file systems by UUID
// (the ESP checked at boot, pass 2, when the system has fsck.vfat), then
// its cdrom, usbdisk and tmpfs lines.
func (p Plan) Fstab(ids IDs, fsckVfat bool) string {
	fstab := "UUID=" + ids.Root + "\t/\text4\trw,relatime 0 1\n"
	if p.Disk.SeparateBoot {
		fstab += "UUID=" + ids.Boot + "\t/" + BootDir + "\text4\trw,relatime 0 2\n"
	}
	if p.UEFI {
		pass := "0"
		if fsckVfat {
			pass = "2"
		}
		fstab += "UUID=" + ids.ESP + "\t" + ESPMount + "\tvfat\trw,relatime,fmask=0133,dmask=0022 0 " + pass + "\n"
	}
	return fstab + "/dev/cdrom\t/media/cdrom\tiso9660\tnoauto,ro 0 0\n" +
		"/dev/usbdisk\t/media/usb\tvfat\tnoauto\t0 0\n" +
		"tmpfs\t/tmp\ttmpfs\tnosuid,nodev\t0\t0\n"
}

// kernelOpts are the kernel's arguments after root=: rw, the console,
// the spec's cmdline.
func (p Plan) kernelOpts() string {
	opts := "rw"
	if p.Console != "" {
		opts += " console=" + p.Console
	}
	if p.Disk.Cmdline != "" {
		opts += " " + p.Disk.Cmdline
	}
	return opts
}

// Cmdline is the kernel command line the boot loaders pass.
func (p Plan) Cmdline(ids IDs) string {
	return "root=UUID=" + ids.Root + " " + p.kernelOpts()
}

// LiveCmdline is the kernel command line of a live ISO's system: the
// agent's initramfs finds the ISO by its label (root=live:LABEL=).
func (p Plan) LiveCmdline(label string) string {
	return "root=live:LABEL=" + label + " " + p.kernelOpts()
}

// LiveGRUBConfig is a live ISO's grub.cfg: the ISO found by its label,
// its kernel and initramfs (absolute paths on it).
func (p Plan) LiveGRUBConfig(label, kernel, initrd string) string {
	return "# grub.cfg, written by alpinist\nset timeout=0\n" +
		"search --no-floppy --label --set=root " + label + "\n" +
		"linux " + kernel + " " + p.LiveCmdline(label) + "\n" +
		"initrd " + initrd + "\n" +
		"boot\n"
}

// Serial is the BIOS serial port EXTLINUX talks on (ttyS0-3), or -1.
func (p Plan) Serial() int {
	if n, ok := strings.CutPrefix(p.Console, "ttyS"); ok {
		if port, err := strconv.Atoi(n); err == nil && port < 4 {
			return port
		}
	}
	return -1
}

// LoaderPath is a rootfs file (boot/vmlinuz-virt) as the boot loaders
// see it: on its own /boot file system, or on the root's.
func (p Plan) LoaderPath(name string) string {
	if p.Disk.SeparateBoot {
		return "/" + strings.TrimPrefix(name, BootDir+"/")
	}
	return "/" + name
}

// LoaderDir is where EXTLINUX lives on the file system it boots from,
// and LoaderFS that file system's UUID.
func (p Plan) LoaderDir() string {
	if p.Disk.SeparateBoot {
		return "/"
	}
	return "/" + BootDir
}

// LoaderFS is the UUID of the file system /boot is on.
func (p Plan) LoaderFS(ids IDs) string {
	if p.Disk.SeparateBoot {
		return ids.Boot
	}
	return ids.Root
}

// GRUBConfig is the ESP's grub.cfg: the kernel and initramfs found by
// their file system's UUID.
func (p Plan) GRUBConfig(ids IDs, kernel, initrd string) string {
	return "# grub.cfg, written by alpinist\nset timeout=0\n" +
		"search --no-floppy --fs-uuid --set=root " + p.LoaderFS(ids) + "\n" +
		"linux " + p.LoaderPath(kernel) + " " + p.Cmdline(ids) + "\n" +
		"initrd " + p.LoaderPath(initrd) + "\n" +
		"boot\n"
}

// UpdateExtlinuxConf sets what Alpine's update-extlinux needs to write
// an extlinux.conf that boots this disk when a kernel is upgraded: the
// root by UUID, the kernel arguments and the serial console (as
// alpine-make-vm-image does).
func (p Plan) UpdateExtlinuxConf(conf []byte, ids IDs) []byte {
	set := []struct{ key, value string }{
		{"root", "UUID=" + ids.Root},
		{"default_kernel_opts", strconv.Quote(p.kernelOpts())},
	}
	if serial := p.Serial(); serial >= 0 {
		set = append(set, struct{ key, value string }{"serial_port", strconv.Itoa(serial)}, struct{ key, value string }{"serial_baud", "115200"})
	}
	lines := strings.SplitAfter(string(conf), "\n")
	for _, kv := range set {
		re := regexp.MustCompile(`^[#\s]*` + kv.key + `=`)
		i := slices.IndexFunc(lines, func(l string) bool { return re.MatchString(l) })
		if i < 0 {
			if n := len(lines); n > 0 && lines[n-1] != "" && !strings.HasSuffix(lines[n-1], "\n") {
				lines[n-1] += "\n"
			}
			lines = append(lines, kv.key+"="+kv.value+"\n")
			continue
		}
		lines[i] = kv.key + "=" + kv.value + "\n"
	}
	return []byte(strings.Join(lines, ""))
}
