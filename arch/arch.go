// Package arch is alpinist's one table of target architectures. Every
// per-architecture fact lives on an architecture's row: Go's, OCI's,
// Incus's and Debian's names for it, the GPT root partition type, the
// serial console, the firmware it boots with, GRUB's EFI target and the
// QEMU machine that runs it. The other packages derive their own names
// from this table; adding an architecture is adding a row (and its
// tests).
package arch

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
)

// Arch is one target architecture.
type Arch struct {
	// Name is Alpine's name: x86_64, aarch64, ...
	Name string
	// GOARCH is Go's name for it, "" when the agent has no Go port, and
	// GOARM the ARM version its agent is built for (GOARM=6 for armhf's
	// ARMv6, 7 for armv7).
	GOARCH, GOARM string
	// OCI is the OCI platform's architecture and variant, as the
	// image-spec lists them.
	OCI, OCIVariant string
	// LXC is Incus's (and the kernel's uname -m) name.
	LXC string
	// Debian is Debian's name, for the synthetic test repository ("" for
	// an arch it is not made for); armv7 and armhf both take Debian's
	// armhf (ARMv7 code, which their build VMs' ARMv7 CPU runs).
	Debian string
	// DebianKernels are the Debian kernel meta packages linux-virt is made
	// from, best first (Debian's cloud kernel where it has one).
	DebianKernels []string
	// GRUBDebian is the Debian package of GRUB's modules for GRUB's target
	// (grub-efi-ia32-bin for i386-efi, ...).
	GRUBDebian string
	// Uname is the kernel's uname -m in a build VM of this arch (i686 and
	// armv7l; the build VM's CPU is ARMv7 for armhf too).
	Uname string
	// RootType is the GPT type GUID of the root partition (the
	// Discoverable Partitions Specification's), or "" for the generic
	// Linux file system type.
	RootType string
	// Console is the serial console of QEMU's machine: the kernel's
	// console= and the getty a disk image gets by default.
	Console string
	// BIOS is whether its machines boot with a PC BIOS (EXTLINUX).
	BIOS bool
	// GRUB is GRUB's target (grub-mkimage -O) and EFIBoot the
	// removable-media boot file name (EFI/BOOT/BOOT*.EFI) for UEFI; ""
	// when alpinist does not boot it with GRUB.
	GRUB, EFIBoot string
	// PReP: GRUB boots from a PReP boot partition with Open Firmware
	// (IEEE 1275: SLOF on QEMU's pseries), not from an ESP with UEFI.
	PReP bool
	// QEMU is how a VM of this arch runs.
	QEMU QEMU
}

// QEMU says how QEMU emulates an architecture.
type QEMU struct {
	Binary string // qemu-system-*
	// Machine and CPU are used under TCG; under KVM the CPU is "host".
	Machine, CPU string
	// Transport is the virtio transport for disks and serial ports:
	// "pci" (virtio-*-pci), "mmio" (virtio-*-device) or "ccw".
	Transport string
	// KVM: whether this arch can use KVM on a host of the same arch.
	KVM bool
	// BootArgs are kernel flags for a fast boot on this machine.
	BootArgs []string
	// MemoryAlignMiB: the machine takes memory sizes in multiples of it
	// only (pseries: 256 MiB); 0 for any.
	MemoryAlignMiB int
	// NoCDROM: its firmware boots no CD on virtio-scsi (U-Boot has no
	// virtio-scsi driver): alpinist run attaches an ISO as a disk.
	NoCDROM bool
	// DiskMachine is the machine that boots a disk with its firmware,
	// when the build VM's is not (pseries with SLOF: VOF boots no disk);
	// "" for Machine.
	DiskMachine string
	// RAMBase is where a 32-bit ARM machine's RAM starts. The build VM's
	// kernel is then unpacked from its zImage on the host and loaded as
	// a uImage at RAMBase + the kernel's TEXT_OFFSET (internal/zimage):
	// the zImage's own decompressor, emulated, costs 2 s of every boot.
	// 0 boots the kernel image as the package has it.
	RAMBase uint32
	// Tested: a build VM of this arch boots in the test suite. Untested
	// rows are the structure for adding an arch; building for one says
	// so.
	Tested bool
	// Firmware is where distributions put the UEFI firmware (code and
	// variable store template), and FirmwareName its name (OVMF, AAVMF;
	// lower-cased, qemu.InstallHint's key for it); none when alpinist
	// knows no UEFI firmware for the arch.
	Firmware     []Firmware
	FirmwareName string
}

// Firmware is a UEFI firmware's code and variable store template.
type Firmware struct {
	Code, Vars string
	// Secure: a Secure Boot build, which runs only on a machine with SMM
	// and its flash secured (Debian 12's ovmf-ia32 has no other build).
	// Secure Boot itself stays off: the variable store enrolls no keys.
	Secure bool
	// Payload: Code is not flash but the payload QEMU's built-in
	// firmware starts (-kernel): U-Boot's UEFI on riscv64, after OpenSBI
	// (QEMU 7.2's virt machine runs no EDK2 for riscv64). No Vars.
	Payload bool
}

// fastBoot are kernel flags that cut boot time in a VM (TESTING.md's
// measurements: 2.4 s to 1.8 s for x86_64 under TCG).
var fastBoot = []string{"quiet", "panic=-1", "tsc=reliable", "no_timer_check", "cryptomgr.notests", "rcupdate.rcu_expedited=1", "i8042.noaux", "i8042.nokbd"}

// x86_64TCG is the x86_64 CPU emulated under TCG (KVM runs the host's):
// x86-64-v2 (SSSE3, SSE4.1, SSE4.2, POPCNT; Alpine needs the baseline,
// x86-64) on AMD's vendor id, without XSAVE, so without AVX. With "max"
// the kernel saved and restored AVX, MPX and PKRU state at every context
// switch and patched in more alternatives; an Intel model gets page-table
// isolation and its CR3 switch at every system call. Issue 19 measured
// the real VM set's cold build: 6.1-6.5 s with max, 5.1-5.9 s with this,
// 6.5-7.8 s with Nehalem, rootfs byte-identical. A package whose scripts
// run code built for x86-64-v3 (AVX2) needs KVM.
const x86_64TCG = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt"

// aarch64TCG is the aarch64 CPU emulated under TCG: QEMU's max without
// pointer authentication (its QARMA is costly to emulate, and the kernel
// signs every return address with it) and without SVE (state saved at
// every context switch). Against cortex-a57 (ARMv8.0) it has the LSE
// atomics, which TCG runs as host atomics instead of emulating exclusive
// load/store loops: the demo's forced aarch64 build 4.8 s -> 3.85 s, its
// install 1.85 s -> 1.1 s, the rootfs byte-identical (issue 19).
const aarch64TCG = "max,pauth=off,sve=off"

// virtBoot are the fast-boot flags that every virt machine takes.
// armVirtRAM is where QEMU's arm virt machine's RAM starts.
const armVirtRAM = 0x40000000

var virtBoot = []string{"quiet", "panic=-1", "cryptomgr.notests", "rcupdate.rcu_expedited=1"}

// All are the architectures, in Alpine's order of its arch list.
var All = []Arch{
	{Name: "x86_64", GOARCH: "amd64", OCI: "amd64", LXC: "x86_64", Debian: "amd64",
		DebianKernels: []string{"linux-image-cloud-amd64", "linux-image-amd64"},
		RootType:      "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", Console: "ttyS0", BIOS: true,
		GRUB: "x86_64-efi", EFIBoot: "BOOTX64.EFI", GRUBDebian: "grub-efi-amd64-bin",
		QEMU: QEMU{Binary: "qemu-system-x86_64", Machine: "q35", CPU: x86_64TCG, Transport: "pci", KVM: true, BootArgs: fastBoot, Tested: true,
			Firmware: []Firmware{
				{Code: "/usr/share/OVMF/OVMF_CODE.fd", Vars: "/usr/share/OVMF/OVMF_VARS.fd"},               // Debian, Ubuntu
				{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/usr/share/OVMF/OVMF_VARS_4M.fd"},         // Debian, Ubuntu
				{Code: "/usr/share/edk2/ovmf/OVMF_CODE.fd", Vars: "/usr/share/edk2/ovmf/OVMF_VARS.fd"},     // Fedora
				{Code: "/usr/share/edk2/x64/OVMF_CODE.4m.fd", Vars: "/usr/share/edk2/x64/OVMF_VARS.4m.fd"}, // Arch
				{Code: "/opt/homebrew/share/qemu/edk2-x86_64-code.fd", Vars: "/opt/homebrew/share/qemu/edk2-i386-vars.fd"},
				{Code: "/usr/local/share/qemu/edk2-x86_64-code.fd", Vars: "/usr/local/share/qemu/edk2-i386-vars.fd"},
			}, FirmwareName: "OVMF"}},
	// x86: Debian's 686-pae kernel (the one with PVH; 686 has none) on
	// qemu32, which has PAE.
	{Name: "x86", GOARCH: "386", OCI: "386", LXC: "i686", Debian: "i386", Uname: "i686",
		DebianKernels: []string{"linux-image-686-pae"},
		RootType:      "44479540-F297-41B2-9AF7-D131D5F0458A",
		Console:       "ttyS0", BIOS: true, GRUB: "i386-efi", EFIBoot: "BOOTIA32.EFI", GRUBDebian: "grub-efi-ia32-bin",
		QEMU: QEMU{Binary: "qemu-system-i386", Machine: "q35", CPU: "qemu32", Transport: "pci", BootArgs: fastBoot, Tested: true,
			Firmware: []Firmware{
				{Code: "/usr/share/OVMF/OVMF32_CODE_4M.fd", Vars: "/usr/share/OVMF/OVMF32_VARS_4M.fd"},                       // Debian 13
				{Code: "/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd", Vars: "/usr/share/OVMF/OVMF32_VARS_4M.fd", Secure: true}, // Debian 12
				{Code: "/usr/share/edk2/ovmf-ia32/OVMF_CODE.fd", Vars: "/usr/share/edk2/ovmf-ia32/OVMF_VARS.fd"},             // Fedora
				{Code: "/usr/share/edk2/ia32/OVMF_CODE.4m.fd", Vars: "/usr/share/edk2/ia32/OVMF_VARS.4m.fd"},                 // Arch
				{Code: "/usr/local/share/qemu/edk2-i386-code.fd", Vars: "/usr/local/share/qemu/edk2-i386-vars.fd"},
			}, FirmwareName: "OVMF32"}},
	{Name: "aarch64", GOARCH: "arm64", OCI: "arm64", OCIVariant: "v8", LXC: "aarch64", Debian: "arm64",
		DebianKernels: []string{"linux-image-cloud-arm64", "linux-image-arm64"},
		RootType:      "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", Console: "ttyAMA0",
		GRUB: "arm64-efi", EFIBoot: "BOOTAA64.EFI", GRUBDebian: "grub-efi-arm64-bin",
		QEMU: QEMU{Binary: "qemu-system-aarch64", Machine: "virt,gic-version=3", CPU: aarch64TCG, Transport: "pci", KVM: true, BootArgs: virtBoot, Tested: true,
			Firmware: []Firmware{
				{Code: "/usr/share/AAVMF/AAVMF_CODE.fd", Vars: "/usr/share/AAVMF/AAVMF_VARS.fd"},                                // Debian, Ubuntu
				{Code: "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", Vars: "/usr/share/edk2/aarch64/vars-template-pflash.raw"}, // Fedora
				{Code: "/usr/share/edk2/aarch64/QEMU_CODE.fd", Vars: "/usr/share/edk2/aarch64/QEMU_VARS.fd"},                    // Arch
				{Code: "/opt/homebrew/share/qemu/edk2-aarch64-code.fd", Vars: "/opt/homebrew/share/qemu/edk2-arm-vars.fd"},
				{Code: "/usr/local/share/qemu/edk2-aarch64-code.fd", Vars: "/usr/local/share/qemu/edk2-arm-vars.fd"},
			}, FirmwareName: "AAVMF"}},
	// armv7 and armhf: Debian's armmp-lpae kernel on QEMU's virt machine,
	// whose CPUs are ARMv7 and later (it refuses the ARMv6 arm1176).
	{Name: "armv7", GOARCH: "arm", GOARM: "7", OCI: "arm", OCIVariant: "v7", LXC: "armv7l", Debian: "armhf", Uname: "armv7l",
		DebianKernels: []string{"linux-image-armmp-lpae"},
		RootType:      "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3",
		Console:       "ttyAMA0", GRUB: "arm-efi", EFIBoot: "BOOTARM.EFI", GRUBDebian: "grub-efi-arm-bin",
		QEMU: QEMU{Binary: "qemu-system-arm", Machine: "virt,highmem=off", CPU: "cortex-a15", Transport: "pci", BootArgs: virtBoot, RAMBase: armVirtRAM, Tested: true,
			Firmware: []Firmware{
				{Code: "/usr/share/AAVMF/AAVMF32_CODE.fd", Vars: "/usr/share/AAVMF/AAVMF32_VARS.fd"},                    // Debian, Ubuntu
				{Code: "/usr/share/edk2/arm/QEMU_EFI-pflash.raw", Vars: "/usr/share/edk2/arm/vars-template-pflash.raw"}, // Fedora
				{Code: "/usr/local/share/qemu/edk2-arm-code.fd", Vars: "/usr/local/share/qemu/edk2-arm-vars.fd"},
			}, FirmwareName: "AAVMF32"}},
	{Name: "armhf", GOARCH: "arm", GOARM: "6", OCI: "arm", OCIVariant: "v6", LXC: "armv6l", Debian: "armhf", Uname: "armv7l",
		DebianKernels: []string{"linux-image-armmp-lpae"},
		RootType:      "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3", Console: "ttyAMA0",
		QEMU: QEMU{Binary: "qemu-system-arm", Machine: "virt,highmem=off", CPU: "cortex-a15", Transport: "pci", BootArgs: virtBoot, RAMBase: armVirtRAM, Tested: true}},
	// ppc64le: pseries with QEMU's Virtual Open Firmware for the build VM
	// (2.8 s to the kernel's end against SLOF's 10.2 s), and without the
	// Spectre workarounds TCG cannot emulate (QEMU warns otherwise).
	{Name: "ppc64le", GOARCH: "ppc64le", OCI: "ppc64le", LXC: "ppc64le", Debian: "ppc64el",
		DebianKernels: []string{"linux-image-powerpc64le"}, GRUB: "powerpc-ieee1275", GRUBDebian: "grub-ieee1275-bin", PReP: true,
		RootType: "C31C45E6-3F39-412E-80FB-4809C4980599", Console: "hvc0",
		QEMU: QEMU{Binary: "qemu-system-ppc64", Machine: "pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off", CPU: "power9", Transport: "pci", BootArgs: virtBoot, MemoryAlignMiB: 256, Tested: true,
			DiskMachine: "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off"}},
	// s390x: the qemu CPU model boots faster than max (4.0 s against 5.3 s).
	{Name: "s390x", GOARCH: "s390x", OCI: "s390x", LXC: "s390x", Debian: "s390x",
		DebianKernels: []string{"linux-image-s390x"},
		RootType:      "5EEAD9A9-FE09-4A1E-A1D7-520D00531306", Console: "ttysclp0",
		QEMU: QEMU{Binary: "qemu-system-s390x", Machine: "s390-ccw-virtio", CPU: "qemu", Transport: "ccw", BootArgs: virtBoot, Tested: true}},
	{Name: "riscv64", GOARCH: "riscv64", OCI: "riscv64", LXC: "riscv64", Debian: "riscv64",
		DebianKernels: []string{"linux-image-cloud-riscv64", "linux-image-riscv64"},
		RootType:      "72EC70A6-CF74-40E6-BD49-4BDA08E8F224", Console: "ttyS0",
		GRUB: "riscv64-efi", EFIBoot: "BOOTRISCV64.EFI", GRUBDebian: "grub-efi-riscv64-bin",
		QEMU: QEMU{Binary: "qemu-system-riscv64", Machine: "virt", CPU: "rv64", Transport: "pci", BootArgs: virtBoot, Tested: true, NoCDROM: true,
			Firmware: []Firmware{
				{Code: "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin", Payload: true}, // Debian, Ubuntu
				{Code: "/usr/share/uboot/qemu-riscv64_smode/u-boot.bin", Payload: true},
			}, FirmwareName: "u-boot-qemu"}},
	{Name: "loongarch64", OCI: "loong64", LXC: "loongarch64", Console: "ttyS0",
		GRUB: "loongarch64-efi", EFIBoot: "BOOTLOONGARCH64.EFI"},
}

// Lookup returns the row of an Alpine arch name.
func Lookup(name string) (Arch, bool) {
	i := slices.IndexFunc(All, func(a Arch) bool { return a.Name == name })
	if i < 0 {
		return Arch{}, false
	}
	return All[i], true
}

// Get is Lookup with an error that lists the known names.
func Get(name string) (Arch, error) {
	if a, ok := Lookup(name); ok {
		return a, nil
	}
	return Arch{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Names are the Alpine names of All, in its order.
func Names() []string {
	out := make([]string, len(All))
	for i, a := range All {
		out[i] = a.Name
	}
	return out
}

// Where returns the names of the rows for which keep is true, in the
// table's order.
func Where(keep func(Arch) bool) []string {
	var out []string
	for _, a := range All {
		if keep(a) {
			out = append(out, a.Name)
		}
	}
	return out
}

// Host gives the Alpine name of the host's architecture (Go's name when
// the table has none for it).
func Host() string {
	return FromGOARCH(runtime.GOARCH)
}

// FromGOARCH gives the Alpine name of a Go architecture, goarch itself
// when the table has none (loong64 is loongarch64: Alpine's port has no
// Go agent yet, but its name is known).
func FromGOARCH(goarch string) string {
	if goarch == "loong64" {
		return "loongarch64"
	}
	for _, a := range All {
		if a.GOARCH == goarch {
			return a.Name
		}
	}
	return goarch
}

// Agent is the name of the arch's build VM agent binary: its GOARCH,
// with the ARM version for arm (armv6, armv7).
func (a Arch) Agent() string {
	if a.GOARM != "" {
		return a.GOARCH + "v" + a.GOARM
	}
	return a.GOARCH
}

// UnameMachine is the kernel's uname -m in a build VM of the arch.
func (a Arch) UnameMachine() string {
	if a.Uname != "" {
		return a.Uname
	}
	return a.Name
}

// HasBIOS tells whether an architecture's machines boot with a PC BIOS.
func HasBIOS(name string) bool {
	a, _ := Lookup(name)
	return a.BIOS
}

// SerialConsole is the serial console of QEMU's machine for an arch,
// the one a disk image gets a getty on by default (ttyS0 for an arch the
// table does not know).
func SerialConsole(name string) string {
	if a, ok := Lookup(name); ok && a.Console != "" {
		return a.Console
	}
	return "ttyS0"
}

// Platform is the arch's OCI platform name as tools such as apko and
// docker --platform write it: the OCI architecture, with its variant
// only when another row shares the architecture (arm/v7, arm/v6).
func (a Arch) Platform() string {
	for _, b := range All {
		if b.Name != a.Name && b.OCI == a.OCI && a.OCIVariant != "" {
			return a.OCI + "/" + a.OCIVariant
		}
	}
	return a.OCI
}

// FromOCI gives the Alpine arch of an OCI platform's architecture and
// variant. A platform without a variant takes the arch's usual one: arm
// is armv7.
func FromOCI(architecture, variant string) (string, bool) {
	var loose string
	for _, a := range slices.SortedFunc(slices.Values(All), func(x, y Arch) int { return strings.Compare(x.Name, y.Name) }) {
		if a.OCI != architecture {
			continue
		}
		if a.OCIVariant == variant {
			return a.Name, true
		}
		if variant == "" && (loose == "" || a.Name == "armv7") {
			loose = a.Name
		}
	}
	return loose, loose != ""
}
