package builder

import (
	"reflect"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/spec"
)

// TestSpecConfig checks what the agent is told for a spec: a disk brings
// a serial console for the arch and, without network:, DHCP on eth0;
// file entries carry their kind and target; copied trees carry no mode.
func TestSpecConfig(t *testing.T) {
	parse := func(body string) *spec.Spec {
		s, err := spec.Parse(strings.NewReader("name: x\nrepositories: [/r]\npackages: [busybox]\n"+body), "x.yaml", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c := Config(parse("disk: {}\nfiles: [{dst: /a, symlink: /b}, {dst: /c, hardlink: /d, mode: 0600}, {dst: /e, content: x, mode: 0600}]\n"), "aarch64")
	if c.Console != "ttyAMA0" || !reflect.DeepEqual(c.Network, &pkgdisk.Network{Interfaces: []pkgdisk.Interface{{Name: "eth0", DHCP: true}}}) {
		t.Errorf("disk defaults: console %q network %+v", c.Console, c.Network)
	}
	want := []pkgdisk.File{{Dst: "/a", Kind: "symlink", Target: "/b", Mode: -1}, {Dst: "/c", Kind: "hardlink", Target: "/d", Mode: 0o600}, {Dst: "/e", Kind: "content", Mode: -1}}
	if !reflect.DeepEqual(c.Files, want) {
		t.Errorf("files %+v", c.Files)
	}
	c = Config(parse("disk: {console: none}\nnetwork: {interfaces: [{name: eth1, dhcp: true}]}\n"), "x86_64")
	if c.Console != "" || c.Network.Interfaces[0].Name != "eth1" {
		t.Errorf("console %q network %+v", c.Console, c.Network)
	}
	if c = Config(parse(""), "x86_64"); !reflect.DeepEqual(c, pkgdisk.Config{}) {
		t.Errorf("no disk: %+v", c)
	}
	// A disk that boots with UEFI asks for GRUB's EFI image, per arch,
	// whatever the outputs.
	c = Config(parse("disk: {}\n"), "aarch64")
	if c.EFI == nil || c.EFI.Format != "arm64-efi" || c.EFI.Output != "/boot/efi/EFI/BOOT/BOOTAA64.EFI" || c.EFI.Prefix != "/EFI/BOOT" {
		t.Errorf("EFI %+v", c.EFI)
	}
	if c = Config(parse("disk: {boot: [bios]}\n"), "x86_64"); c.EFI != nil {
		t.Errorf("a BIOS-only disk gets GRUB for EFI: %+v", c.EFI)
	}
}

func TestCheckDiskPackages(t *testing.T) {
	entry := func(names ...string) lock.Arch {
		var a lock.Arch
		for _, n := range names {
			a.Packages = append(a.Packages, lock.Package{Name: n})
		}
		return a
	}
	for _, tc := range []struct {
		outputs []string
		pkgs    lock.Arch
		want    string
	}{
		{[]string{"tar"}, entry("busybox"), ""},
		{[]string{"qcow2"}, entry("busybox"), "needs a kernel"},
		{[]string{"raw"}, entry("linux-virt"), ""},
	} {
		err := CheckDiskPackages(tc.outputs, tc.pkgs)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v %v: %v, want %q", tc.outputs, tc.pkgs.Packages, err, tc.want)
		}
	}
}

func TestCheckDiskSection(t *testing.T) {
	with, without := &spec.Spec{Disk: &spec.Disk{}}, &spec.Spec{}
	for _, o := range []string{"raw", "qcow2", "vmdk", "ova", "vhd", "iso", "gce"} {
		if err := CheckDiskSection(with, []string{"tar", o}); err != nil {
			t.Errorf("%s with disk: %v", o, err)
		}
		if err := CheckDiskSection(without, []string{"tar", o}); err == nil || !strings.Contains(err.Error(), "output "+o+" boots, and the spec has no disk: section") {
			t.Errorf("%s without disk: %v", o, err)
		}
	}
	if err := CheckDiskSection(without, []string{"tar", "oci", "ext4"}); err != nil {
		t.Error(err)
	}
}

func TestCheckBootLoaders(t *testing.T) {
	idx := []*repo.Index{{Packages: []*apk.Package{{Name: "grub-efi"}, {Name: "busybox"}}}}
	s := &spec.Spec{Disk: &spec.Disk{}}
	if err := checkBootLoaders(s, "aarch64", idx); err != nil {
		t.Error(err)
	}
	if err := checkBootLoaders(s, "x86_64", idx); err == nil || !strings.Contains(err.Error(), "disk.boot: bios (extlinux) needs the package syslinux") {
		t.Errorf("x86_64 without syslinux: %v", err)
	}
	if err := checkBootLoaders(&spec.Spec{}, "x86_64", nil); err != nil {
		t.Errorf("no disk: %v", err)
	}
}
