package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/internal/treecmp"
)

// elfOf is what bin/busybox of each arch must be.
var elfOf = map[string]struct {
	machine elf.Machine
	class   elf.Class
	order   binary.ByteOrder
}{
	"x86_64":  {elf.EM_X86_64, elf.ELFCLASS64, binary.LittleEndian},
	"x86":     {elf.EM_386, elf.ELFCLASS32, binary.LittleEndian},
	"aarch64": {elf.EM_AARCH64, elf.ELFCLASS64, binary.LittleEndian},
	"armv7":   {elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian},
	"armhf":   {elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian},
	"ppc64le": {elf.EM_PPC64, elf.ELFCLASS64, binary.LittleEndian},
	"s390x":   {elf.EM_S390, elf.ELFCLASS64, binary.BigEndian},
	"riscv64": {elf.EM_RISCV, elf.ELFCLASS64, binary.LittleEndian},
}

// TestBuildEveryArch builds one spec for every arch the test suite
// boots, each in its own VM under TCG, to every container output and
// ext4: each rootfs holds its arch's binaries with its scripts and
// trigger run; the OCI index lists one image per arch with the right
// platform (arm/v6 for armhf, arm/v7 for armv7), which skopeo picks by
// platform; the docker-archive and LXC metadata name the arch; e2fsck
// finds each ext4 clean and debugfs reads the arch's name from it. The
// WSL output is made for x86_64 and aarch64, and refused for the arches
// Windows does not run. Then Alpine's real
// apk-tools (the 3.19.4 minirootfs of the arch, its apk run natively in
// the arch's VM) installs the same packages, tree for tree the same as
// our installer's.
func TestBuildEveryArch(t *testing.T) {
	td := generatedRepo(t)
	for _, a := range vmtest.Arches {
		vmtest.Binary(t, a)
	}
	if len(vmtest.Arches) != 8 {
		t.Errorf("tested arches %v, want all eight QEMU 7.2 runs", vmtest.Arches)
	}
	skopeo := hosttool.Need(t, "skopeo", "skopeo")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	body := "repositories: [" + repoDir + "/main]\nkeys: [" + repoDir + "/keys/]\n" +
		"packages: [alpine-base, busybox, alpinist-test-scripts, alpinist-test-consumer, alpinist-test-trigger, alpinist-test-hook]\n"
	spec := filepath.Join(dir, "every.yaml")
	writeFile(t, spec, "name: every\narch: ["+strings.Join(vmtest.Arches, ", ")+"]\n"+body+"outputs: [tar, oci, docker-archive, lxc, ext4]\n", 0o644)
	out := filepath.Join(dir, "out")
	cache := filepath.Join(dir, "cache")
	mustCLI(t, "build", spec, "-o", out, "--cache", cache)
	// WSL where Windows runs, from the build cache; refused elsewhere.
	mustCLI(t, "build", spec, "-o", out, "--cache", cache, "--arch", "x86_64,aarch64", "--output", "wsl")
	for _, a := range []string{"x86_64", "aarch64"} {
		tarIndex(t, filepath.Join(out, "every-"+a+".wsl.tar.gz"), "bin/busybox")
	}
	if code, _, errs := cli(t, "build", spec, "-o", out, "--cache", cache, "--arch", "armv7", "--output", "wsl"); code == 0 || !strings.Contains(errs, "output wsl is made for x86_64 and aarch64, not armv7") {
		t.Errorf("wsl for armv7: exit %d\n%s", code, errs)
	}
	e2fsck, debugfs := hosttool.Need(t, "e2fsck", "e2fsprogs"), hosttool.Need(t, "debugfs", "e2fsprogs")

	var idx struct {
		Manifests []struct {
			Platform *struct{ Architecture, OS, Variant string }
		}
	}
	raw, err := exec.Command(skopeo, "inspect", "--raw", "oci:"+filepath.Join(out, "every.oci")+":latest").Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw: %v", err)
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range idx.Manifests {
		if m.Platform != nil {
			platforms = append(platforms, strings.TrimSuffix(m.Platform.OS+"/"+m.Platform.Architecture+"/"+m.Platform.Variant, "/"))
		}
	}
	for _, name := range vmtest.Arches {
		a, _ := arch.Lookup(name)
		t.Run(name, func(t *testing.T) {
			want := "linux/" + a.OCI
			if a.OCIVariant != "" {
				want += "/" + a.OCIVariant
			}
			if !slices.Contains(platforms, want) {
				t.Errorf("the index's platforms %v lack %s", platforms, want)
			}
			tarPath := filepath.Join(out, "every-"+name+".tar")
			hs, data := tarIndex(t, tarPath, "bin/busybox", "var/lib/alpinist-test/trigger.log", "var/lib/alpinist-test/scripts.post-install", "etc/apk/arch")
			ef, err := elf.NewFile(bytes.NewReader(data["bin/busybox"]))
			if err != nil {
				t.Fatal(err)
			}
			if w := elfOf[name]; ef.Machine != w.machine || ef.Class != w.class || ef.ByteOrder != w.order {
				t.Errorf("bin/busybox is %v %v %v", ef.Machine, ef.Class, ef.ByteOrder)
			}
			if h := hs["bin/ls"]; h == nil || h.Linkname != "/bin/busybox" {
				t.Errorf("bin/ls: %+v (busybox --install did not run)", h)
			}
			if !strings.Contains(string(data["var/lib/alpinist-test/trigger.log"]), testrepo.HooksDir) || len(data["var/lib/alpinist-test/scripts.post-install"]) == 0 {
				t.Errorf("trigger log %q, post-install %q", data["var/lib/alpinist-test/trigger.log"], data["var/lib/alpinist-test/scripts.post-install"])
			}
			if got := strings.TrimSpace(string(data["etc/apk/arch"])); got != name {
				t.Errorf("etc/apk/arch %q", got)
			}

			// skopeo picks the arch's image from the index by platform, and
			// reads the docker-archive: their configs name the platform.
			var info struct{ Architecture, Variant, Os string }
			args := []string{"inspect", "--config", "--override-arch", a.OCI, "--override-os", "linux"}
			if a.OCIVariant != "" {
				args = append(args, "--override-variant", a.OCIVariant)
			}
			for _, ref := range []string{"oci:" + filepath.Join(out, "every.oci") + ":latest", "docker-archive:" + filepath.Join(out, "every-"+name+".docker.tar")} {
				b, err := exec.Command(skopeo, append(args, ref)...).Output()
				if err != nil {
					t.Fatalf("skopeo %s %s: %v", strings.Join(args, " "), ref, err)
				}
				info = struct{ Architecture, Variant, Os string }{}
				json.Unmarshal(b, &info)
				if info.Architecture != a.OCI || info.Variant != a.OCIVariant || info.Os != "linux" {
					t.Errorf("%s: %+v", ref, info)
				}
			}
			_, lxc := tarIndex(t, filepath.Join(out, "every-"+name+".lxc.tar.xz"), "metadata.yaml")
			if !strings.Contains(string(lxc["metadata.yaml"]), "architecture: "+a.LXC+"\n") {
				t.Errorf("LXC metadata.yaml:\n%s", lxc["metadata.yaml"])
			}
			ext4 := filepath.Join(out, "every-"+name+".ext4")
			if b, err := exec.Command(e2fsck, "-fn", ext4).CombinedOutput(); err != nil {
				t.Errorf("e2fsck -fn %s: %v\n%s", ext4, err, b)
			}
			if b, err := exec.Command(debugfs, "-R", "cat /etc/apk/arch", ext4).Output(); err != nil || strings.TrimSpace(string(b)) != name {
				t.Errorf("the ext4's /etc/apk/arch: %q, %v", b, err)
			}
		})
	}

	// Alpine's own apk of each arch, natively in the arch's VM (every
	// arch Alpine 3.19 has a minirootfs for: riscv64 came in 3.20).
	real := minirootfs.Real(t)
	for _, name := range vmtest.Arches {
		if name == "riscv64" {
			continue
		}
		t.Run("apk-tools/"+name, func(t *testing.T) {
			mini := filepath.Join(real, "minirootfs", "alpine-minirootfs-3.19.4-"+name+".tar.gz")
			theirs := filepath.Join(dir, "theirs-"+name+".yaml")
			writeFile(t, theirs, "name: theirs\narch: ["+name+"]\n"+body+"outputs: [tar]\ninstaller: {type: apk-tools, minirootfs: "+mini+"}\n", 0o644)
			mustCLI(t, "build", theirs, "-o", out, "--cache", cache)
			ours := readTar(t, filepath.Join(out, "every-"+name+".tar"))
			got := readTar(t, filepath.Join(out, "theirs-"+name+".tar"))
			if d := treecmp.Diff(ours, got, func(string) bool { return false }); len(d) > 0 {
				t.Errorf("%d differences between our installer and Alpine's apk-tools:\n%s", len(d), strings.Join(d, "\n"))
			}
		})
	}
	// A minirootfs of another arch is refused, naming both.
	wrong := filepath.Join(dir, "wrong.yaml")
	writeFile(t, wrong, "name: wrong\narch: [armv7]\n"+body+"installer: {type: apk-tools, minirootfs: "+filepath.Join(real, "minirootfs", "alpine-minirootfs-3.19.4-armhf.tar.gz")+"}\n", 0o644)
	if code, _, errs := cli(t, "build", wrong, "-o", filepath.Join(dir, "wrong"), "--cache", cache); code == 0 || !strings.Contains(errs, "minirootfs for armhf") || !strings.Contains(errs, "for armv7") {
		t.Errorf("an armhf minirootfs for armv7: exit %d\n%s", code, errs)
	}
}

// TestBootEveryArchDisk builds the disk image of a system for the arches
// added after x86_64 and aarch64 whose firmware QEMU has here, and boots
// each to its login prompt with alpinist run: x86 with the BIOS
// (EXTLINUX) and with UEFI (GRUB, ia32 OVMF), armv7 with UEFI (AAVMF32),
// ppc64le with Open Firmware (SLOF loads GRUB from the PReP partition),
// riscv64 with U-Boot's UEFI; then the live ISOs of x86 (BIOS and UEFI),
// armv7 and riscv64 the same way. Each disk is also written as qcow2,
// VMDK, VHD and GCE's tarball (x86's as an OVA too), each read back by
// qemu-img or tar as the raw disk's bytes, and the raw disk's partitions
// pass sgdisk, fsck.fat and e2fsck. s390x's disk is refused, saying why,
// and so is a ppc64le live ISO.
func TestBootEveryArchDisk(t *testing.T) {
	td := generatedRepo(t)
	arches := []string{"x86", "armv7", "ppc64le", "riscv64"}
	for _, a := range arches {
		vmtest.Binary(t, a)
	}
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	body := "repositories: [" + repoDir + "/main]\nkeys: [" + repoDir + "/keys/]\npackages: [alpine-base, linux-virt]\ndisk: {}\n"
	spec := filepath.Join(dir, "boots.yaml")
	writeFile(t, spec, "name: boots\narch: ["+strings.Join(arches, ", ")+"]\n"+body+"outputs: [raw, qcow2, vmdk, vhd, gce]\n", 0o644)
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", spec, "-o", out, "--cache", filepath.Join(dir, "cache"))
	mustCLI(t, "build", spec, "-o", out, "--cache", filepath.Join(dir, "cache"), "--arch", "x86", "--output", "ova")
	for _, a := range arches {
		t.Run("images-"+a, func(t *testing.T) {
			raw := filepath.Join(out, "boots-"+a+".raw")
			checkDisk(t, raw, filepath.Join(out, "boots-"+a+".qcow2"))
			checkConverted(t, raw, filepath.Join(out, "boots-"+a+".vmdk"), "vmdk")
			checkConverted(t, raw, filepath.Join(out, "boots-"+a+".vhd"), "vpc")
			checkGCETar(t, filepath.Join(out, "boots-"+a+".gce.tar.gz"))
		})
	}
	ovaHs, ovf := tarIndex(t, filepath.Join(out, "boots-x86.ova"), "boots-x86.ovf", "boots-x86.mf")
	if !strings.Contains(string(ovf["boots-x86.ovf"]), `vmw:osType="otherLinuxGuest"`) || ovaHs["boots-x86.vmdk"] == nil || !strings.Contains(string(ovf["boots-x86.mf"]), "SHA256(boots-x86.vmdk)= ") {
		t.Errorf("x86's OVA: %d-byte OVF:\n%s\nmanifest:\n%s", len(ovf["boots-x86.ovf"]), ovf["boots-x86.ovf"], ovf["boots-x86.mf"])
	}
	// The live ISO of the arches that have one (ppc64le's GRUB boots from
	// a PReP partition, not El Torito), from the build cache.
	mustCLI(t, "build", spec, "-o", out, "--cache", filepath.Join(dir, "cache"), "--arch", "x86,armv7,riscv64", "--output", "iso")
	for _, c := range []struct{ arch, firmware, ext string }{
		{"x86", "--bios", "raw"}, {"x86", "--uefi", "raw"}, {"armv7", "--uefi", "raw"}, {"ppc64le", "", "raw"}, {"riscv64", "--uefi", "raw"},
		{"x86", "--bios", "iso"}, {"x86", "--uefi", "iso"}, {"armv7", "--uefi", "iso"}, {"riscv64", "", "iso"}, // riscv64: U-Boot boots the hybrid ISO as a disk
	} {
		t.Run(c.arch+c.firmware+"-"+c.ext, func(t *testing.T) {
			img := filepath.Join(out, "boots-"+c.arch+"."+c.ext)
			args := []string{"run", img, "--accel", "tcg", "--until", "login:", "--timeout", "3m"}
			if c.firmware != "" {
				args = append(args, c.firmware)
			}
			con := mustCLI(t, args...)
			a, _ := arch.Lookup(c.arch)
			if !strings.Contains(con, "(/dev/"+a.Console+")") {
				t.Errorf("the login prompt is not on %s:\n%s", a.Console, con)
			}
		})
	}
	s390 := filepath.Join(dir, "s390.yaml")
	writeFile(t, s390, "name: s390\narch: [s390x]\n"+body+"outputs: [qcow2]\n", 0o644)
	if code, _, errs := cli(t, "build", s390, "-o", filepath.Join(dir, "s390"), "--cache", filepath.Join(dir, "cache")); code == 0 || !strings.Contains(errs, "no bootable image is made for s390x") || !strings.Contains(errs, "zipl") {
		t.Errorf("an s390x disk: exit %d\n%s", code, errs)
	}
	ppcISO := filepath.Join(dir, "ppciso.yaml")
	writeFile(t, ppcISO, "name: ppciso\narch: [ppc64le]\n"+body+"outputs: [iso]\n", 0o644)
	if code, _, errs := cli(t, "build", ppcISO, "-o", filepath.Join(dir, "ppciso"), "--cache", filepath.Join(dir, "cache")); code == 0 || !strings.Contains(errs, "no live ISO is made for ppc64le") {
		t.Errorf("a ppc64le ISO: exit %d\n%s", code, errs)
	}
}

// checkGCETar checks GCE's tarball with GNU tar and Go's reader: one
// file, disk.raw, a whole number of GiB, the same size to both.
func checkGCETar(t *testing.T, p string) {
	t.Helper()
	tarBin := hosttool.Need(t, "tar", "tar")
	b, err := exec.Command(tarBin, "-tvzf", p).Output()
	if err != nil {
		t.Fatalf("tar -tvzf %s: %v", p, err)
	}
	f := strings.Fields(string(b))
	if len(f) < 6 || f[len(f)-1] != "disk.raw" || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("tar -tvzf %s:\n%s", p, b)
	}
	hs, _ := tarIndex(t, p)
	if h := hs["disk.raw"]; h == nil || len(hs) != 1 || h.Size%(1<<30) != 0 || strconv.FormatInt(h.Size, 10) != f[2] {
		t.Errorf("%s: Go reads %v, GNU tar %s", p, hs, b)
	}
}
