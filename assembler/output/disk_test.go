package output

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/disktest"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/spec"
)

// bootableTar is the test rootfs with what a disk needs: a kernel, its
// initramfs and GRUB's EFI image (stand-ins: the disk is not booted here;
// cmd/alpinist's TestBootDisk boots real ones) and, for BIOS, syslinux's
// real files from the test repository.
func bootableTar(t *testing.T, bios bool) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tr := tar.NewReader(bytes.NewReader(rootfstest.Tar(t)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	files := []struct{ name, body string }{
		{"boot/vmlinuz-virt", "kernel"}, {"boot/initramfs-virt", "initramfs"}, {"boot/efi/EFI/BOOT/BOOTX64.EFI", "MZ grub"},
	}
	if bios {
		files = append(files, struct{ name, body string }{"etc/update-extlinux.conf", "# update-extlinux\noverwrite=1\n#root=\ndefault_kernel_opts=\"quiet\"\n"})
		for _, name := range []string{"usr/libexec/syslinux/extlinux", "usr/share/syslinux/mbr.bin", "usr/share/syslinux/gptmbr.bin"} {
			data, err := os.ReadFile(testrepo.Extract(t, "x86_64", "syslinux", name))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, struct{ name, body string }{name, string(data)})
		}
	}
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body)), ModTime: rootfstest.Created})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	return b.Bytes()
}

// checkBIOS checks a disk's EXTLINUX install: the MBR code, the root
// partition's boot sector, /boot's files.
// dir is where /boot's files are on the file system fs: "/boot", or ""
// on a /boot partition.
func checkBIOS(t *testing.T, raw, fs, mbrCode, rootUUID, dir string) {
	t.Helper()
	disk, _ := os.ReadFile(raw)
	code, _ := os.ReadFile(testrepo.Extract(t, "x86_64", "syslinux", "usr/share/syslinux/"+mbrCode))
	if len(code) != 440 || !bytes.Equal(disk[:440], code) {
		t.Errorf("the MBR does not hold %s", mbrCode)
	}
	vbr, _ := os.ReadFile(fs)
	if string(vbr[3:11]) != "SYSLINUX" || vbr[510] != 0x55 || vbr[511] != 0xAA {
		t.Errorf("the root partition has no EXTLINUX boot sector: % x", vbr[:16])
	}
	if start := binary.LittleEndian.Uint32(vbr[0x1C:]); !bytes.Equal(disk[int64(start)*512:int64(start)*512+512], vbr[:512]) {
		t.Errorf("the boot sector's partition start %d is wrong", start)
	}
	out, _ := exec.Command("debugfs", "-R", "cat "+dir+"/extlinux.conf", fs).Output()
	want := "SERIAL 1 115200\nDEFAULT alpine\nPROMPT 0\nTIMEOUT 0\n\nLABEL alpine\n  LINUX " + dir + "/vmlinuz-virt\n  INITRD " + dir + "/initramfs-virt\n  APPEND root=UUID=" + rootUUID + " rw console=ttyS1 quiet\n"
	if !strings.HasSuffix(string(out), want) {
		t.Errorf("extlinux.conf:\n%s\nwant\n%s", out, want)
	}
	st, _ := exec.Command("debugfs", "-R", "stat "+dir+"/ldlinux.sys", fs).Output()
	if !strings.Contains(string(st), "Flags: 0x80010") || !strings.Contains(string(st), "Size: 59392") {
		t.Errorf("ldlinux.sys:\n%s", st)
	}
	ls, _ := exec.Command("debugfs", "-R", "ls -l "+dir+"/", fs).Output()
	if !strings.Contains(string(ls), "ldlinux.c32") {
		t.Errorf("no ldlinux.c32:\n%s", ls)
	}
}

// TestDiskImageMBR: a BIOS-only disk with an MBR: mbr.bin, the root
// partition active, no ESP.
func TestDiskImageMBR(t *testing.T) {
	dir := writeDisk(t, spec.Disk{Table: "mbr", Boot: []string{"bios"}, Console: "ttyS1", Cmdline: "quiet"}, noEFI(t, true), "raw")
	raw := filepath.Join(dir, "vm-x86_64.raw")
	parts := partitions(t, raw)
	if len(parts) != 1 || parts[0].Type != "83" || !parts[0].Bootable {
		t.Fatalf("want one active Linux partition: %+v", parts)
	}
	root := parts[0].path
	if b, err := exec.Command(hosttool.Need(t, "e2fsck", "e2fsprogs"), "-fn", root).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, b)
	}
	rootUUID := disktest.Ext4UUID(t, root)
	checkBIOS(t, raw, root, "mbr.bin", rootUUID, "/boot")
	fstab, _ := exec.Command("debugfs", "-R", "cat /etc/fstab", root).Output()
	if strings.Contains(string(fstab), ESPMount) {
		t.Errorf("a disk without an ESP mounts one:\n%s", fstab)
	}
}

// noEFI is bootableTar without the ESP's files.
func noEFI(t *testing.T, bios bool) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tr := tar.NewReader(bytes.NewReader(bootableTar(t, bios)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if !strings.HasPrefix(h.Name, "boot/efi/") {
			tw.WriteHeader(h)
			io.Copy(tw, tr)
		}
	}
	tw.Close()
	return b.Bytes()
}

// writeDisk writes the outputs of a spec named vm with disk d from the
// rootfs tar data, and returns the directory they are in.
func writeDisk(t *testing.T, d spec.Disk, data []byte, outputs ...string) string {
	t.Helper()
	dir := t.TempDir()
	s, err := New(Plan{Spec: &spec.Spec{Name: "vm", Disk: &d}, Dir: dir, Outputs: outputs, Created: rootfstest.Created, Tool: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tarPath := filepath.Join(dir, "vm-x86_64.tar")
	os.WriteFile(tarPath, data, 0o644)
	if _, err := s.Add(Arch{Arch: "x86_64", Tar: tarPath}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDiskImage(t *testing.T) {
	dir := writeDisk(t, spec.Disk{Size: 200 << 20, Console: "ttyS1", Cmdline: "quiet", Compress: true}, bootableTar(t, true), "raw", "qcow2")
	raw := filepath.Join(dir, "vm-x86_64.raw")
	st, err := os.Stat(raw)
	if err != nil || st.Size() != 200<<20 {
		t.Fatalf("raw: %v, %v bytes", err, st)
	}
	sgdisk := hosttool.Need(t, "sgdisk", "gdisk")
	if b, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(b), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, b)
	}
	parts := partitions(t, raw)
	if len(parts) != 2 {
		t.Fatalf("%d partitions, want the ESP and the root", len(parts))
	}
	esp, root := parts[0].path, parts[1].path
	if b, err := exec.Command(hosttool.Need(t, "fsck.fat", "dosfstools"), "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat: %v\n%s", err, b)
	}
	if b, err := exec.Command(hosttool.Need(t, "e2fsck", "e2fsprogs"), "-fn", root).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, b)
	}
	cfg, err := exec.Command(hosttool.Need(t, "mtype", "mtools"), "-i", esp, "::/EFI/BOOT/grub.cfg").Output()
	if err != nil {
		t.Fatal(err)
	}
	efi, _ := exec.Command("mtype", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI").Output()
	fstab, _ := exec.Command(hosttool.Need(t, "debugfs", "e2fsprogs"), "-R", "cat /etc/fstab", root).Output()
	rootUUID := disktest.Ext4UUID(t, root)
	for what, want := range map[string]string{
		string(cfg):   "linux /boot/vmlinuz-virt root=UUID=" + rootUUID + " rw console=ttyS1 quiet\ninitrd /boot/initramfs-virt\n",
		string(efi):   "MZ grub",
		string(fstab): "UUID=" + rootUUID + "\t/\text4",
	} {
		if rootUUID == "" || !strings.Contains(what, want) {
			t.Errorf("want %q in:\n%s", want, what)
		}
	}
	// fstab names the ESP by the volume ID it has.
	dir2, _ := exec.Command("mdir", "-i", esp, "::/").Output()
	var serial string
	for _, l := range strings.Split(string(dir2), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Volume Serial Number is "); ok {
			serial = v
		}
	}
	if serial == "" || !strings.Contains(string(fstab), "UUID="+serial+"\t/boot/efi\tvfat") {
		t.Errorf("fstab does not name the ESP %q: %s", serial, fstab)
	}
	// BIOS: gptmbr.bin chains to the root partition (legacy BIOS
	// bootable), whose boot sector loads /boot/ldlinux.sys.
	if parts[1].Attrs != "LegacyBIOSBootable" {
		t.Errorf("the root partition is not legacy BIOS bootable: %+v", parts[1])
	}
	checkBIOS(t, raw, root, "gptmbr.bin", rootUUID, "/boot")
	uec, _ := exec.Command("debugfs", "-R", "cat /etc/update-extlinux.conf", root).Output()
	if want := "# update-extlinux\noverwrite=1\nroot=UUID=" + rootUUID + "\ndefault_kernel_opts=\"rw console=ttyS1 quiet\"\nserial_port=1\nserial_baud=115200\n"; string(uec) != want {
		t.Errorf("update-extlinux.conf:\n%s\nwant\n%s", uec, want)
	}
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	if b, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", raw, filepath.Join(dir, "vm-x86_64.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare: %v\n%s", err, b)
	}
	if b, _ := exec.Command(qemuImg, "info", filepath.Join(dir, "vm-x86_64.qcow2")).CombinedOutput(); !strings.Contains(string(b), "compression type: zstd") {
		t.Errorf("disk.compress: the qcow2 is not zstd-compressed:\n%s", b)
	}

	// What a disk cannot be made without.
	refused(t, "qcow2", map[string]badDisk{
		"has no kernel":       {rootfstest.Tar(t), spec.Disk{}},
		"no extlinux program": {bootableTar(t, false), spec.Disk{Boot: []string{"bios"}}},
		"leaves no room":      {bootableTar(t, false), spec.Disk{Size: 70 << 20, Boot: []string{"uefi"}}},
		"no GRUB EFI image":   {noEFI(t, false), spec.Disk{Boot: []string{"uefi"}}},
	})
}

// badDisk is a rootfs and a disk: section an output is refused for.
type badDisk struct {
	tar  []byte
	disk spec.Disk
}

// refused checks that output is refused for each case, the error
// saying what the key says.
func refused(t *testing.T, output string, cases map[string]badDisk) {
	t.Helper()
	dir := t.TempDir()
	for want, tc := range cases {
		d := tc.disk
		s, _ := New(Plan{Spec: &spec.Spec{Name: "bad", Disk: &d}, Dir: dir, Outputs: []string{output}, Created: rootfstest.Created, Tool: "t"})
		p := filepath.Join(dir, "bad-x86_64.tar")
		os.WriteFile(p, tc.tar, 0o644)
		if _, err := s.Add(Arch{Arch: "x86_64", Tar: p}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %s: %v", output, want, err)
		}
		s.Close()
	}
}

// TestISOErrors: what a live ISO cannot be made without.
func TestISOErrors(t *testing.T) {
	refused(t, "iso", map[string]badDisk{
		"no kernel (/boot/vmlinuz-*) to boot the ISO":                                                {rootfstest.Tar(t), spec.Disk{}},
		"BIOS boot of an ISO needs ISOLINUX, and the system has no /usr/share/syslinux/isolinux.bin": {bootableTar(t, false), spec.Disk{Boot: []string{"bios"}}},
		"no GRUB EFI image": {noEFI(t, false), spec.Disk{Boot: []string{"uefi"}}},
	})
}

// part is a partition of a disk image, copied out to path.
type part struct {
	disktest.Partition
	path string
}

// partitions copies each partition of a disk image out for the file
// system checkers.
func partitions(t *testing.T, raw string) []part {
	t.Helper()
	var parts []part
	for _, p := range disktest.Read(t, raw).Partitions {
		parts = append(parts, part{p, p.CopyOut(t, raw)})
	}
	return parts
}

// TestDiskImageSeparateBoot: /boot on a partition of its own, between
// the ESP and the root: EXTLINUX and its boot sector there, GRUB and
// fstab pointing at it, the root's /boot an empty mount point.
func TestDiskImageSeparateBoot(t *testing.T) {
	dir := writeDisk(t, spec.Disk{Console: "ttyS1", Cmdline: "quiet", SeparateBoot: true}, bootableTar(t, true), "raw")
	raw := filepath.Join(dir, "vm-x86_64.raw")
	parts := partitions(t, raw)
	if len(parts) != 3 || parts[0].Attrs != "" || parts[1].Attrs != "LegacyBIOSBootable" || parts[2].Attrs != "" {
		t.Fatalf("want ESP, boot (legacy BIOS bootable), root: %+v", parts)
	}
	esp, boot, root := parts[0].path, parts[1].path, parts[2].path
	for _, fs := range []string{boot, root} {
		if b, err := exec.Command(hosttool.Need(t, "e2fsck", "e2fsprogs"), "-fn", fs).CombinedOutput(); err != nil {
			t.Errorf("e2fsck: %v\n%s", err, b)
		}
	}
	rootUUID := disktest.Ext4UUID(t, root)
	bootUUID := disktest.Ext4UUID(t, boot)
	checkBIOS(t, raw, boot, "gptmbr.bin", rootUUID, "")
	ls, _ := exec.Command("debugfs", "-R", "ls /boot", root).Output()
	if strings.Contains(string(ls), "vmlinuz") || !strings.Contains(string(ls), "..") {
		t.Errorf("the root's /boot is not an empty mount point:\n%s", ls)
	}
	ls, _ = exec.Command("debugfs", "-R", "ls /", boot).Output()
	for _, want := range []string{"vmlinuz-virt", "initramfs-virt", "efi", "extlinux.conf"} {
		if !strings.Contains(string(ls), want) {
			t.Errorf("no %s on /boot:\n%s", want, ls)
		}
	}
	fstab, _ := exec.Command("debugfs", "-R", "cat /etc/fstab", root).Output()
	if !strings.Contains(string(fstab), "UUID="+bootUUID+"\t/boot\text4\trw,relatime 0 2\nUUID=") {
		t.Errorf("fstab does not mount /boot before the ESP:\n%s", fstab)
	}
	cfg, _ := exec.Command(hosttool.Need(t, "mtype", "mtools"), "-i", esp, "::/EFI/BOOT/grub.cfg").Output()
	if want := "search --no-floppy --fs-uuid --set=root " + bootUUID + "\nlinux /vmlinuz-virt root=UUID=" + rootUUID + " rw console=ttyS1 quiet\ninitrd /initramfs-virt\n"; !strings.Contains(string(cfg), want) {
		t.Errorf("grub.cfg:\n%s\nwant\n%s", cfg, want)
	}
}
