package output

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/hosttool"
	"github.com/alpinist/alpinist/internal/rootfstest"
	"github.com/alpinist/alpinist/spec"
)

// bootableTar is the test rootfs with what a disk needs: a kernel, its
// initramfs and GRUB's EFI image (stand-ins: the disk is not booted here;
// cmd/alpinist's TestBootDiskUEFI boots real ones).
func bootableTar(t *testing.T) []byte {
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
	for _, f := range []struct{ name, body string }{
		{"boot/vmlinuz-virt", "kernel"}, {"boot/initramfs-virt", "initramfs"}, {"boot/efi/EFI/BOOT/BOOTX64.EFI", "MZ grub"},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body)), ModTime: rootfstest.Created})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	return b.Bytes()
}

func TestDiskImage(t *testing.T) {
	dir := t.TempDir()
	sp := &spec.Spec{Name: "vm", Disk: &spec.Disk{Size: 200 << 20, Console: "ttyS1", Cmdline: "quiet"}}
	s, err := New(Plan{Spec: sp, Dir: dir, Outputs: []string{"raw", "qcow2"}, Created: rootfstest.Created, Tool: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tarPath := filepath.Join(dir, "vm-x86_64.tar")
	os.WriteFile(tarPath, bootableTar(t), 0o644)
	if _, err := s.Add(Arch{Arch: "x86_64", Tar: tarPath}); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "vm-x86_64.raw")
	st, err := os.Stat(raw)
	if err != nil || st.Size() != 200<<20 {
		t.Fatalf("raw: %v, %v bytes", err, st)
	}
	sgdisk := hosttool.Need(t, "sgdisk", "gdisk")
	if b, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(b), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, b)
	}
	// The partitions, out of the image.
	part := func(n int) string {
		b, _ := exec.Command(sgdisk, "-i", string(rune('0'+n)), raw).Output()
		var first, last int64
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "First sector: "); ok {
				first = atoi(strings.Fields(v)[0])
			}
			if v, ok := strings.CutPrefix(l, "Last sector: "); ok {
				last = atoi(strings.Fields(v)[0])
			}
		}
		in, _ := os.Open(raw)
		defer in.Close()
		p := filepath.Join(t.TempDir(), "part")
		out, _ := os.Create(p)
		defer out.Close()
		io.Copy(out, io.NewSectionReader(in, first*512, (last-first+1)*512))
		return p
	}
	esp, root := part(1), part(2)
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
	uuid, _ := exec.Command("debugfs", "-R", "stats", root).Output()
	var rootUUID string
	for _, l := range strings.Split(string(uuid), "\n") {
		if v, ok := strings.CutPrefix(l, "Filesystem UUID:"); ok {
			rootUUID = strings.TrimSpace(v)
		}
	}
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
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	if b, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", raw, filepath.Join(dir, "vm-x86_64.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare: %v\n%s", err, b)
	}

	// What a disk cannot be made without.
	for want, tc := range map[string]struct {
		tar  []byte
		disk spec.Disk
	}{
		"has no kernel":          {rootfstest.Tar(t), spec.Disk{}},
		"bios (extlinux) is not": {bootableTar(t), spec.Disk{Boot: []string{"bios"}}},
		"leaves no room":         {bootableTar(t), spec.Disk{Size: 70 << 20}},
	} {
		d := tc.disk
		s, _ := New(Plan{Spec: &spec.Spec{Name: "bad", Disk: &d}, Dir: dir, Outputs: []string{"qcow2"}, Created: rootfstest.Created, Tool: "t"})
		p := filepath.Join(dir, "bad-x86_64.tar")
		os.WriteFile(p, tc.tar, 0o644)
		if _, err := s.Add(Arch{Arch: "x86_64", Tar: p}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
		s.Close()
	}
}

func atoi(s string) int64 {
	var n int64
	for _, c := range s {
		n = n*10 + int64(c-'0')
	}
	return n
}
