package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/testkit/disktest"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/qemu"
)

// TestBootRootfs builds a system with a kernel, writes its ext4 image,
// and boots it (x86_64, TCG): the kernel from the rootfs, the agent as
// the initramfs switching to root=UUID=, the system's own init, up to
// the getty's login prompt on the serial console.
func TestBootRootfs(t *testing.T) {
	p, bin := vmtest.Binary(t, "x86_64")
	dir := t.TempDir()
	out := buildKernelSystem(t, dir, "bootme", "hostname: bootme\n", "tar,ext4")
	kernel, initrd := agentInitramfs(t, filepath.Join(out, "bootme-x86_64.tar"), dir, initramfs.BootModules)
	img := filepath.Join(out, "bootme-x86_64.ext4")
	console := bootToGetty(t, bin, &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 512, Kernel: kernel, Initrd: initrd,
		Cmdline: []string{"root=UUID=" + disktest.Ext4UUID(t, img), "rw"}, Disks: []qemu.Disk{{Path: img}}})
	// The getty of the system's own inittab, with its /etc/issue: the
	// root switched to the ext4 image. (The test repository has no
	// OpenRC, so its sysinit lines fail and the hostname stays unset.)
	if !strings.Contains(console, "Welcome to Alpine Linux") || !strings.Contains(console, "(/dev/ttyS0)") {
		t.Errorf("the login prompt is not the system's:\n%s", console)
	}
}

// TestBootLive boots the agent as a live system's initramfs: root=
// live:LABEL= finds the ISO 9660 volume so labeled (here a virtio disk),
// unpacks its rootfs.tar.gz into a tmpfs and switches to it: the
// system's getty on the serial console, its root a tmpfs.
func TestBootLive(t *testing.T) {
	p, bin := vmtest.Binary(t, "x86_64")
	dir := t.TempDir()
	out := buildKernelSystem(t, dir, "live", "", "tar,tar.gz")
	kernel, initrd := agentInitramfs(t, filepath.Join(out, "live-x86_64.tar"), dir, append(slices.Clone(initramfs.BootModules), "isofs"))
	// The live volume: an ISO 9660 image holding the gzip'ed rootfs.
	iso := filepath.Join(dir, "live.iso")
	gz, err := os.ReadFile(filepath.Join(out, "live-x86_64.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := qemu.WriteISO(iso, "ALPINIST_LIVE", []qemu.ISOFile{{Name: "rootfs.tar.gz", Data: gz}}); err != nil {
		t.Fatal(err)
	}
	console := bootToGetty(t, bin, &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 512, Kernel: kernel, Initrd: initrd,
		Cmdline: []string{"root=live:LABEL=ALPINIST_LIVE"}, Disks: []qemu.Disk{{Path: iso, ReadOnly: true}}})
	if !strings.Contains(console, "Welcome to Alpine Linux") || !strings.Contains(console, "(/dev/ttyS0)") {
		t.Errorf("the login prompt is not the system's:\n%s", console)
	}
}

// buildKernelSystem builds NAME: the test repository's alpine-base and
// linux-virt (x86_64, a getty on ttyS0) and the spec lines extra, as
// outputs, into dir/out, which it returns.
func buildKernelSystem(t *testing.T, dir, name, extra, outputs string) string {
	t.Helper()
	repoDir, err := filepath.Abs(filepath.Join(generatedRepo(t), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, name+".yaml")
	writeFile(t, spec, "name: "+name+"\narch: [x86_64]\nrepositories: ["+repoDir+"/main]\nkeys: ["+repoDir+"/keys/]\n"+
		"packages: [alpine-base, linux-virt]\ndisk: {console: ttyS0}\n"+extra, 0o644)
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", spec, "-o", out, "--cache", t.TempDir(), "--output", outputs)
	return out
}

// agentInitramfs makes the initramfs of the agent as a booted system's,
// with the modules of the kernel in the rootfs tar at tarPath, and gives
// that kernel's path and the initramfs's.
func agentInitramfs(t *testing.T, tarPath, dir string, modules []string) (kernel, initrd string) {
	t.Helper()
	kit, err := initramfs.KitFromTar(tarPath, dir, modules)
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
	data, err := ar.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	initrd = filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return kit.Kernel, initrd
}

// bootToGetty boots v with QEMU bin until a login prompt, and gives the
// console.
func bootToGetty(t *testing.T, bin string, v *qemu.VM) string {
	t.Helper()
	args, err := v.Args()
	if err != nil {
		t.Fatal(err)
	}
	var con strings.Builder
	if err := qemu.RunUntil(context.Background(), bin, args, &con, "login: ", 4*time.Minute); err != nil {
		t.Fatalf("%v:\n%s", err, con.String())
	}
	return con.String()
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

// checkDisk checks a disk image with tools no one here wrote: qemu-img
// check of the qcow2 and compare with the raw image, the partition table
// (sgdisk -v for GPT), fsck.fat -n of the ESP and e2fsck -fn of the root.
// It returns the partition table as sfdisk reads it.
func checkDisk(t *testing.T, raw, qcow2 string) disktest.Table {
	t.Helper()
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	for _, args := range [][]string{{"check", qcow2}, {"compare", "-f", "raw", "-F", "qcow2", raw, qcow2}} {
		if b, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Errorf("qemu-img %s: %v\n%s", args[0], err, b)
		}
	}
	pt := disktest.Read(t, raw)
	if pt.Label == "gpt" {
		if b, err := exec.Command(hosttool.Need(t, "sgdisk", "gdisk"), "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(b), "No problems found") {
			t.Errorf("sgdisk -v: %v\n%s", err, b)
		}
	}
	for _, p := range pt.Partitions {
		part := p.CopyOut(t, raw)
		var cmd *exec.Cmd
		switch strings.ToUpper(p.Type) {
		case "9E1A2D38-C612-4316-AA26-8B49521E5A8B": // PReP: GRUB's core image, no file system
			os.Remove(part)
			continue
		case "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EF":
			cmd = exec.Command(hosttool.Need(t, "fsck.fat", "dosfstools"), "-n", part)
		default:
			cmd = exec.Command(hosttool.Need(t, "e2fsck", "e2fsprogs"), "-fn", part)
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s of partition %s: %v\n%s", filepath.Base(cmd.Path), p.Node, err, b)
		}
		os.Remove(part)
	}
	return pt
}

// bootToLogin boots a disk image with alpinist run to the login prompt
// of the system's getty on the serial console. flag is --bios, --uefi or
// "" (run picks the firmware from the disk); wantBIOS says which it
// must have booted with.
func bootToLogin(t *testing.T, img, arch, flag string, wantBIOS bool) {
	t.Helper()
	p, _ := vmtest.Binary(t, arch)
	args := []string{"run", img, "--until", "login: ", "--timeout", "8m"}
	if flag != "" {
		args = append(args, flag)
	}
	if !wantBIOS {
		firmware(t, arch) // alpinist run finds it; the test says what to install
	}
	code, console, errs := cli(t, args...)
	if code != 0 {
		t.Fatalf("alpinist %s: exit %d: %s\n%s", strings.Join(args, " "), code, errs, console)
	}
	if !strings.Contains(console, "Welcome to Alpine Linux") || !strings.Contains(console, "(/dev/"+p.Console+")") {
		t.Errorf("the login prompt is not the system's on %s:\n%s", p.Console, console)
	}
	if bios := strings.Contains(console, "SYSLINUX 6.04"); bios != wantBIOS {
		t.Errorf("booted with EXTLINUX: %v, want %v:\n%s", bios, wantBIOS, console)
	}
	if uefi := strings.Contains(errs, "uefi=true"); uefi == wantBIOS {
		t.Errorf("alpinist run's firmware is not the one wanted (BIOS: %v):\n%s", wantBIOS, errs)
	}
	t.Logf("console, last lines:\n%s", lastLines(console, 6))
}

// TestBootDiskMBR builds testdata/specs/demo-mbr.yaml (demo.yaml on a
// BIOS-only MBR disk, /boot on a partition of its own) twice, checks the
// two disks are the same bytes and sound, and boots it with SeaBIOS
// (TCG): mbr.bin, EXTLINUX on /boot, the login prompt, /boot mounted.
// TestBuildDemo boots demo.yaml's GPT disks.
func TestBootDiskMBR(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	spec := filepath.Join(td, "specs", "demo-mbr.yaml")
	cache := t.TempDir()
	out, again := t.TempDir(), t.TempDir()
	mustCLI(t, "build", spec, "-o", out, "--cache", cache, "--output", "raw,qcow2")
	mustCLI(t, "build", spec, "-o", again, "--cache", cache, "--output", "raw,qcow2")
	a, b := fileSums(t, out), fileSums(t, again)
	for _, f := range []string{"demo-mbr-x86_64.raw", "demo-mbr-x86_64.qcow2"} {
		if a[f] == "" || a[f] != b[f] {
			t.Errorf("%s differs between two builds", f)
		}
	}
	raw, img := filepath.Join(out, "demo-mbr-x86_64.raw"), filepath.Join(out, "demo-mbr-x86_64.qcow2")
	pt := checkDisk(t, raw, img)
	if pt.Label != "dos" || len(pt.Partitions) != 2 || !pt.Partitions[0].Bootable || pt.Partitions[1].Bootable || pt.Partitions[0].Type != "83" || pt.Partitions[1].Type != "83" {
		t.Errorf("want an MBR with two Linux partitions, /boot active: %+v", pt)
	}
	bootToLogin(t, img, "x86_64", "", true) // run finds no ESP: the BIOS
}

// checkConverted has qemu-img read a disk image converted from raw in
// format: its virtual size and every byte are the raw image's.
func checkConverted(t *testing.T, raw, img, format string) {
	t.Helper()
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	disktest.SameAsRaw(t, raw, img, format)
	out, err := exec.Command(qemuImg, "info", "-f", format, "--output", "json", img).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", img, err)
	}
	var info struct {
		Format      string
		VirtualSize int64 `json:"virtual-size"`
	}
	json.Unmarshal(out, &info)
	if st, err := os.Stat(raw); err != nil || info.Format != format || info.VirtualSize != st.Size() {
		t.Errorf("qemu-img info %s: %s", filepath.Base(img), out)
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
	t.Run("qemu missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		x86 := filepath.Join(dir, "x-x86_64.raw")
		os.WriteFile(x86, make([]byte, 1<<20), 0o644)
		if code, _, errs := cli(t, "run", x86, "--bios"); code == 0 || !strings.Contains(errs, "qemu-system-x86_64 is not installed") || !strings.Contains(errs, "apt-get install qemu-system-x86") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})
	for args, want := range map[string]string{
		"run " + filepath.Join(dir, "missing.qcow2"): "no such file",
		"run " + img + " --bios":                     "boots with UEFI only",
		"run " + img + " --bios --uefi":              "choose one",
		"run " + img + " --arch m68k":                "no VM profile",
	} {
		if code, _, errs := cli(t, strings.Fields(args)...); code == 0 || !strings.Contains(errs, want) {
			t.Errorf("alpinist %s: exit %d %q, want %q", args, code, errs, want)
		}
	}
}
