#!/bin/sh
# Make sure what the build and the tests need is installed.
#
# Go modules are downloaded through the module proxy. Debian packages are
# installed with apt-get when missing and running as root; otherwise this
# prints the exact command to run and fails.
#
# Usage: scripts/deps.sh [build|test]
set -eu

what=${1:-test}

if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		PATH=/usr/local/go/bin:$PATH
	else
		echo "deps: Go 1.26 or newer is needed: https://go.dev/dl/ (Debian's golang-go is too old)" >&2
		exit 1
	fi
fi

go mod download

[ "$what" = build ] && exit 0

# command -> Debian package providing it
need=""
check() {
	command -v "$1" >/dev/null 2>&1 || need="$need $2"
}
check_file() {
	[ -e "$1" ] || need="$need $2"
}
check apt-get apt
check dpkg-deb dpkg
# The build VM runs under QEMU (TCG when KVM does not work).
check qemu-system-x86_64 qemu-system-x86
check qemu-system-aarch64 qemu-system-arm
check qemu-img qemu-utils
check qemu-system-riscv64 qemu-system-misc
check qemu-system-i386 qemu-system-x86
check qemu-system-arm qemu-system-arm
check qemu-system-s390x qemu-system-misc
check qemu-system-ppc64 qemu-system-ppc
# The container outputs' validators (assembler/oci, assembler/lxc, cmd/alpinist).
check skopeo skopeo
check umoci umoci
check docker-registry docker-registry
check podman podman
check crun crun
check runc runc
check lxd lxd
# The tar outputs' validators (assembler/output TestConformance).
check zstd zstd
check xz xz-utils
check gzip gzip
check debugfs e2fsprogs
# The disk outputs' validators (assembler/disk).
check sgdisk gdisk
check e2fsck e2fsprogs
check fsck.fat dosfstools
check mdir mtools
check sfdisk fdisk
check xmllint libxml2-utils
# The iso output's validators and bench peer (assembler/iso), with
# Debian's ISOLINUX as test data.
check xorriso xorriso
check isoinfo genisoimage
check_file /usr/lib/ISOLINUX/isolinux.bin isolinux
check_file /usr/lib/syslinux/modules/bios/ldlinux.c32 syslinux-common
# The real Alpine VM test logs in over SSH (cmd/alpinist).
check ssh openssh-client
check ssh-keygen openssh-client
# UEFI firmware for the boot tests.
check_file /usr/share/OVMF/OVMF_CODE.fd ovmf
check_file /usr/share/AAVMF/AAVMF_CODE.fd qemu-efi-aarch64
check_file /usr/share/OVMF/OVMF32_VARS_4M.fd ovmf-ia32
check_file /usr/share/AAVMF/AAVMF32_CODE.fd qemu-efi-arm
# riscv64's disks boot with U-Boot's UEFI (QEMU 7.2 runs no EDK2 for it).
check_file /usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin u-boot-qemu

# The synthetic test repository takes each arch's binaries (kernel,
# busybox-static, grub) from Debian's packages of that arch, so apt must
# know the architectures: arm64 (aarch64), i386 (x86), armhf (armv7 and
# armhf), ppc64el (ppc64le) and s390x from bookworm; riscv64 below.
host_arch=$(dpkg --print-architecture 2>/dev/null || echo none)
need_archs=""
for a in arm64 i386 armhf ppc64el s390x; do
	if command -v dpkg >/dev/null 2>&1 && [ "$host_arch" != "$a" ] \
		&& ! dpkg --print-foreign-architectures | grep -qx "$a"; then
		need_archs="$need_archs $a"
	fi
done

# riscv64: bookworm has no riscv64 port, so its binaries (kernel,
# busybox-static, grub) come from trixie, and apt is told to take only
# riscv64 packages from there (nothing of the host changes).
# The pin keeps trixie's architecture-independent packages (qemu-system-data,
# ...) from becoming candidates over the host's own.
need_riscv64=""
trixie=/etc/apt/sources.list.d/alpinist-trixie-riscv64.sources
pin=/etc/apt/preferences.d/alpinist-trixie-riscv64
pin_text='Package: *\nPin: release n=trixie\nPin-Priority: 100\n'
if command -v dpkg >/dev/null 2>&1 && [ "$(dpkg --print-architecture)" != riscv64 ]; then
	if ! dpkg --print-foreign-architectures | grep -qx riscv64 || \
		! { [ -f "$trixie" ] || grep -rqs 'riscv64' /etc/apt/sources.list.d/ ; } || \
		{ [ -f "$trixie" ] && [ ! -f "$pin" ]; }; then
		need_riscv64=yes
	fi
fi

# apt's package lists must be there for apt-get download (fresh machines
# and containers often have none).
# (One apt-cache call: apt builds its cache at each, seconds when
# Dir::Cache::pkgcache is off as in Debian's container images.)
need_update=""
shows="busybox-static"
for a in arm64 i386 armhf ppc64el s390x riscv64; do
	[ "$host_arch" != "$a" ] && shows="$shows busybox-static:$a"
done
if [ -n "$need_archs" ] || [ -n "$need_riscv64" ] || ! apt-cache show $shows >/dev/null 2>&1; then
	need_update=yes
fi

if [ -z "$need" ] && [ -z "$need_archs" ] && [ -z "$need_riscv64" ] && [ -z "$need_update" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing system packages; run as root:" >&2
	for a in $need_archs; do echo "  dpkg --add-architecture $a" >&2; done
	[ -n "$need_riscv64" ] && printf '  dpkg --add-architecture riscv64\n  printf "Types: deb\\nURIs: http://deb.debian.org/debian\\nSuites: trixie\\nComponents: main\\nArchitectures: riscv64\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n" > %s\n' "$trixie" >&2
	[ -n "$need_riscv64" ] && printf '  printf "%s" > %s\n' "$pin_text" "$pin" >&2
	echo "  apt-get update" >&2
	[ -n "$need" ] && echo "  apt-get install -y$need" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for a in $need_archs; do
	echo "deps: adding the $a architecture to apt (for the test repository)"
	dpkg --add-architecture "$a"
done
if [ -n "$need_riscv64" ]; then
	echo "deps: adding the riscv64 architecture from trixie to apt (for the riscv64 test repository)"
	dpkg --add-architecture riscv64
	if ! grep -rqs 'riscv64' /etc/apt/sources.list.d/; then
		printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nArchitectures: riscv64\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$trixie"
	fi
	if [ -f "$trixie" ]; then
		printf "$pin_text" > "$pin"
	fi
fi
# A mirror caught mid-sync fails one index; the packages may still be
# installable from the others, so go on and let apt-get install decide.
apt-get update -qq || echo "deps: apt-get update reported errors (see above); going on with the package lists it has" >&2
# A mirror (or a caching proxy in front of it) sometimes serves a trixie
# riscv64 index that does not match its Release file ("File has
# unexpected size ... Mirror sync in progress?"). The same files under
# the suite name stable (trixie today) come through another path: use it.
if [ -f "$trixie" ] && [ "$(dpkg --print-architecture)" != riscv64 ] && grep -q '^Suites: trixie' "$trixie" \
	&& ! apt-cache show busybox-static:riscv64 >/dev/null 2>&1; then
	echo "deps: the trixie riscv64 index did not come; trying the suite name stable" >&2
	sed -i 's/^Suites: trixie$/Suites: stable/' "$trixie"
	apt-get update -qq || echo "deps: apt-get update reported errors (see above); going on with the package lists it has" >&2
fi
[ -n "$need" ] && apt-get install -y -qq $need
exit 0
