package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/vmtest"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/agent/proto"
	"github.com/alpinist/alpinist/apk/sign"
	archtab "github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/qemu"
)

// TestAgentBootsToReady builds the agent for each tested arch, boots it as
// /init with the kit from the generated linux-virt under TCG, and checks
// its framed reports: ready (right arch, the disk found by serial), done,
// then the VM powers off.
func TestAgentBootsToReady(t *testing.T) {
	repo := testrepo.Generated(t)
	keys, err := sign.LoadKeyring(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range vmtest.Arches {
		t.Run(arch, func(t *testing.T) {
			p, bin := vmtest.Binary(t, arch)
			dir := t.TempDir()
			pkgs, _ := filepath.Glob(filepath.Join(repo, "main", arch, "linux-virt-*.apk"))
			kit, err := initramfs.KitFromPackage(pkgs[0], keys, dir, initramfs.BuildVMModules(p.Transport))
			if err != nil {
				t.Fatal(err)
			}
			a := initramfs.New()
			data, err := embed.Agent(arch)
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range []error{a.File("init", 0o755, data), kit.AddTo(a), a.CharDev("dev/console", 0o600, 5, 1)} {
				if err != nil {
					t.Fatal(err)
				}
			}
			initrd := filepath.Join(dir, "initrd")
			img, err := a.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(initrd, img, 0o644)
			disk := filepath.Join(dir, "pkgs.img")
			os.WriteFile(disk, make([]byte, 1<<20), 0o644)
			v := &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 256, Kernel: kit.Kernel, Initrd: initrd,
				Cmdline: []string{"alpinist.disks=pkgs", "alpinist.mode=ready"}, Disks: []qemu.Disk{{Path: disk, ReadOnly: true, Serial: "pkgs"}}}
			var console bytes.Buffer
			res, err := qemu.Run(context.Background(), v, qemu.RunOptions{Binary: bin, Console: &console, BootTimeout: 2 * time.Minute})
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s", err, console.String())
			}
			msgs := res.Messages
			if len(msgs) != 2 || msgs[0].Type != proto.TypeReady || msgs[1].Type != proto.TypeDone {
				t.Fatalf("messages %+v", msgs)
			}
			r := msgs[0]
			if a, _ := archtab.Lookup(arch); r.Arch != a.UnameMachine() || len(r.Disks) != 1 || r.Disks[0] != "pkgs" || r.Kernel != kit.Release {
				t.Errorf("ready: %+v", r)
			}
			t.Logf("%s: agent ready after %v (guest uptime %v); QEMU ran %v in all", arch, res.Ready.Round(time.Millisecond), r.Uptime.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
		})
	}
}

// TestWatchdogRealVM: a real VM whose /init never reports is killed by
// the boot watchdog with a clear error; one whose kernel panics (no
// init at all) ends the run with QEMU's exit and the console's tail.
func TestWatchdogRealVM(t *testing.T) {
	p, bin := vmtest.Binary(t, "x86_64")
	kernel := testrepo.Extract(t, "x86_64", "linux-virt", "boot/vmlinuz-virt")
	busybox, err := os.ReadFile(testrepo.Extract(t, "x86_64", "busybox", "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	a := initramfs.New()
	for _, err := range []error{a.File("bin/busybox", 0o755, busybox), a.CharDev("dev/console", 0o600, 5, 1),
		a.File("init", 0o755, []byte("#!/bin/busybox sh\n/bin/busybox echo hanging on purpose\nexec /bin/busybox sleep 1000\n"))} {
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd")
	img, _ := a.Bytes()
	os.WriteFile(initrd, img, 0o644)

	start := time.Now()
	_, err = qemu.Run(context.Background(), &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 256, Kernel: kernel, Initrd: initrd},
		qemu.RunOptions{Binary: bin, BootTimeout: 8 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "did not report ready within 8s") || !strings.Contains(err.Error(), "hanging on purpose") {
		t.Errorf("hung VM: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the watchdog took %v", d)
	}
	_, err = qemu.Run(context.Background(), &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 256, Kernel: kernel, Cmdline: []string{"loglevel=4"}},
		qemu.RunOptions{Binary: bin, BootTimeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "QEMU ended") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Errorf("crashed VM: %v", err)
	}
}
