package arch

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestTable checks the rows' invariants: unique names, the OCI platform
// of every row leads back to it, and every arch the test suite boots has
// an agent, a test repository and a GPT root type.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	platforms := map[string]string{}
	for _, a := range All {
		if seen[a.Name] {
			t.Errorf("%s: two rows", a.Name)
		}
		seen[a.Name] = true
		if a.OCI == "" || a.LXC == "" || a.Console == "" {
			t.Errorf("%s: OCI %q, LXC %q, console %q: every row needs them", a.Name, a.OCI, a.LXC, a.Console)
		}
		if other, ok := platforms[a.Platform()]; ok {
			t.Errorf("%s and %s share the platform %s", a.Name, other, a.Platform())
		}
		platforms[a.Platform()] = a.Name
		if got, ok := FromOCI(a.OCI, a.OCIVariant); !ok || got != a.Name {
			t.Errorf("FromOCI(%s, %s) = %s, %v", a.OCI, a.OCIVariant, got, ok)
		}
		if (a.GRUB == "") != (a.EFIBoot == "" && !a.PReP) {
			t.Errorf("%s: GRUB %q and EFIBoot %q go together", a.Name, a.GRUB, a.EFIBoot)
		}
		if a.QEMU.Tested && (a.GOARCH == "" || a.Debian == "" || a.RootType == "" || a.QEMU.Binary == "") {
			t.Errorf("%s: a tested arch needs a Go agent, a test repository, a GPT root type and a QEMU binary: %+v", a.Name, a)
		}
		if (len(a.QEMU.Firmware) > 0) != (a.QEMU.FirmwareName != "") {
			t.Errorf("%s: firmware paths and name go together", a.Name)
		}
	}
}

// TestKnownValues pins the values the per-package tables had before they
// were derived from this one.
func TestKnownValues(t *testing.T) {
	for _, tc := range []struct {
		name, goarch, platform, lxc, console, grub string
		bios                                       bool
	}{
		{"x86_64", "amd64", "amd64", "x86_64", "ttyS0", "x86_64-efi", true},
		{"x86", "386", "386", "i686", "ttyS0", "i386-efi", true},
		{"aarch64", "arm64", "arm64", "aarch64", "ttyAMA0", "arm64-efi", false},
		{"armv7", "arm", "arm/v7", "armv7l", "ttyAMA0", "arm-efi", false},
		{"armhf", "arm", "arm/v6", "armv6l", "ttyAMA0", "", false},
		{"ppc64le", "ppc64le", "ppc64le", "ppc64le", "hvc0", "powerpc-ieee1275", false},
		{"s390x", "s390x", "s390x", "s390x", "ttysclp0", "", false},
		{"riscv64", "riscv64", "riscv64", "riscv64", "ttyS0", "riscv64-efi", false},
		{"loongarch64", "", "loong64", "loongarch64", "ttyS0", "loongarch64-efi", false},
	} {
		a, err := Get(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if a.GOARCH != tc.goarch || a.Platform() != tc.platform || a.LXC != tc.lxc || a.Console != tc.console || a.GRUB != tc.grub || a.BIOS != tc.bios {
			t.Errorf("%s: %+v", tc.name, a)
		}
	}
	if _, err := Get("mips"); err == nil || !strings.Contains(err.Error(), "x86_64, x86, aarch64") {
		t.Errorf("Get(mips): %v", err)
	}
	for goarch, want := range map[string]string{"amd64": "x86_64", "arm64": "aarch64", "arm": "armv7", "386": "x86", "loong64": "loongarch64", "mips": "mips"} {
		if got := FromGOARCH(goarch); got != want {
			t.Errorf("FromGOARCH(%s) = %s, want %s", goarch, got, want)
		}
	}
	if got, _ := FromOCI("arm", ""); got != "armv7" {
		t.Errorf("FromOCI(arm) = %s, want armv7", got)
	}
	if got, ok := FromOCI("mips", ""); ok {
		t.Errorf("FromOCI(mips) = %s", got)
	}
	if SerialConsole("unknown") != "ttyS0" || !HasBIOS("x86") || HasBIOS("aarch64") {
		t.Error("SerialConsole or HasBIOS")
	}
}

// TestMakefileAgents: the Makefile embeds an agent for each arch the
// test suite boots, and for no other.
func TestMakefileAgents(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^AGENTS_FOR := (.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile: no AGENTS_FOR")
	}
	var want []string
	for _, a := range All {
		if a.QEMU.Tested {
			want = append(want, a.Agent())
		}
	}
	if got := strings.Fields(string(m[1])); !slices.Equal(got, want) {
		t.Errorf("Makefile's AGENTS_FOR %v, the tested arches' agents %v", got, want)
	}
}
