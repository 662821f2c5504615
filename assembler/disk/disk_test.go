package disk

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/alpinist/alpinist/assembler/ext4"
	"github.com/alpinist/alpinist/assembler/fat"
	"github.com/alpinist/alpinist/assembler/qcow2"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
)

var mtime = time.Unix(1700000000, 0)

// layout is a disk of an ESP and a root ext4 made from the test rootfs.
func layout(t *testing.T, table string) (Layout, string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(src, rootfstest.Tar(t), 0o644)
	root := filepath.Join(dir, "root.ext4")
	st, err := ext4.BuildFile(root, src, ext4.Options{Time: mtime, UUID: [16]byte{1, 2, 3, 4, 5, 6, 0x47, 8, 0x89}})
	if err != nil {
		t.Fatal(err)
	}
	files := []fat.File{{Path: "EFI/BOOT/BOOTX64.EFI", Data: bytes.Repeat([]byte("MZ efi"), 1000)}, {Path: "EFI/BOOT/grub.cfg", Data: []byte("linux /boot/vmlinuz-virt root=UUID=...\n")}}
	l := Layout{Table: table, Seed: []byte("seed"), MBRCode: bytes.Repeat([]byte{0xEB}, 440), Partitions: []Partition{
		{Name: "ESP", Type: TypeESP, MBRType: mbr.EFISystem, Size: 64 << 20, Fill: ESP("ESP", files, []byte("seed"), mtime)},
		{Name: "root", Type: RootType("x86_64"), MBRType: mbr.Linux, Size: int64(st.Blocks) * 4096, Bootable: true, Fill: CopyImage(root)},
	}}
	return l, dir
}

// extract copies a partition out for the file system checkers.
func extract(t *testing.T, img string, p Placed) string {
	in, _ := os.Open(img)
	defer in.Close()
	out := filepath.Join(t.TempDir(), p.Name+".img")
	f, _ := os.Create(out)
	defer f.Close()
	if _, err := io.Copy(f, io.NewSectionReader(in, p.Offset, p.Size)); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGPT(t *testing.T) {
	l, dir := layout(t, "gpt")
	img := filepath.Join(dir, "disk.raw")
	placed, err := Write(img, l)
	if err != nil {
		t.Fatal(err)
	}
	sgdisk := hosttool.Need(t, "sgdisk", "gdisk")
	out, err := exec.Command(sgdisk, "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	out, _ = exec.Command(sgdisk, "-i", "2", img).CombinedOutput()
	if !strings.Contains(string(out), "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709") || !strings.Contains(string(out), placed[1].GUID) ||
		!strings.Contains(string(out), "Attribute flags: 0000000000000004") {
		t.Errorf("sgdisk -i 2:\n%s", out)
	}
	fsckFat := hosttool.Need(t, "fsck.fat", "dosfstools")
	if out, err := exec.Command(fsckFat, "-n", extract(t, img, placed[0])).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
	if out, err := exec.Command(hosttool.Need(t, "mdir", "mtools"), "-i", extract(t, img, placed[0]), "::/EFI/BOOT").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "BOOTX64  EFI") || !strings.Contains(string(out), "grub     cfg") {
		t.Errorf("mdir: %v %s", err, out)
	}
	e2fsck := hosttool.Need(t, "e2fsck", "e2fsprogs")
	if out, err := exec.Command(e2fsck, "-fn", extract(t, img, placed[1])).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(img)
	if !bytes.Equal(raw[:440], l.MBRCode) {
		t.Error("no MBR boot code")
	}

	// Again: the same bytes. Then qcow2: qemu-img says it is the same disk.
	img2 := filepath.Join(dir, "again.raw")
	Write(img2, l)
	raw2, _ := os.ReadFile(img2)
	if !bytes.Equal(raw, raw2) {
		t.Error("two writes differ")
	}
	q := filepath.Join(dir, "disk.qcow2")
	if err := qcow2.WriteFile(context.Background(), q, img, qcow2.Options{}); err != nil {
		t.Fatal(err)
	}
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	for _, args := range [][]string{{"check", q}, {"compare", "-f", "raw", "-F", "qcow2", img, q}} {
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Errorf("qemu-img %s: %v\n%s", args[0], err, out)
		}
	}
}

func TestMBR(t *testing.T) {
	l, dir := layout(t, "mbr")
	img := filepath.Join(dir, "disk.raw")
	placed, err := Write(img, l)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sfdisk", "--dump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	for _, want := range []string{"label: dos", "type=ef", "type=83, bootable", "start=        2048"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sfdisk --dump lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(placed[1].GUID, "-02") {
		t.Errorf("PARTUUID %s", placed[1].GUID)
	}
	e2fsck := hosttool.Need(t, "e2fsck", "e2fsprogs")
	if out, err := exec.Command(e2fsck, "-fn", extract(t, img, placed[1])).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	for name, l := range map[string]Layout{
		"want gpt or mbr":     {Table: "apm"},
		"at most 440":         {Table: "gpt", MBRCode: make([]byte, 512)},
		"the partitions need": {Table: "gpt", Size: 1 << 20, Partitions: []Partition{{Name: "x", Size: 10 << 20}}},
	} {
		if _, err := Write(filepath.Join(dir, "x.raw"), l); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left: %v", ents)
	}
}

// TestDetect: the firmware a disk boots with, read back from GPT and MBR
// disks with and without an ESP, boot code and a bootable partition, raw
// and through the qcow2 reader.
func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name      string
		table     string
		esp, code bool
		bootable  bool
		want      Firmware
	}{
		{"gpt both", "gpt", true, true, true, Firmware{BIOS: true, UEFI: true}},
		{"gpt uefi", "gpt", true, false, false, Firmware{UEFI: true}},
		{"gpt no code", "gpt", true, false, true, Firmware{UEFI: true}},
		{"gpt bios", "gpt", false, true, true, Firmware{BIOS: true}},
		{"mbr both", "mbr", true, true, true, Firmware{BIOS: true, UEFI: true}},
		{"mbr bios", "mbr", false, true, true, Firmware{BIOS: true}},
		{"mbr inactive", "mbr", false, true, false, Firmware{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, dir := layout(t, tc.table)
			if !tc.esp {
				l.Partitions = l.Partitions[1:]
			}
			if !tc.code {
				l.MBRCode = nil
			}
			l.Partitions[len(l.Partitions)-1].Bootable = tc.bootable
			img := filepath.Join(dir, "disk.raw")
			if _, err := Write(img, l); err != nil {
				t.Fatal(err)
			}
			f, _ := os.Open(img)
			defer f.Close()
			if got, err := Detect(f); err != nil || got != tc.want {
				t.Errorf("raw: %+v %v, want %+v", got, err, tc.want)
			}
			q := filepath.Join(dir, "disk.qcow2")
			if err := qcow2.WriteFile(context.Background(), q, img, qcow2.Options{Compress: true}); err != nil {
				t.Fatal(err)
			}
			qf, _ := os.Open(q)
			defer qf.Close()
			r, err := qcow2.NewReader(qf)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := Detect(r); err != nil || got != tc.want {
				t.Errorf("qcow2: %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := Detect(bytes.NewReader(make([]byte, 4096))); err == nil || !strings.Contains(err.Error(), "no partition table") {
		t.Errorf("blank disk: %v", err)
	}
}
