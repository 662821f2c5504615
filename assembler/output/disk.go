package output

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/assembler/disk"
	"github.com/alpinist/alpinist/assembler/ext4"
	"github.com/alpinist/alpinist/assembler/extlinux"
	"github.com/alpinist/alpinist/assembler/fat"
	"github.com/alpinist/alpinist/assembler/qcow2"
	"github.com/alpinist/alpinist/assembler/tarball"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/spec"
)

// espSize is the EFI system partition's size: FAT32 needs 33 MiB at least.
const espSize = 64 << 20

// ESPMount is where the ESP is mounted in the system: the build leaves
// the ESP's files (GRUB's EFI image) there in the rootfs, and the disk
// copies them onto the ESP.
const ESPMount = "/boot/efi"

// efiDir is ESPMount as a tar name prefix.
var efiDir = ESPMount[1:] + "/"

// bootDir is where EXTLINUX goes in the root file system, as Alpine's
// update-extlinux has it: /boot/ldlinux.sys, ldlinux.c32, extlinux.conf.
const bootDir = "boot"

// diskImage makes the arch's bootable raw disk image in the work dir
// (once: raw and qcow2 share it) and returns its path.
func (s *Set) diskImage(a Arch) (string, error) {
	if p, ok := s.disks[a.Arch]; ok {
		return p, nil
	}
	d := s.p.Spec.Disk
	if d == nil {
		d = &spec.Disk{}
	}
	info, err := scanBoot(a.Tar)
	if err != nil {
		return "", err
	}
	boot := d.BootFor(a.Arch)
	if s.p.AutoBoot && len(d.Boot) == 0 {
		boot = nil
		if info.extlinux != nil && spec.HasBIOS(a.Arch) {
			boot = append(boot, "bios")
		}
		if info.efi != nil {
			boot = append(boot, "uefi")
		}
		if boot == nil {
			return "", fmt.Errorf("the rootfs has no boot loader to boot a disk with: install syslinux for BIOS (x86), or put GRUB's EFI image in /%sEFI/BOOT/ for UEFI (grub-install --efi-directory=%s --removable), or build it with alpinist build and a disk: section", efiDir, ESPMount)
		}
	}
	bios, uefi := slices.Contains(boot, "bios"), slices.Contains(boot, "uefi")
	if !bios && !uefi {
		return "", fmt.Errorf("disk.boot: %s boots with neither bios nor uefi (bios is for x86 and x86_64)", a.Arch)
	}
	table := d.Table
	if table == "" {
		table = "gpt"
	}
	if info.kernel == "" {
		return "", fmt.Errorf("the system has no kernel (/boot/vmlinuz-*): add one, such as linux-virt")
	}
	if uefi && info.efi == nil {
		return "", fmt.Errorf("the rootfs has no GRUB EFI image under /%s (alpinist build makes it when the spec has a disk: that boots with uefi)", efiDir)
	}
	var loader *extlinux.Loader
	var mbrCode []byte
	if bios {
		if info.extlinux == nil {
			return "", fmt.Errorf("BIOS boot needs EXTLINUX, and the system has no extlinux program (package syslinux)")
		}
		if loader, err = extlinux.Extract(info.extlinux); err != nil {
			return "", fmt.Errorf("/%s: %w", info.extlinuxPath, err)
		}
		code := map[string]string{"gpt": "gptmbr.bin", "mbr": "mbr.bin"}[table]
		if mbrCode = info.mbrCode[code]; mbrCode == nil {
			return "", fmt.Errorf("BIOS boot from %s needs syslinux's %s, and the system has none under /usr/share/syslinux", table, code)
		}
	}
	work, err := os.MkdirTemp(s.workDir(), "disk-"+a.Arch+"-")
	if err != nil {
		return "", err
	}

	// Identities from the inputs: the same rootfs gives the same disk.
	seed := append([]byte(s.p.Spec.Name+"\x00"+a.Arch+"\x00"), info.digest...)
	rootUUID := strings.ToLower(disk.UUID(seed, "root file system")) // as blkid and fstab write it
	espID := disk.VolumeID(seed)
	espUUID := fmt.Sprintf("%04X-%04X", espID>>16, espID&0xffff)
	console := d.ConsoleFor(a.Arch)

	// /boot on its own partition, or on the root file system: where the
	// boot loaders find the kernel.
	sep := d.SeparateBoot
	bootUUID := strings.ToLower(disk.UUID(seed, "boot file system"))
	loaderPath := func(p string) string {
		if sep {
			return "/" + strings.TrimPrefix(p, bootDir+"/")
		}
		return "/" + p
	}
	loaderDir, loaderFSUUID := "/"+bootDir, rootUUID
	if sep {
		loaderDir, loaderFSUUID = "/", bootUUID
	}

	// The system's files: the rootfs with /etc/fstab, an initramfs when
	// the system has none (the agent as a root switcher), and EXTLINUX
	// for BIOS.
	initrd := info.initrd
	var extra []tarFile
	// /etc/fstab as setup-disk writes it: the file systems by UUID, then
	// its cdrom, usbdisk and tmpfs lines.
	fstab := "UUID=" + rootUUID + "\t/\text4\trw,relatime 0 1\n"
	if sep {
		fstab += "UUID=" + bootUUID + "\t/" + bootDir + "\text4\trw,relatime 0 2\n"
	}
	if uefi {
		// Checked at boot (pass 2) when the system has fsck.vfat.
		pass := "0"
		if info.fsckVfat {
			pass = "2"
		}
		fstab += "UUID=" + espUUID + "\t" + ESPMount + "\tvfat\trw,relatime,fmask=0133,dmask=0022 0 " + pass + "\n"
	}
	fstab += "/dev/cdrom\t/media/cdrom\tiso9660\tnoauto,ro 0 0\n" +
		"/dev/usbdisk\t/media/usb\tvfat\tnoauto\t0 0\n" +
		"tmpfs\t/tmp\ttmpfs\tnosuid,nodev\t0\t0\n"
	extra = append(extra, tarFile{"etc/fstab", []byte(fstab), 0o644})
	if initrd == "" {
		kit, err := initramfs.KitFromTar(a.Tar, work, initramfs.BootModules)
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
		data, err := ar.Bytes()
		if err != nil {
			return "", err
		}
		initrd = bootDir + "/initramfs-" + strings.TrimPrefix(filepath.Base(info.kernel), "vmlinuz-")
		extra = append(extra, tarFile{initrd, data, 0o644})
		s.p.Log.Info("no initramfs in the system: alpinist's root switcher is used", "arch", a.Arch, "initramfs", "/"+initrd)
	}
	cmdline := "root=UUID=" + rootUUID + " rw"
	if console != "none" {
		cmdline += " console=" + console
	}
	if d.Cmdline != "" {
		cmdline += " " + d.Cmdline
	}
	if bios {
		serial := -1
		if n, ok := strings.CutPrefix(console, "ttyS"); ok {
			if port, err := strconv.Atoi(n); err == nil && port < 4 {
				serial = port
			}
		}
		conf := extlinux.Config{Serial: serial, Kernel: loaderPath(info.kernel), Initrd: loaderPath(initrd), Append: cmdline}
		extra = append(extra,
			tarFile{bootDir + "/ldlinux.sys", loader.SysFile(), 0o444},
			tarFile{bootDir + "/ldlinux.c32", loader.C32, 0o444},
			tarFile{bootDir + "/extlinux.conf", []byte(conf.String()), 0o644})
		if info.updateExtlinux != nil {
			// Alpine's update-extlinux rewrites extlinux.conf when a
			// kernel is upgraded: it must keep booting this disk.
			extra = append(extra, tarFile{"etc/update-extlinux.conf", updateExtlinuxConf(info.updateExtlinux, rootUUID, console, serial, d.Cmdline), 0o644})
		}
	}
	fullTar := filepath.Join(work, "full.tar")
	if err := rewriteTar(fullTar, a.Tar, extra); err != nil {
		return "", err
	}

	// The file systems: /boot's first when it has its own.
	rootTar := fullTar
	avail := d.Size - 2<<20 // what the partitions may take of a sized disk
	if uefi {
		avail -= espSize
	}
	var bootImg string
	var bootBlocks uint32
	var pinned []uint32 // ldlinux.sys's blocks
	if sep {
		rootTar, bootImg = filepath.Join(work, "root.tar"), filepath.Join(work, "boot.ext4")
		bootTar := filepath.Join(work, "boot.tar")
		if err := splitBoot(fullTar, rootTar, bootTar); err != nil {
			return "", err
		}
		os.Remove(fullTar)
		o := ext4.Options{Label: "boot", Time: s.p.Created, Size: d.BootSize, Context: s.p.Context}
		if o.UUID, err = uuidBytes(bootUUID); err != nil {
			return "", err
		}
		if bios {
			o.Pin = []string{"ldlinux.sys"}
		}
		st, err := ext4.BuildFile(bootImg, bootTar, o)
		if err != nil {
			return "", fmt.Errorf("/boot: %w", err)
		}
		os.Remove(bootTar)
		bootBlocks, pinned = st.Blocks, st.Pinned["ldlinux.sys"]
		avail -= (int64(bootBlocks)*4096 + 1<<20 - 1) &^ (1<<20 - 1)
	}
	var rootSize int64
	if d.Size > 0 {
		if rootSize = avail; rootSize < 16<<20 {
			return "", fmt.Errorf("disk.size %d leaves no room for the root file system", d.Size)
		}
	}
	rootImg := filepath.Join(work, "root.ext4")
	o := ext4.Options{Label: s.label(), Time: s.p.Created, Size: rootSize, Context: s.p.Context}
	if o.UUID, err = uuidBytes(rootUUID); err != nil {
		return "", err
	}
	if bios && !sep {
		o.Pin = []string{bootDir + "/ldlinux.sys"}
	}
	st, err := ext4.BuildFile(rootImg, rootTar, o)
	if err != nil {
		return "", err
	}
	os.Remove(rootTar)
	if !sep {
		pinned = st.Pinned[bootDir+"/ldlinux.sys"]
	}

	// EXTLINUX goes into the file system /boot is on, its boot sector at
	// that partition's start.
	fillRoot, fillBoot := disk.CopyImage(rootImg), disk.CopyImage(bootImg)
	if bios {
		img := rootImg
		if sep {
			img = bootImg
		}
		inst, err := installExtlinux(img, loader, pinned, loaderDir)
		if err != nil {
			return "", err
		}
		withVBR := func(fill func(*os.File, int64, int64) error) func(*os.File, int64, int64) error {
			return func(f *os.File, offset, size int64) error {
				if err := fill(f, offset, size); err != nil {
					return err
				}
				_, err := f.WriteAt(inst.BootSector(uint64(offset/512), uint64(size/512)), offset)
				return err
			}
		}
		if sep {
			fillBoot = withVBR(fillBoot)
		} else {
			fillRoot = withVBR(fillRoot)
		}
	}

	var parts []disk.Partition
	if uefi {
		// The ESP: the build's EFI files and grub.cfg.
		grubCfg := "# grub.cfg, written by alpinist\nset timeout=0\n" +
			"search --no-floppy --fs-uuid --set=root " + loaderFSUUID + "\n" +
			"linux " + loaderPath(info.kernel) + " " + cmdline + "\n" +
			"initrd " + loaderPath(initrd) + "\n" +
			"boot\n"
		files := append(info.efi, fat.File{Path: "EFI/BOOT/grub.cfg", Data: []byte(grubCfg)})
		parts = append(parts, disk.Partition{Name: "ESP", Type: disk.TypeESP, MBRType: mbr.EFISystem, Size: espSize, Fill: disk.ESP("ESP", files, seed, s.p.Created)})
	}
	if sep {
		parts = append(parts, disk.Partition{Name: "boot", Type: disk.TypeLinuxFS, MBRType: mbr.Linux, Size: int64(bootBlocks) * 4096, Bootable: bios, Fill: fillBoot})
	}
	parts = append(parts, disk.Partition{Name: "root", Type: disk.RootType(a.Arch), MBRType: mbr.Linux, Size: int64(st.Blocks) * 4096, Bootable: bios && !sep, Fill: fillRoot})
	raw := filepath.Join(work, "disk.raw")
	if _, err = disk.Write(raw, disk.Layout{Table: table, Size: d.Size, Seed: seed, MBRCode: mbrCode, Partitions: parts}); err != nil {
		return "", err
	}
	os.Remove(rootImg)
	if bootImg != "" {
		os.Remove(bootImg)
	}
	s.disks[a.Arch] = raw
	return raw, nil
}

// uuidBytes parses a UUID.
func uuidBytes(s string) ([16]byte, error) {
	var u [16]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return u, fmt.Errorf("UUID %q: %v", s, err)
	}
	copy(u[:], b)
	return u, nil
}

// splitBoot splits the rootfs tar src into the root file system's (with
// /boot empty, a mount point) and /boot's (its content at the top).
func splitBoot(src, rootDst, bootDst string) error {
	under := func(name string) (string, bool) {
		rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "./"), bootDir+"/")
		return rest, ok && rest != ""
	}
	for _, part := range []struct {
		dst  string
		boot bool
	}{{rootDst, false}, {bootDst, true}} {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		err = atomicfile.Write(part.dst, 0o644, func(w io.Writer) error {
			tw := tar.NewWriter(w)
			var linkErr error
			sawBoot := false
			err := tarball.Copy(tw, in, func(h *tar.Header) (keep bool) {
				rest, inBoot := under(h.Name)
				if strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/") == bootDir {
					// /boot itself: the root's mount point, and the
					// attributes of the boot file system's root.
					sawBoot = true
					if part.boot {
						h.Name = "./"
					}
					return true
				}
				if h.Typeflag == tar.TypeLink {
					if _, to := under(h.Linkname); to != inBoot && linkErr == nil {
						linkErr = fmt.Errorf("/%s is a hard link to /%s, across the /%s partition's edge", h.Name, h.Linkname, bootDir)
					}
				}
				if inBoot != part.boot {
					return false
				}
				if part.boot {
					h.Name = rest
					if h.Typeflag == tar.TypeLink {
						h.Linkname, _ = under(h.Linkname)
					}
				}
				return true
			})
			if err == nil && !sawBoot && !part.boot {
				// The mount point.
				err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: bootDir + "/", Mode: 0o755})
			}
			return errors.Join(err, linkErr, tw.Close())
		})
		in.Close()
		if err != nil {
			return fmt.Errorf("splitting /%s off: %w", bootDir, err)
		}
	}
	return nil
}

// installExtlinux patches ldlinux.sys where the ext4 writer put it
// (blocks, of 4 KiB) in the file system image, in directory dir of it,
// and returns what makes the partition's boot sector.
func installExtlinux(rootImg string, loader *extlinux.Loader, blocks []uint32, dir string) (*extlinux.Install, error) {
	const perBlock = 4096 / 512
	var sectors []uint64
	for _, b := range blocks {
		for k := range uint64(perBlock) {
			sectors = append(sectors, uint64(b)*perBlock+k)
		}
	}
	inst, err := loader.Patch(sectors, dir)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(rootImg, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(inst.Sys); i += 4096 {
		if _, err := f.WriteAt(inst.Sys[i:min(i+4096, len(inst.Sys))], int64(blocks[i/4096])*4096); err != nil {
			f.Close()
			return nil, fmt.Errorf("extlinux: %w", err)
		}
	}
	return inst, f.Close()
}

// updateExtlinuxConf sets what Alpine's update-extlinux needs to write
// an extlinux.conf that boots this disk: the root by UUID, the kernel
// arguments and the serial console (as alpine-make-vm-image does).
func updateExtlinuxConf(conf []byte, rootUUID, console string, serial int, cmdline string) []byte {
	opts := "rw"
	if console != "none" {
		opts += " console=" + console
	}
	if cmdline != "" {
		opts += " " + cmdline
	}
	set := []struct{ key, value string }{
		{"root", "UUID=" + rootUUID},
		{"default_kernel_opts", strconv.Quote(opts)},
	}
	if serial >= 0 {
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

// bootInfo is what the disk needs from the rootfs.
type bootInfo struct {
	kernel, initrd string // boot/vmlinuz-FLAVOR, boot/initramfs-FLAVOR
	efi            []fat.File
	digest         []byte
	// extlinux is the extlinux program (at extlinuxPath), mbrCode
	// syslinux's MBR boot code by name (mbr.bin, gptmbr.bin).
	extlinux       []byte
	extlinuxPath   string
	mbrCode        map[string][]byte
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
	info := &bootInfo{mbrCode: map[string][]byte{}}

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

type tarFile struct {
	name string
	data []byte
	mode int64
}

// rewriteTar copies the tar src to dst, replacing or adding files.
func rewriteTar(dst, src string, files []tarFile) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		var mtime = int64(0)
		err := tarball.Copy(tw, in, func(h *tar.Header) bool {
			mtime = max(mtime, h.ModTime.Unix())
			return !slices.ContainsFunc(files, func(f tarFile) bool { return f.name == strings.TrimPrefix(h.Name, "./") })
		})
		for _, f := range files {
			if err == nil {
				err = tarball.AddFile(tw, f.name, f.data, f.mode, time.Unix(mtime, 0))
			}
		}
		return errors.Join(err, tw.Close())
	})
}

func (s *Set) raw(o Output, a Arch) (string, error) {
	img, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	if err := copySparse(p, img); err != nil {
		return "", err
	}
	return p, nil
}

func (s *Set) qcow2(o Output, a Arch) (string, error) {
	img, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	d := s.p.Spec.Disk
	return p, qcow2.WriteFile(s.p.Context, p, img, qcow2.Options{Compress: d != nil && d.Compress})
}

// copySparse copies a sparse image, leaving zero blocks unwritten.
func copySparse(dst, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, 0o644, func(f *os.File) error {
		if err := f.Truncate(st.Size()); err != nil {
			return err
		}
		return disk.CopyImage(src)(f, 0, st.Size())
	})
}
