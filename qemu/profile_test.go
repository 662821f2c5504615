package qemu

import (
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	p, err := Lookup("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	v := &VM{Profile: p, Accel: "tcg", MemoryMiB: 256, CPUs: 2, Kernel: "/k", Initrd: "/i", Cmdline: []string{"alpinist.agent=1"},
		Disks: []Disk{{Path: "/pkgs.img", ReadOnly: true, Serial: "pkgs"}, {Path: "/out.img", Serial: "out"}}, QMP: "/q.sock"}
	a, err := v.Args()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(a, " ")
	want := "-machine q35 -accel tcg -cpu qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt -m 256 -smp 2 -nodefaults -no-user-config -display none -no-reboot -serial stdio -kernel /k -initrd /i " +
		"-append console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check cryptomgr.notests rcupdate.rcu_expedited=1 i8042.noaux i8042.nokbd alpinist.agent=1 " +
		"-drive file=/pkgs.img,format=raw,if=none,id=disk0,cache=unsafe,readonly=on -device virtio-blk-pci,drive=disk0,serial=pkgs " +
		"-drive file=/out.img,format=raw,if=none,id=disk1,cache=unsafe -device virtio-blk-pci,drive=disk1,serial=out " +
		"-qmp unix:/q.sock,server=on,wait=off"
	if got != want {
		t.Errorf("args\n%s\nwant\n%s", got, want)
	}
	v.Accel = "kvm"
	if a, _ := v.Args(); !strings.Contains(strings.Join(a, " "), "-accel kvm -cpu host") {
		t.Errorf("kvm args %v", a)
	}
	if _, err := Lookup("mips"); err == nil || !strings.Contains(err.Error(), "aarch64") {
		t.Errorf("unknown arch: %v", err)
	}
	for _, bad := range []*VM{{Profile: p, Accel: "tcg"}, {Profile: p, Accel: "hvf", Kernel: "/k"}, {Profile: p, Accel: "tcg", Kernel: "/k", Disks: []Disk{{Path: "/a,b"}}}} {
		if _, err := bad.Args(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
