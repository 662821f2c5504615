package qemu

import "strings"

// packages names, per host tool, the package that provides it on
// Debian/Ubuntu, Fedora, Arch and macOS (Homebrew).
var packages = map[string][4]string{
	"qemu-system-x86_64":  {"qemu-system-x86", "qemu-system-x86", "qemu-system-x86", "qemu"},
	"qemu-system-i386":    {"qemu-system-x86", "qemu-system-x86", "qemu-system-x86", "qemu"},
	"qemu-system-aarch64": {"qemu-system-arm", "qemu-system-aarch64", "qemu-system-aarch64", "qemu"},
	"qemu-system-arm":     {"qemu-system-arm", "qemu-system-arm", "qemu-system-arm", "qemu"},
	"qemu-system-riscv64": {"qemu-system-misc", "qemu-system-riscv", "qemu-system-riscv", "qemu"},
	"qemu-system-s390x":   {"qemu-system-misc", "qemu-system-s390x", "qemu-system-s390x", "qemu"},
	"qemu-system-ppc64":   {"qemu-system-ppc", "qemu-system-ppc", "qemu-system-ppc", "qemu"},
	"qemu-img":            {"qemu-utils", "qemu-img", "qemu-img", "qemu"},
	"ovmf":                {"ovmf", "edk2-ovmf", "edk2-ovmf", "qemu"},
	"aavmf":               {"qemu-efi-aarch64", "edk2-aarch64", "edk2-aarch64", "qemu"},
	"ovmf32":              {"ovmf-ia32", "edk2-ovmf-ia32", "edk2-ovmf", "qemu"},
	"aavmf32":             {"qemu-efi-arm", "edk2-arm", "edk2-armvirt", "qemu"},
	"u-boot-qemu":         {"u-boot-qemu", "uboot-images-armv8", "u-boot-qemu", "u-boot-tools"},
}

// InstallHint says how to install a host tool (a QEMU binary, qemu-img,
// ovmf or aavmf) on Debian/Ubuntu, Fedora, Arch and macOS.
func InstallHint(tool string) string {
	p, ok := packages[tool]
	if !ok {
		return "install QEMU (" + tool + ")"
	}
	return strings.Join([]string{
		"Debian/Ubuntu: apt-get install " + p[0],
		"Fedora: dnf install " + p[1],
		"Arch: pacman -S " + p[2],
		"macOS: brew install " + p[3],
	}, "; ")
}
