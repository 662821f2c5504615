package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
)

// TestBuildISO builds demo.yaml's live ISOs (x86_64 and aarch64), checks
// them with xorriso and isoinfo, and boots them under TCG to the system's
// login prompt: x86_64 from a CD with the BIOS (ISOLINUX) and UEFI
// (GRUB from the El Torito EFI image), and from the same file as a disk
// (the hybrid MBR's isohdpfx.bin, and its EFI partition); aarch64 from a
// CD with UEFI; and, with linux-lts (linux-virt has no USB storage), as
// a USB stick with both. alpinist assemble makes the same ISO from the
// tar.
func TestBuildISO(t *testing.T) {
	td := generatedRepo(t)
	xorriso := hosttool.Need(t, "xorriso", "xorriso")
	isoinfo := hosttool.Need(t, "isoinfo", "genisoimage")
	spec := filepath.Join(td, "specs", "demo.yaml")
	for _, arch := range []string{"x86_64", "aarch64"} {
		vmtest.Binary(t, arch)
		firmware(t, arch)
	}
	out := t.TempDir()
	mustCLI(t, "build", spec, "-o", out, "--cache", t.TempDir(), "--output", "tar,iso")

	for arch, want := range map[string][]string{
		"x86_64":  {"Boot record  : El Torito , MBR isohybrid cyl-align-on GPT", "boot-info-table isohybrid-suitable", "/boot/syslinux/isolinux.bin", "UEFI  y   none", "MBR partition path :   2  /boot/grub/efi.img"},
		"aarch64": {"Boot record  : El Torito , MBR cyl-align-on GPT", "UEFI  y   none", "/boot/grub/efi.img"},
	} {
		img := filepath.Join(out, "demo-"+arch+".iso")
		b, err := exec.Command(xorriso, "-indev", img, "-report_el_torito", "plain", "-report_system_area", "plain").CombinedOutput()
		for _, w := range want {
			if err != nil || !strings.Contains(string(b), w) {
				t.Errorf("%s: xorriso's report lacks %q (%v):\n%s", arch, w, err, b)
			}
		}
		b, err = exec.Command(isoinfo, "-d", "-i", img).CombinedOutput()
		if err != nil || !strings.Contains(string(b), "Volume id: demo-"+arch) || !strings.Contains(string(b), "Rock Ridge signatures version 1 found") {
			t.Errorf("%s: isoinfo -d (%v):\n%s", arch, err, b)
		}
		// The live rootfs is the build's, byte for byte.
		back := t.TempDir()
		if b, err := exec.Command(xorriso, "-osirrox", "on", "-indev", img, "-extract", "/rootfs.tar.gz", filepath.Join(back, "rootfs.tar.gz")).CombinedOutput(); err != nil {
			t.Fatalf("xorriso -extract: %v\n%s", err, b)
		}
		if !sameGunzip(t, filepath.Join(back, "rootfs.tar.gz"), filepath.Join(out, "demo-"+arch+".tar")) {
			t.Errorf("%s: the ISO's rootfs.tar.gz is not the build's tar", arch)
		}
	}

	// alpinist assemble: the same ISO from the tar alone.
	asm := t.TempDir()
	mustCLI(t, "assemble", filepath.Join(out, "demo-x86_64.tar"), "--name", "demo", "--arch", "x86_64", "-o", asm, "--output", "iso")
	if a, b := fileSums(t, out)["demo-x86_64.iso"], fileSums(t, asm)["demo-x86_64.iso"]; a == "" || a != b {
		t.Errorf("alpinist assemble's ISO differs from the build's")
	}

	// A USB stick needs a kernel with USB storage: linux-lts (Debian's
	// generic kernel in the test repository), not linux-virt.
	repo, err := filepath.Abs(filepath.Join(td, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	ltsSpec := filepath.Join(t.TempDir(), "lts.yaml")
	writeFile(t, ltsSpec, "name: lts\narch: x86_64\nrepositories: ["+filepath.Join(repo, "main")+"]\nkeys: ["+filepath.Join(repo, "keys")+"]\npackages: [alpine-base, busybox, alpine-baselayout, linux-lts]\ndisk: {}\n", 0o644)
	mustCLI(t, "build", ltsSpec, "-o", out, "--cache", t.TempDir(), "--output", "iso")
	x86, arm, lts := filepath.Join(out, "demo-x86_64.iso"), filepath.Join(out, "demo-aarch64.iso"), filepath.Join(out, "lts-x86_64.iso")
	for _, tc := range []struct {
		name, img, arch string
		args            []string
		until           string
		want            []string
	}{
		{"bios cd", x86, "x86_64", []string{"--bios"}, "login: ", []string{"ISOLINUX 6.04", "Loading /boot/initramfs-live...ok"}},
		{"uefi cd", x86, "x86_64", nil, "login: ", []string{"UEFI QEMU QEMU CD-ROM", "Welcome to GRUB!"}},
		{"bios disk", x86, "x86_64", []string{"--bios", "--media", "disk"}, "login: ", []string{"ISOLINUX 6.04"}},
		{"uefi disk", x86, "x86_64", []string{"--media", "disk"}, "login: ", []string{"UEFI Misc Device", "Welcome to GRUB!"}},
		{"bios usb", lts, "x86_64", []string{"--bios", "--media", "usb"}, "login: ", []string{"ISOLINUX 6.04", "USB Mass Storage device detected"}},
		{"uefi usb", lts, "x86_64", []string{"--media", "usb"}, "login: ", []string{"BdsDxe: starting Boot0001 \"UEFI QEMU QEMU USB HARDDRIVE", "Welcome to GRUB!", "USB Mass Storage device detected"}},
		{"aarch64 uefi cd", arm, "aarch64", nil, "login: ", []string{"UEFI QEMU QEMU CD-ROM", "Welcome to GRUB!"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := vmtest.Binary(t, tc.arch)
			args := append([]string{"run", tc.img, "--until", tc.until, "--timeout", "6m"}, tc.args...)
			code, console, errs := cli(t, args...)
			if code != 0 {
				t.Fatalf("alpinist %s: exit %d: %s\n%s", strings.Join(args, " "), code, errs, console)
			}
			for _, w := range tc.want {
				if !strings.Contains(console, w) {
					t.Errorf("the console lacks %q:\n%s", w, console)
				}
			}
			if tc.until == "login: " && (!strings.Contains(console, "Welcome to Alpine Linux") || !strings.Contains(console, "(/dev/"+p.Console+")")) {
				t.Errorf("the login prompt is not the system's on %s:\n%s", p.Console, console)
			}
			t.Logf("console, last lines:\n%s", lastLines(console, 4))
		})
	}

	// An ISO needs a disk: section, which adds its boot loaders.
	noDisk := filepath.Join(t.TempDir(), "nodisk.yaml")
	writeFile(t, noDisk, "name: nodisk\narch: x86_64\nrepositories: ["+filepath.Join(repo, "main")+"]\nkeys: ["+filepath.Join(repo, "keys")+"]\npackages: [busybox, linux-virt]\n", 0o644)
	if code, _, errs := cli(t, "build", noDisk, "-o", t.TempDir(), "--output", "iso"); code == 0 || !strings.Contains(errs, "output iso boots, and the spec has no disk: section") {
		t.Errorf("an ISO without disk:: exit %d\n%s", code, errs)
	}
}

// sameGunzip tells whether the gzip'ed file gz holds exactly the file raw.
func sameGunzip(t *testing.T, gz, raw string) bool {
	t.Helper()
	f, err := os.Open(gz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(got, want)
}
