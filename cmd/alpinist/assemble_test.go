package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
)

// TestAssemble makes outputs from a tar made elsewhere, then from the
// OCI layout that made, without a VM.
func TestAssemble(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := t.TempDir()
	in := filepath.Join(dir, "exported.tar")
	os.WriteFile(in, rootfstest.Tar(t), 0o644)
	out := filepath.Join(dir, "out")
	stdout := mustCLI(t, "assemble", in, "-o", out, "--arch", "aarch64", "--output", "tar,ext4,oci,tar.gz")
	for _, f := range []string{"exported-aarch64.tar", "exported-aarch64.ext4", "exported-aarch64.tar.gz", "exported-aarch64.spdx.json", "exported.oci/index.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v\n%s", f, err, stdout)
		}
	}
	e2fsck := hosttool.Need(t, "e2fsck", "e2fsprogs")
	if b, err := exec.Command(e2fsck, "-fn", filepath.Join(out, "exported-aarch64.ext4")).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, b)
	}
	skopeo := hosttool.Need(t, "skopeo", "skopeo")
	if b, err := exec.Command(skopeo, "inspect", "oci:"+filepath.Join(out, "exported.oci")+":latest").CombinedOutput(); err != nil || !strings.Contains(string(b), `"Architecture": "arm64"`) {
		t.Errorf("skopeo inspect: %v\n%s", err, b)
	}

	// From the layout: the same canonical tar, byte for byte.
	out2 := filepath.Join(dir, "out2")
	mustCLI(t, "assemble", filepath.Join(out, "exported.oci"), "-o", out2, "--name", "again", "--output", "tar")
	a, _ := os.ReadFile(filepath.Join(out, "exported-aarch64.tar"))
	b, err := os.ReadFile(filepath.Join(out2, "again-aarch64.tar"))
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("the rootfs from the layout differs from the one it was made of (%v)", err)
	}

	// Bad input is named.
	for args, want := range map[string]string{
		"assemble " + filepath.Join(out, "exported.oci") + " -o x --arch x86_64":          "is one image, for aarch64 (not x86_64)",
		"assemble " + in + " -o x --arch x86_64,aarch64":                                  "a tar holds one architecture",
		"assemble " + dir + " -o x":                                                       "neither a tar file nor an OCI layout",
		"assemble " + in + " -o x --disk-size lots":                                       "--disk-size",
		"assemble " + in + " -o x --table gpt2":                                           `--table "gpt2": want gpt or mbr`,
		"assemble " + in + " -o x --boot-partition big":                                   "--boot-partition: ",
		"assemble " + in + " -o x --boot efi":                                             `--boot "efi": want bios, uefi or both`,
		"assemble " + in + " -o " + filepath.Join(dir, "x") + " --output raw":             "the rootfs has no boot loader to boot a disk with: install syslinux",
		"assemble registry.example.org/x:1 -o " + filepath.Join(dir, "x") + " --insecure": "only for a registry on localhost",
		// A hidden name wrote every output and then dropped them all; a
		// '/' gave a raw Go error.
		"assemble " + in + " -o " + filepath.Join(dir, "n1") + " --name .hidden": `--name: name ".hidden": use letters`,
		"assemble " + in + " -o " + filepath.Join(dir, "n2") + " --name a/b":     `--name: name "a/b": use letters`,
	} {
		code, _, errs := cli(t, strings.Fields(args)...)
		if code == 0 || !strings.Contains(errs, want) {
			t.Errorf("alpinist %s: exit %d %q, want %q", args, code, errs, want)
		}
	}
}

func TestInputName(t *testing.T) {
	for in, want := range map[string]string{"alpine.tar.gz": "alpine", "out/web.oci": "web", "localhost:5000/team/web:1.0": "web", "x/rootfs.tar.zst": "rootfs", "weird name!.tar": "weird-name"} {
		if got := inputName(in); got != want {
			t.Errorf("inputName(%q) = %q, want %q", in, got, want)
		}
	}
}
