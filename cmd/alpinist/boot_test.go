package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/assembler/ext4"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/hosttool"
	"github.com/alpinist/alpinist/internal/vmtest"
	"github.com/alpinist/alpinist/qemu"
)

// ext4UUID reads an ext4 image's UUID.
func ext4UUID(t *testing.T, img string) string {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	uuid, _, ok := ext4.Identify(f)
	if !ok {
		t.Fatalf("%s is not ext4", img)
	}
	return uuid
}

// TestBootRootfs builds a system with a kernel, writes its ext4 image,
// and boots it (x86_64, TCG): the kernel from the rootfs, the agent as
// the initramfs switching to root=UUID=, the system's own init, up to
// the getty's login prompt on the serial console.
func TestBootRootfs(t *testing.T) {
	td := generatedRepo(t)
	p, bin := vmtest.Binary(t, "x86_64")
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	spec := filepath.Join(dir, "bootme.yaml")
	writeFile(t, spec, `name: bootme
arch: [x86_64]
repositories: [`+repoDir+`/main]
keys: [`+repoDir+`/keys/]
packages: [alpine-base, linux-virt]
hostname: bootme
disk: {console: ttyS0}
outputs: [tar, ext4]
`, 0o644)
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", spec, "-o", out, "--cache", t.TempDir())
	kit, err := initramfs.KitFromTar(filepath.Join(out, "bootme-x86_64.tar"), dir, initramfs.BootModules)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := embed.Agent("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	ar, err := initramfs.WithAgent(agent, kit)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd")
	data, err := ar.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(initrd, data, 0o644)
	img := filepath.Join(out, "bootme-x86_64.ext4")
	v := &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 512, Kernel: kit.Kernel, Initrd: initrd,
		Cmdline: []string{"root=UUID=" + ext4UUID(t, img), "rw"}, Disks: []qemu.Disk{{Path: img}}}
	args, err := v.Args()
	if err != nil {
		t.Fatal(err)
	}
	var con strings.Builder
	if err := qemu.RunUntil(context.Background(), bin, args, &con, "login: ", 4*time.Minute); err != nil {
		t.Fatalf("%v:\n%s", err, con.String())
	}
	console := con.String()
	// The getty of the system's own inittab, with its /etc/issue: the
	// root switched to the ext4 image. (The test repository has no
	// OpenRC, so its sysinit lines fail and the hostname stays unset.)
	if !strings.Contains(console, "Welcome to Alpine Linux") || !strings.Contains(console, "(/dev/ttyS0)") {
		t.Errorf("the login prompt is not the system's:\n%s", console)
	}
}

// firmware checks that arch's UEFI firmware is installed (alpinist run
// finds it the same way): under CI a missing one fails, else it skips.
func firmware(t *testing.T, arch string) {
	t.Helper()
	if _, err := qemu.FindUEFI(arch); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (make test installs it)", err)
		}
		t.Skip(err)
	}
}

// TestBootDiskUEFI builds the bootable qcow2 of a spec (GPT, an ESP with
// GRUB made in the build VM, the ext4 root with fstab and alpinist's
// initramfs) for x86_64 and aarch64, and boots each under UEFI (OVMF,
// AAVMF; TCG) to the login prompt on its serial console.
func TestBootDiskUEFI(t *testing.T) {
	td := generatedRepo(t)
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			p, _ := vmtest.Binary(t, arch)
			firmware(t, arch) // alpinist run finds it; the test says what to install
			dir := t.TempDir()
			spec := filepath.Join(dir, "uefi.yaml")
			writeFile(t, spec, `name: uefi
arch: [`+arch+`]
repositories: [`+repoDir+`/main]
keys: [`+repoDir+`/keys/]
packages: [alpine-base, linux-virt, grub-efi]
disk: {boot: [uefi]}
outputs: [qcow2, raw]
`, 0o644)
			out := filepath.Join(dir, "out")
			mustCLI(t, "build", spec, "-o", out, "--cache", t.TempDir())
			if arch == "x86_64" {
				// Building again gives the same disk, byte for byte.
				again := filepath.Join(dir, "again")
				mustCLI(t, "build", spec, "-o", again, "--cache", t.TempDir())
				a, b := fileSums(t, out), fileSums(t, again)
				for _, f := range []string{"uefi-x86_64.raw", "uefi-x86_64.qcow2"} {
					if a[f] == "" || a[f] != b[f] {
						t.Errorf("%s differs between two builds", f)
					}
				}
			}
			img := filepath.Join(out, "uefi-"+arch+".qcow2")
			raw := filepath.Join(out, "uefi-"+arch+".raw")
			qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
			for _, args := range [][]string{{"check", img}, {"compare", "-f", "raw", "-F", "qcow2", raw, img}} {
				if b, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
					t.Errorf("qemu-img %s: %v\n%s", args[0], err, b)
				}
			}
			sgdisk := hosttool.Need(t, "sgdisk", "gdisk")
			if b, err := exec.Command(sgdisk, "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(b), "No problems found") {
				t.Errorf("sgdisk -v: %v\n%s", err, b)
			}
			// alpinist run boots it, until the login prompt.
			code, console, errs := cli(t, "run", img, "--until", "login: ", "--timeout", "8m")
			if code != 0 {
				t.Fatalf("alpinist run: exit %d: %s\n%s", code, errs, console)
			}
			if !strings.Contains(console, "Welcome to Alpine Linux") || !strings.Contains(console, "(/dev/"+p.Console+")") {
				t.Errorf("the login prompt is not the system's on %s:\n%s", p.Console, console)
			}
			t.Logf("console, last lines:\n%s", lastLines(console, 12))
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "x-aarch64.raw")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	for args, want := range map[string]string{
		"run " + filepath.Join(dir, "missing.qcow2"): "no such file",
		"run " + img + " --bios":                     "boots with UEFI only",
		"run " + img + " --arch m68k":                "no VM profile",
	} {
		if code, _, errs := cli(t, strings.Fields(args)...); code == 0 || !strings.Contains(errs, want) {
			t.Errorf("alpinist %s: exit %d %q, want %q", args, code, errs, want)
		}
	}
}
