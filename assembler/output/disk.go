package output

import (
	"archive/tar"
	"crypto/sha256"
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
	boot := d.BootFor(a.Arch)
	if slices.Contains(boot, "bios") {
		return "", fmt.Errorf("disk.boot: bios (extlinux) is not written by this version yet; boot: [uefi] is")
	}
	work, err := os.MkdirTemp(s.workDir(), "disk-"+a.Arch+"-")
	if err != nil {
		return "", err
	}
	info, err := scanBoot(a.Tar)
	if err != nil {
		return "", err
	}
	if info.kernel == "" {
		return "", fmt.Errorf("the system has no kernel (/boot/vmlinuz-*): add one, such as linux-virt")
	}
	if info.efi == nil {
		return "", fmt.Errorf("the rootfs has no GRUB EFI image under /%s (the build makes it when the spec has disk: and a raw or qcow2 output)", efiDir)
	}
	// Identities from the inputs: the same rootfs gives the same disk.
	seed := append([]byte(s.p.Spec.Name+"\x00"+a.Arch+"\x00"), info.digest...)
	rootUUID := disk.UUID(seed, "root file system")
	var uuid [16]byte
	if b, err := hex.DecodeString(strings.ReplaceAll(rootUUID, "-", "")); err != nil || len(b) != 16 {
		return "", fmt.Errorf("root UUID %q: %v", rootUUID, err)
	} else {
		copy(uuid[:], b)
	}
	espID := disk.VolumeID(seed)
	espUUID := fmt.Sprintf("%04X-%04X", espID>>16, espID&0xffff)
	console := d.ConsoleFor(a.Arch)

	// The root file system: the rootfs with /etc/fstab, and an initramfs
	// when the system has none (the agent as a root switcher).
	initrd := info.initrd
	var extra []tarFile
	fstab := "# /etc/fstab, written by alpinist for the disk image\n" +
		"UUID=" + strings.ToLower(rootUUID) + "\t/\text4\trw,relatime\t0 1\n" +
		"UUID=" + espUUID + "\t" + ESPMount + "\tvfat\trw,relatime,fmask=0133,dmask=0022\t0 2\n"
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
		initrd = "boot/initramfs-" + strings.TrimPrefix(filepath.Base(info.kernel), "vmlinuz-")
		extra = append(extra, tarFile{initrd, data, 0o644})
		s.p.Log.Info("no initramfs in the system: alpinist's root switcher is used", "arch", a.Arch, "initramfs", "/"+initrd)
	}
	rootTar := filepath.Join(work, "root.tar")
	if err := rewriteTar(rootTar, a.Tar, extra); err != nil {
		return "", err
	}
	var rootSize int64
	if d.Size > 0 {
		rootSize = d.Size - espSize - 2<<20
		if rootSize < 16<<20 {
			return "", fmt.Errorf("disk.size %d leaves no room for the root file system", d.Size)
		}
	}
	rootImg := filepath.Join(work, "root.ext4")
	st, err := ext4.BuildFile(rootImg, rootTar, ext4.Options{UUID: uuid, Label: s.label(), Time: s.p.Created, Size: rootSize})
	if err != nil {
		return "", err
	}
	os.Remove(rootTar)

	// The ESP: the build's EFI files and grub.cfg.
	cmdline := "root=UUID=" + strings.ToLower(rootUUID) + " rw"
	if console != "none" {
		cmdline += " console=" + console
	}
	if d.Cmdline != "" {
		cmdline += " " + d.Cmdline
	}
	grubCfg := "# grub.cfg, written by alpinist\nset timeout=0\n" +
		"search --no-floppy --fs-uuid --set=root " + strings.ToLower(rootUUID) + "\n" +
		"linux /" + info.kernel + " " + cmdline + "\n" +
		"initrd /" + initrd + "\n" +
		"boot\n"
	files := append(info.efi, fat.File{Path: "EFI/BOOT/grub.cfg", Data: []byte(grubCfg)})

	table := d.Table
	if table == "" {
		table = "gpt"
	}
	raw := filepath.Join(work, "disk.raw")
	_, err = disk.Write(raw, disk.Layout{Table: table, Size: d.Size, Seed: seed, Partitions: []disk.Partition{
		{Name: "ESP", Type: disk.TypeESP, MBRType: mbr.EFISystem, Size: espSize, Fill: disk.ESP("ESP", files, seed, s.p.Created)},
		{Name: "root", Type: disk.RootType(a.Arch), MBRType: mbr.Linux, Size: int64(st.Blocks) * 4096, Fill: disk.CopyImage(rootImg)},
	}})
	if err != nil {
		return "", err
	}
	os.Remove(rootImg)
	s.disks[a.Arch] = raw
	return raw, nil
}

// bootInfo is what the disk needs from the rootfs.
type bootInfo struct {
	kernel, initrd string // boot/vmlinuz-FLAVOR, boot/initramfs-FLAVOR
	efi            []fat.File
	digest         []byte
}

// scanBoot reads the rootfs tar for the kernel, its initramfs and the
// ESP's files, and its digest.
func scanBoot(tarPath string) (*bootInfo, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(f, h))
	info := &bootInfo{}
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
		switch {
		case hd.Typeflag != tar.TypeReg:
		case strings.HasPrefix(name, "boot/vmlinuz-"):
			kernels = append(kernels, name)
		case strings.HasPrefix(name, "boot/initramfs-"):
			initrds[name] = true
		case strings.HasPrefix(name, efiDir):
			data, err := io.ReadAll(io.LimitReader(tr, 32<<20))
			if err != nil {
				return nil, err
			}
			info.efi = append(info.efi, fat.File{Path: strings.TrimPrefix(name, efiDir), Data: data})
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
	return p, qcow2.WriteFile(p, img, qcow2.Options{})
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
