package initramfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/vmtest"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/qemu"
)

func TestArchive(t *testing.T) {
	build := func() []byte {
		a := New()
		must(t, a.File("bin/tool", 0o755, []byte("#!/bin/sh\n")))
		must(t, a.File("etc/conf", 0o644, []byte("x")))
		must(t, a.Dir("tmp", 0o1777))
		must(t, a.Symlink("init", "bin/tool"))
		must(t, a.CharDev("dev/console", 0o600, 5, 1))
		b, err := a.Bytes()
		must(t, err)
		return b
	}
	first := build()
	if !bytes.Equal(first, build()) {
		t.Fatal("not reproducible")
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(first)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Info.String())
	}
	text := strings.Join(got, "\n")
	for _, want := range []string{"bin", "bin/tool", "dev/console", "etc/conf", "init", "tmp"} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s in\n%s", want, text)
		}
	}
	names := []string{}
	for _, r := range recs {
		names = append(names, r.Name)
	}
	if strings.Join(names, " ") != "bin bin/tool dev dev/console etc etc/conf init tmp" {
		t.Errorf("order: %v", names)
	}
	if !strings.HasSuffix(string(first), "TRAILER!!!\x00\x00\x00\x00") && !strings.Contains(string(first[len(first)-200:]), "TRAILER!!!") {
		t.Error("no cpio trailer at the end")
	}
	for _, r := range recs {
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: not reproducible: %+v", r.Name, r.Info)
		}
	}
	a := New()
	must(t, a.File("x", 0o644, nil))
	if err := a.File("/x", 0o644, nil); err == nil {
		t.Error("duplicate accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBootBusyboxInit boots each tested arch's kernel from the generated
// repository with an initramfs whose /init is a busybox script: it must
// print a marker and power the VM off.
func TestBootBusyboxInit(t *testing.T) {
	for _, arch := range vmtest.Arches {
		t.Run(arch, func(t *testing.T) {
			p, bin := vmtest.Binary(t, arch)
			kernel := testrepo.Extract(t, arch, "linux-virt", "boot/vmlinuz-virt")
			busybox, err := os.ReadFile(testrepo.Extract(t, arch, "busybox", "bin/busybox"))
			must(t, err)
			a := New()
			must(t, a.File("bin/busybox", 0o755, busybox))
			must(t, a.File("init", 0o755, []byte("#!/bin/busybox sh\n/bin/busybox echo ALPINIST-INITRAMFS-OK $(/bin/busybox uname -m)\n/bin/busybox poweroff -f\n")))
			must(t, a.CharDev("dev/console", 0o600, 5, 1))
			initrd := filepath.Join(t.TempDir(), "initrd")
			data, err := a.Bytes()
			must(t, err)
			must(t, os.WriteFile(initrd, data, 0o644))
			v := &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 256, Kernel: kernel, Initrd: initrd}
			out, _ := vmtest.Boot(t, v, bin)
			want := map[string]string{"x86_64": "x86_64", "aarch64": "aarch64", "riscv64": "riscv64"}[arch]
			if !strings.Contains(out, "ALPINIST-INITRAMFS-OK "+want) {
				t.Errorf("no marker on the console:\n%s", out)
			}
		})
	}
}
