package output

import (
	"archive/tar"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/assembler/disk"
	"github.com/alpinist/alpinist/assembler/ext4"
	"github.com/alpinist/alpinist/assembler/extlinux"
	"github.com/alpinist/alpinist/assembler/fat"
	"github.com/alpinist/alpinist/assembler/tarball"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/atomicfile"
)

// ESPMount is where the ESP is mounted in the system (the boot-disk
// planner's).
const ESPMount = bootdisk.ESPMount

// efiDir is ESPMount as a tar name prefix.
var efiDir = ESPMount[1:] + "/"

// bootDir is /boot as a tar name.
const bootDir = bootdisk.BootDir

// diskBuild is one disk image being made: the plan, what the rootfs
// has for it, and the identities of its file systems.
type diskBuild struct {
	s       *Set
	a       *job
	plan    bootdisk.Plan
	info    *bootInfo
	work    string
	seed    []byte
	ids     bootdisk.IDs
	loader  *extlinux.Loader // EXTLINUX, for BIOS
	mbrCode []byte
	initrd  string // the initramfs's tar name
}

// diskImage makes the arch's bootable raw disk image in the work dir
// (once: raw and qcow2 share it) and returns its path.
func (s *Set) diskImage(a *job) (string, error) {
	if a.disk != "" {
		return a.disk, nil
	}
	raw, b, err := s.buildDisk(a, 0)
	if err != nil {
		return "", err
	}
	a.disk, a.diskSeed, a.diskEFIOnly = raw, b.seed, b.plan.UEFI && !b.plan.BIOS
	return raw, nil
}

// diskImageIn is the arch's disk image with a size that is a whole
// number of unit bytes: the disk diskImage makes when it is one, else
// the same disk made again that size, its root file system filling it.
func (s *Set) diskImageIn(a *job, unit int64) (string, error) {
	raw, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(raw)
	if err != nil {
		return "", err
	}
	if st.Size()%unit == 0 {
		return raw, nil
	}
	raw, _, err = s.buildDisk(a, (st.Size()+unit-1)/unit*unit)
	return raw, err
}

// buildDisk makes a raw disk image of the arch in the work dir, size
// bytes (0: as the spec says, else what the content needs).
func (s *Set) buildDisk(a *job, size int64) (string, *diskBuild, error) {
	b, err := s.planDisk(a)
	if err != nil {
		return "", nil, err
	}
	if size > 0 {
		b.plan.Disk.Size = size
	}
	if b.work, err = os.MkdirTemp(s.workDir(), "disk-"+a.Arch+"-"); err != nil {
		return "", nil, err
	}
	// Identities from the inputs: the same rootfs gives the same disk.
	b.seed = append([]byte(s.p.Spec.Name+"\x00"+a.Arch+"\x00"), b.info.digest...)
	espID := disk.VolumeID(b.seed)
	b.ids = bootdisk.IDs{
		Root: strings.ToLower(disk.UUID(b.seed, "root file system")), // as blkid and fstab write it
		Boot: strings.ToLower(disk.UUID(b.seed, "boot file system")),
		ESP:  fmt.Sprintf("%04X-%04X", espID>>16, espID&0xffff),
	}
	fullTar, err := b.systemTar()
	if err != nil {
		return "", nil, err
	}
	parts, images, err := b.fileSystems(fullTar)
	if err != nil {
		return "", nil, err
	}
	raw := filepath.Join(b.work, "disk.raw")
	if _, err = disk.Write(raw, disk.Layout{Table: b.plan.Table, Size: b.plan.Disk.Size, Seed: b.seed, MBRCode: b.mbrCode, Partitions: parts}); err != nil {
		return "", nil, err
	}
	for _, img := range images {
		os.Remove(img)
	}
	return raw, b, nil
}

// planDisk plans the arch's disk from the spec (or, for assemble
// without disk.boot, from the boot loaders the rootfs has) and checks
// that the rootfs has what its firmware needs.
func (s *Set) planDisk(a *job) (*diskBuild, error) {
	info, err := s.bootInfo(a)
	if err != nil {
		return nil, err
	}
	plan, err := s.bootPlan(a, info, "a disk", info.extlinux != nil)
	if err != nil {
		return nil, err
	}
	b := &diskBuild{s: s, a: a, info: info, plan: plan, initrd: info.initrd}
	p := b.plan
	if p.BIOS {
		if info.extlinux == nil {
			return nil, fmt.Errorf("BIOS boot needs EXTLINUX, and the system has no extlinux program (package syslinux)")
		}
		if b.loader, err = extlinux.Extract(info.extlinux); err != nil {
			return nil, fmt.Errorf("/%s: %w", info.extlinuxPath, err)
		}
		code := map[string]string{"gpt": "gptmbr.bin", "mbr": "mbr.bin"}[p.Table]
		if b.mbrCode = info.mbrCode[code]; b.mbrCode == nil {
			return nil, fmt.Errorf("BIOS boot from %s needs syslinux's %s, and the system has none under /usr/share/syslinux", p.Table, code)
		}
	}
	return b, nil
}

// systemTar writes the system's files: the rootfs with /etc/fstab, an
// initramfs when the system has none (the agent as a root switcher),
// and EXTLINUX for BIOS.
func (b *diskBuild) systemTar() (string, error) {
	p, info := b.plan, b.info
	extra := []tarFile{{"etc/fstab", []byte(p.Fstab(b.ids, info.fsckVfat)), 0o644}}
	if b.initrd == "" {
		data, err := rootSwitcher(b.a, b.work)
		if err != nil {
			return "", err
		}
		b.initrd = bootDir + "/initramfs-" + strings.TrimPrefix(filepath.Base(info.kernel), "vmlinuz-")
		extra = append(extra, tarFile{b.initrd, data, 0o644})
		b.s.p.Log.Info("no initramfs in the system: alpinist's root switcher is used", "arch", b.a.Arch, "initramfs", "/"+b.initrd)
	}
	if p.IEEE1275 {
		// The grub.cfg that the image's first configuration finds.
		extra = append(extra, tarFile{bootDir + "/grub/grub.cfg", []byte(p.GRUBConfig(b.ids, info.kernel, b.initrd)), 0o644})
	}
	if p.BIOS {
		conf := extlinux.Config{Serial: p.Serial(), Kernel: p.LoaderPath(info.kernel), Initrd: p.LoaderPath(b.initrd), Append: p.Cmdline(b.ids)}
		extra = append(extra,
			tarFile{bootDir + "/ldlinux.sys", b.loader.SysFile(), 0o444},
			tarFile{bootDir + "/ldlinux.c32", b.loader.C32, 0o444},
			tarFile{bootDir + "/extlinux.conf", []byte(conf.String()), 0o644})
		if info.updateExtlinux != nil {
			// Alpine's update-extlinux rewrites extlinux.conf when a
			// kernel is upgraded: it must keep booting this disk.
			extra = append(extra, tarFile{"etc/update-extlinux.conf", p.UpdateExtlinuxConf(info.updateExtlinux, b.ids), 0o644})
		}
	}
	fullTar := filepath.Join(b.work, "full.tar")
	return fullTar, rewriteTar(fullTar, b.a.Tar, extra)
}

// rootSwitcher is an initramfs of the system's kernel modules with the
// agent as init, which mounts the root file system and switches to it.
func rootSwitcher(a *job, work string) ([]byte, error) {
	kit, err := initramfs.KitFromTar(a.Tar, work, initramfs.BootModules)
	if err != nil {
		return nil, err
	}
	agent, err := embed.Agent(a.Arch)
	if err != nil {
		return nil, err
	}
	ar, err := initramfs.WithAgent(agent, kit)
	if err != nil {
		return nil, err
	}
	return ar.Bytes()
}

// fileSystems makes the disk's file systems from the system's tar (and
// removes it): /boot's first when it has its own, then the root's, with
// EXTLINUX installed where /boot is, and the ESP. It returns the
// partitions and the images they are filled from.
func (b *diskBuild) fileSystems(fullTar string) ([]disk.Partition, []string, error) {
	p, s := b.plan, b.s
	rootTar := fullTar
	avail := p.Disk.Size - 2<<20 // what the partitions may take of a sized disk
	if p.UEFI {
		avail -= bootdisk.ESPSize
	}
	if p.IEEE1275 {
		avail -= bootdisk.PReP
	}
	var bootImg string
	var bootBlocks uint32
	var pinned []uint32 // ldlinux.sys's blocks
	sep := p.Disk.SeparateBoot
	if sep {
		rootTar, bootImg = filepath.Join(b.work, "root.tar"), filepath.Join(b.work, "boot.ext4")
		st, err := b.bootFS(fullTar, rootTar, bootImg)
		if err != nil {
			return nil, nil, err
		}
		bootBlocks, pinned = st.Blocks, st.Pinned["ldlinux.sys"]
		avail -= (int64(bootBlocks)*4096 + 1<<20 - 1) &^ (1<<20 - 1)
	}
	var rootSize int64
	if p.Disk.Size > 0 {
		if rootSize = avail; rootSize < 16<<20 {
			return nil, nil, fmt.Errorf("disk.size %d leaves no room for the root file system", p.Disk.Size)
		}
	}
	rootImg := filepath.Join(b.work, "root.ext4")
	o := ext4.Options{Label: s.label(), Time: s.p.Created, Size: rootSize, Context: s.p.Context}
	var err error
	if o.UUID, err = uuidBytes(b.ids.Root); err != nil {
		return nil, nil, err
	}
	if p.BIOS && !sep {
		o.Pin = []string{bootDir + "/ldlinux.sys"}
	}
	st, err := ext4.BuildFile(rootImg, rootTar, o)
	if err != nil {
		return nil, nil, err
	}
	os.Remove(rootTar)
	if !sep {
		pinned = st.Pinned[bootDir+"/ldlinux.sys"]
	}
	fillRoot, fillBoot, err := b.fills(rootImg, bootImg, pinned)
	if err != nil {
		return nil, nil, err
	}
	var parts []disk.Partition
	if p.IEEE1275 {
		// GRUB's ELF image, which Open Firmware loads from the partition.
		parts = append(parts, disk.Partition{Name: "PReP", Type: disk.TypePReP, MBRType: disk.MBRTypePReP, Size: bootdisk.PReP, Bootable: true, Fill: disk.CopyData(b.info.prep)})
	}
	if p.UEFI {
		// The ESP: the build's EFI files and grub.cfg.
		files := append(b.info.efi, fat.File{Path: "EFI/BOOT/grub.cfg", Data: []byte(p.GRUBConfig(b.ids, b.info.kernel, b.initrd))})
		parts = append(parts, disk.Partition{Name: "ESP", Type: disk.TypeESP, MBRType: mbr.EFISystem, Size: bootdisk.ESPSize, Fill: disk.ESP("ESP", files, b.seed, s.p.Created)})
	}
	images := []string{rootImg}
	if sep {
		parts = append(parts, disk.Partition{Name: "boot", Type: disk.TypeLinuxFS, MBRType: mbr.Linux, Size: int64(bootBlocks) * 4096, Bootable: p.BIOS, Fill: fillBoot})
		images = append(images, bootImg)
	}
	parts = append(parts, disk.Partition{Name: "root", Type: disk.RootType(b.a.Arch), MBRType: mbr.Linux, Size: int64(st.Blocks) * 4096, Bootable: p.BIOS && !sep, Fill: fillRoot})
	return parts, images, nil
}

// bootFS splits the system's tar into the root's and /boot's, and makes
// /boot's file system.
func (b *diskBuild) bootFS(fullTar, rootTar, bootImg string) (ext4.Stats, error) {
	bootTar := filepath.Join(b.work, "boot.tar")
	if err := splitBoot(fullTar, rootTar, bootTar); err != nil {
		return ext4.Stats{}, err
	}
	os.Remove(fullTar)
	o := ext4.Options{Label: "boot", Time: b.s.p.Created, Size: b.plan.Disk.BootSize, Context: b.s.p.Context}
	var err error
	if o.UUID, err = uuidBytes(b.ids.Boot); err != nil {
		return ext4.Stats{}, err
	}
	if b.plan.BIOS {
		o.Pin = []string{"ldlinux.sys"}
	}
	st, err := ext4.BuildFile(bootImg, bootTar, o)
	if err != nil {
		return ext4.Stats{}, fmt.Errorf("/boot: %w", err)
	}
	os.Remove(bootTar)
	return st, nil
}

// fills are what fill the root and boot partitions: their images, with
// EXTLINUX installed into the file system /boot is on (pinned are
// ldlinux.sys's blocks), its boot sector at that partition's start.
func (b *diskBuild) fills(rootImg, bootImg string, pinned []uint32) (fillRoot, fillBoot func(*os.File, int64, int64) error, err error) {
	fillRoot, fillBoot = disk.CopyImage(rootImg), disk.CopyImage(bootImg)
	if !b.plan.BIOS {
		return fillRoot, fillBoot, nil
	}
	sep := b.plan.Disk.SeparateBoot
	img := rootImg
	if sep {
		img = bootImg
	}
	inst, err := installExtlinux(img, b.loader, pinned, b.plan.LoaderDir())
	if err != nil {
		return nil, nil, err
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
		return fillRoot, withVBR(fillBoot), nil
	}
	return withVBR(fillRoot), fillBoot, nil
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
