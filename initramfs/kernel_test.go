package initramfs

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/vmtest"

	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/qemu"
)

// TestKitBootsAndLoadsModules builds the build VM kit from the generated
// linux-virt for each arch, boots it with a busybox /init that loads the
// modules in the kit's order, and checks that a virtio disk appears.
func TestKitBootsAndLoadsModules(t *testing.T) {
	repo := testrepo.Generated(t)
	keys, err := sign.LoadKeyring(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range vmtest.Arches {
		t.Run(arch, func(t *testing.T) {
			p, bin := vmtest.Binary(t, arch)
			pkgs, _ := filepath.Glob(filepath.Join(repo, "main", arch, "linux-virt-*.apk"))
			dir := t.TempDir()
			kit, err := KitFromPackage(pkgs[0], keys, dir, BuildVMModules("pci"))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range kit.Modules {
				names = append(names, m.Name)
			}
			t.Logf("%s: kernel %s, modules %v", arch, kit.Release, names)
			busybox, err := os.ReadFile(testrepo.Extract(t, arch, "busybox", "bin/busybox"))
			must(t, err)
			a := New()
			must(t, a.File("bin/busybox", 0o755, busybox))
			must(t, kit.AddTo(a))
			must(t, a.CharDev("dev/console", 0o600, 5, 1))
			for _, d := range []string{"proc", "sys"} {
				must(t, a.Dir(d, 0o755))
			}
			must(t, a.File("init", 0o755, []byte(`#!/bin/busybox sh
b=/bin/busybox
$b mount -t devtmpfs dev /dev
$b mount -t proc proc /proc
$b mount -t sysfs sys /sys
while read wave; do for m in $wave; do $b insmod /lib/modules/$m || $b echo INSMOD-FAILED $m; done; done < /lib/modules/load
i=0
while [ ! -e /sys/block/vda ] && [ $i -lt 100 ]; do $b usleep 50000; i=$((i+1)); done
$b echo DISK-SERIAL=$($b cat /sys/block/vda/serial)
$b poweroff -f
`)))
			initrd := filepath.Join(dir, "initrd")
			data, err := a.Bytes()
			must(t, err)
			must(t, os.WriteFile(initrd, data, 0o644))
			disk := filepath.Join(dir, "disk.img")
			must(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
			v := &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 256, Kernel: kit.Kernel, Initrd: initrd,
				Disks: []qemu.Disk{{Path: disk, ReadOnly: true, Serial: "alpinist-pkgs"}}}
			out, _ := vmtest.Boot(t, v, bin)
			if strings.Contains(out, "INSMOD-FAILED") || !strings.Contains(out, "DISK-SERIAL=alpinist-pkgs") {
				t.Errorf("console:\n%s", out)
			}
		})
	}
}

// TestKitFromFiles: the --kernel/--modules override gives the same kit as
// the package, from an unpacked linux-virt.
func TestKitFromFiles(t *testing.T) {
	repo := testrepo.Generated(t)
	keys, err := sign.LoadKeyring(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs, _ := filepath.Glob(filepath.Join(repo, "main", "x86_64", "linux-virt-*.apk"))
	fromPkg, err := KitFromPackage(pkgs[0], keys, t.TempDir(), BuildVMModules("pci"))
	if err != nil {
		t.Fatal(err)
	}
	// Unpack the package with the pkg command's reader.
	root := t.TempDir()
	f, _ := os.Open(pkgs[0])
	defer f.Close()
	if _, err := apkfile.Read(f, apkfile.ReadOptions{Keys: keys, Entry: func(h *tar.Header, r io.Reader) error {
		p := filepath.Join(root, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			return os.WriteFile(p, data, 0o644)
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	fromFiles, err := KitFromFiles(filepath.Join(root, "boot", "vmlinuz-virt"), filepath.Join(root, "lib", "modules", fromPkg.Release), BuildVMModules("pci"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fromFiles.Modules) != len(fromPkg.Modules) || fromFiles.Release != fromPkg.Release {
		t.Fatalf("%d modules (%s) vs %d (%s)", len(fromFiles.Modules), fromFiles.Release, len(fromPkg.Modules), fromPkg.Release)
	}
	for i := range fromPkg.Modules {
		if fromFiles.Modules[i].Name != fromPkg.Modules[i].Name || !bytes.Equal(fromFiles.Modules[i].Data, fromPkg.Modules[i].Data) {
			t.Errorf("module %d differs: %s vs %s", i, fromFiles.Modules[i].Name, fromPkg.Modules[i].Name)
		}
	}
	if _, err := KitFromFiles(filepath.Join(root, "nope"), "", nil); err == nil {
		t.Error("missing kernel accepted")
	}
	if _, err := KitFromFiles(filepath.Join(root, "boot", "vmlinuz-virt"), root, BuildVMModules("pci")); err == nil {
		t.Error("modules dir without modules.dep accepted")
	}
}
