package qemu

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestDiskVMArgs(t *testing.T) {
	p, _ := Lookup("aarch64")
	v := &DiskVM{Profile: p, Accel: "tcg", Image: "/x/disk.qcow2", Format: "qcow2", Snapshot: true, Monitor: true,
		UEFI: Firmware{Code: "/fw/code.fd", Vars: "/tmp/vars.fd"}}
	args, err := v.Args()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	for _, want := range []string{
		"-machine virt,gic-version=3 -accel tcg -cpu max,pauth=off,sve=off -m 256 -smp 1",
		"-serial mon:stdio",
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/code.fd -drive if=pflash,format=raw,unit=1,file=/tmp/vars.fd",
		"-drive file=/x/disk.qcow2,format=qcow2,if=none,id=disk,snapshot=on -device virtio-blk-pci,drive=disk",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	for _, bad := range []DiskVM{
		{Profile: p, Accel: "hvf", Image: "a", Format: "raw"},
		{Profile: p, Accel: "tcg", Image: "a", Format: "vmdk"},
		{Profile: p, Accel: "tcg", Image: "a,b", Format: "raw"},
		{Profile: p, Accel: "tcg", Image: "a", Format: "raw", Media: "floppy"},
	} {
		if _, err := bad.Args(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := FindUEFI("s390x"); err == nil {
		t.Error("UEFI firmware for s390x")
	}
}

// TestDiskVMMedia: an ISO as a CD (virtio-scsi, read-only, no
// snapshot), a USB stick (XHCI) or a disk.
func TestDiskVMMedia(t *testing.T) {
	p, _ := Lookup("x86_64")
	for media, want := range map[string]string{
		"cdrom": "-drive file=/x/a.iso,format=raw,if=none,id=disk,media=cdrom,readonly=on -device virtio-scsi-pci,id=cdscsi -device scsi-cd,drive=disk,bus=cdscsi.0,bootindex=0",
		"usb":   "-drive file=/x/a.iso,format=raw,if=none,id=disk,snapshot=on -device qemu-xhci,id=xhci -device usb-storage,bus=xhci.0,drive=disk,removable=on,bootindex=0",
		"disk":  "-drive file=/x/a.iso,format=raw,if=none,id=disk,snapshot=on -device virtio-blk-pci,drive=disk",
	} {
		v := &DiskVM{Profile: p, Accel: "tcg", Image: "/x/a.iso", Format: "raw", Snapshot: true, Media: media}
		args, err := v.Args()
		if got := strings.Join(args, " "); err != nil || !strings.Contains(got, want) {
			t.Errorf("%s: %v\n%s", media, err, got)
		}
	}
}

// TestFindUEFIMissing: with no firmware where distributions put it, the
// error says what to install, per arch.
func TestFindUEFIMissing(t *testing.T) {
	saved := firmwares
	defer func() { firmwares = saved }()
	firmwares = map[string]struct {
		paths   []Firmware
		install string
	}{}
	for arch, f := range saved {
		missing := f
		missing.paths = []Firmware{{Code: filepath.Join(t.TempDir(), "CODE.fd"), Vars: filepath.Join(t.TempDir(), "VARS.fd")}}
		firmwares[arch] = missing
	}
	for arch, want := range map[string]string{"x86_64": "apt-get install ovmf", "aarch64": "apt-get install qemu-efi-aarch64"} {
		if _, err := FindUEFI(arch); err == nil || !strings.Contains(err.Error(), "no UEFI firmware for "+arch+" found") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", arch, err)
		}
	}
}
