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

// TestArgsPerArch: pseries rounds memory up to 256 MiB; s390x's disks
// are virtio-ccw; the arm machines run an ARMv7 CPU for armhf too.
func TestArgsPerArch(t *testing.T) {
	for _, tc := range []struct {
		arch string
		mem  int
		want []string
	}{
		{"ppc64le", 415, []string{"-m 512 ", "-machine pseries,x-vof=on,", "console=hvc0", "virtio-blk-pci,drive=disk0"}},
		{"ppc64le", 256, []string{"-m 256 "}},
		{"s390x", 415, []string{"-m 415 ", "-machine s390-ccw-virtio", "console=ttysclp0", "-device virtio-blk-ccw,drive=disk0"}},
		{"armhf", 300, []string{"-cpu cortex-a15 ", "console=ttyAMA0"}},
		{"x86", 300, []string{"-cpu qemu32 ", "console=ttyS0"}},
	} {
		p, err := Lookup(tc.arch)
		if err != nil {
			t.Fatal(err)
		}
		v := &VM{Profile: p, Accel: "tcg", MemoryMiB: tc.mem, Kernel: "/k", Disks: []Disk{{Path: "/d.img"}}}
		a, err := v.Args()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(a, " ")
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q not in %s", tc.arch, w, got)
			}
		}
	}
}
