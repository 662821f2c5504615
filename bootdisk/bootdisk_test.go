package bootdisk

import (
	"slices"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		disk     *Disk
		arch     string
		firmware []string
		packages string
		grub     string
		console  string
	}{
		{nil, "x86_64", []string{"bios", "uefi"}, "syslinux grub-efi", "/boot/efi/EFI/BOOT/BOOTX64.EFI", "ttyS0"},
		{&Disk{}, "aarch64", []string{"uefi"}, "grub-efi", "/boot/efi/EFI/BOOT/BOOTAA64.EFI", "ttyAMA0"},
		{&Disk{Boot: []string{"bios"}, Console: "none"}, "x86_64", []string{"bios"}, "syslinux", "", ""},
		{&Disk{Boot: []string{"bios"}}, "riscv64", nil, "", "", "ttyS0"},
		{&Disk{Console: "ttyS1"}, "s390x", nil, "", "", "ttyS1"},
		{&Disk{}, "x86", []string{"bios", "uefi"}, "syslinux grub-efi", "/boot/efi/EFI/BOOT/BOOTIA32.EFI", "ttyS0"},
		{&Disk{}, "armv7", []string{"uefi"}, "grub-efi", "/boot/efi/EFI/BOOT/BOOTARM.EFI", "ttyAMA0"},
		{&Disk{}, "riscv64", []string{"uefi"}, "grub-efi", "/boot/efi/EFI/BOOT/BOOTRISCV64.EFI", "ttyS0"},
		{&Disk{}, "ppc64le", []string{"ieee1275"}, "grub-ieee1275", PRePGRUB, "hvc0"},
		{&Disk{Boot: []string{"ieee1275", "uefi"}}, "ppc64le", []string{"ieee1275"}, "grub-ieee1275", PRePGRUB, "hvc0"},
		{&Disk{Boot: []string{"uefi"}}, "ppc64le", nil, "", "", "hvc0"},
		{&Disk{Boot: []string{"ieee1275", "uefi"}}, "x86_64", []string{"uefi"}, "grub-efi", "/boot/efi/EFI/BOOT/BOOTX64.EFI", "ttyS0"},
	} {
		p := New(tc.disk, tc.arch)
		if got := p.Firmware(); !slices.Equal(got, tc.firmware) {
			t.Errorf("%+v on %s: firmware %v, want %v", tc.disk, tc.arch, got, tc.firmware)
		}
		if got := strings.Join(p.Packages(), " "); got != tc.packages {
			t.Errorf("%+v on %s: packages %q, want %q", tc.disk, tc.arch, got, tc.packages)
		}
		var grub string
		if g := p.GRUBImage(); g != nil {
			grub = g.Output
			wantPrefix, wantConfig := "/EFI/BOOT", ""
			if tc.arch == "ppc64le" {
				// Open Firmware's GRUB finds the system's grub.cfg itself.
				wantPrefix, wantConfig = "/boot/grub", "search --no-floppy --file --set=root /boot/grub/grub.cfg\nconfigfile /boot/grub/grub.cfg\n"
			}
			if g.Prefix != wantPrefix || g.Config != wantConfig || !slices.Contains(g.Modules, "search_fs_uuid") {
				t.Errorf("%s: GRUB %+v", tc.arch, g)
			}
		}
		if grub != tc.grub || p.Console != tc.console || p.Table != "gpt" {
			t.Errorf("%+v on %s: GRUB %q, console %q, table %q", tc.disk, tc.arch, grub, p.Console, p.Table)
		}
	}
	if LoaderName("syslinux") != "bios (extlinux)" || LoaderName("grub-efi") != "uefi (GRUB)" || LoaderName("x") != "x" {
		t.Error("LoaderName")
	}
}

func TestHostFiles(t *testing.T) {
	ids := IDs{Root: "r-uuid", Boot: "b-uuid", ESP: "1234-ABCD"}
	p := New(&Disk{SeparateBoot: true, Cmdline: "quiet"}, "x86_64")
	fstab := p.Fstab(ids, true)
	for _, want := range []string{"UUID=r-uuid\t/\text4\trw,relatime 0 1\n", "UUID=b-uuid\t/boot\text4\trw,relatime 0 2\n", "UUID=1234-ABCD\t/boot/efi\tvfat\trw,relatime,fmask=0133,dmask=0022 0 2\n", "tmpfs\t/tmp"} {
		if !strings.Contains(fstab, want) {
			t.Errorf("fstab lacks %q:\n%s", want, fstab)
		}
	}
	if !strings.Contains(New(nil, "x86_64").Fstab(ids, false), "dmask=0022 0 0\n") {
		t.Error("fstab: the ESP is checked without fsck.vfat")
	}
	if got := p.Cmdline(ids); got != "root=UUID=r-uuid rw console=ttyS0 quiet" {
		t.Errorf("cmdline %q", got)
	}
	// console: none gives no console= at all (it gave an empty one).
	if got := New(&Disk{Console: "none"}, "x86_64").Cmdline(ids); got != "root=UUID=r-uuid rw" {
		t.Errorf("cmdline without a console: %q", got)
	}
	if p.LoaderPath("boot/vmlinuz-virt") != "/vmlinuz-virt" || New(nil, "x86_64").LoaderPath("boot/vmlinuz-virt") != "/boot/vmlinuz-virt" {
		t.Error("LoaderPath")
	}
	if p.LoaderDir() != "/" || p.LoaderFS(ids) != "b-uuid" || New(nil, "x86_64").LoaderFS(ids) != "r-uuid" {
		t.Error("LoaderDir, LoaderFS")
	}
	cfg := p.GRUBConfig(ids, "boot/vmlinuz-virt", "boot/initramfs-virt")
	if !strings.Contains(cfg, "--set=root b-uuid\nlinux /vmlinuz-virt root=UUID=r-uuid rw console=ttyS0 quiet\ninitrd /initramfs-virt\n") {
		t.Errorf("grub.cfg:\n%s", cfg)
	}
	for console, want := range map[string]int{"ttyS0": 0, "ttyS3": 3, "ttyS4": -1, "ttyAMA0": -1, "none": -1} {
		if got := New(&Disk{Console: console}, "x86_64").Serial(); got != want {
			t.Errorf("Serial(%s) = %d, want %d", console, got, want)
		}
	}
}

func TestUpdateExtlinuxConf(t *testing.T) {
	ids := IDs{Root: "r-uuid"}
	conf := "# comment\n#root=\ndefault_kernel_opts=\"quiet\"\nmodules=sd-mod"
	got := string(New(&Disk{Console: "ttyS1", Cmdline: "nomodeset"}, "x86_64").UpdateExtlinuxConf([]byte(conf), ids))
	want := "# comment\nroot=UUID=r-uuid\ndefault_kernel_opts=\"rw console=ttyS1 nomodeset\"\nmodules=sd-mod\nserial_port=1\nserial_baud=115200\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	got = string(New(&Disk{Console: "none"}, "x86_64").UpdateExtlinuxConf(nil, ids))
	if got != "root=UUID=r-uuid\ndefault_kernel_opts=\"rw\"\n" {
		t.Errorf("no console: %q", got)
	}
}
