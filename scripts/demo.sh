#!/bin/sh
# make demo: build testdata/specs/demo.yaml for x86_64 and aarch64 from the
# generated, signed test repository, each inside a QEMU VM
# of its own architecture (TCG emulation when KVM does not work), and show
# what came out: rootfs tars, a multi-arch OCI image and qcow2 disk images,
# the x86_64 one booted with UEFI and with the BIOS to its login prompt;
# see README.md.
set -eu
cd "$(dirname "$0")/.."
a=bin/alpinist
out=${DEMO_OUT:-demo-out}

echo "== the signed synthetic repository (testdata/repo -> $(readlink testdata/repo))"
ls testdata/repo/main/*/APKINDEX.tar.gz

echo
echo "== alpinist resolve testdata/specs/demo.yaml"
$a resolve testdata/specs/demo.yaml

echo
echo "== alpinist build testdata/specs/demo.yaml -o $out --output tar,oci,qcow2   (installs inside a VM per arch)"
$a build testdata/specs/demo.yaml -o "$out" --output tar,oci,qcow2

for arch in x86_64 aarch64; do
	echo
	echo "== $out/demo-$arch.tar"
	tar -tvf "$out/demo-$arch.tar" | grep -E ' bin/(busybox|ls|sh)( |$)' || true
	tar -xOf "$out/demo-$arch.tar" lib/apk/db/installed | grep -c '^P:' | sed 's/^/packages in the apk database: /'
done

echo
echo "== $out/demo.oci: a multi-arch OCI image (index.json names it demo:latest)"
if command -v skopeo >/dev/null 2>&1; then
	skopeo inspect --raw "oci:$out/demo.oci:latest" | grep -o '"platform":{[^}]*}'
else
	cat "$out/demo.oci/index.json"
fi
grep -c '"SPDXID": "SPDXRef-Package-' "$out/demo-x86_64.spdx.json" | sed 's/^/packages in the SBOM demo-x86_64.spdx.json: /'

echo
echo "== alpinist run $out/demo-x86_64.qcow2 --until login:   (boots the disk image under UEFI)"
$a run "$out/demo-x86_64.qcow2" --until "login:" --timeout 10m | tail -n 6

echo
echo "== alpinist run $out/demo-x86_64.qcow2 --bios --until login:   (the same disk with SeaBIOS and EXTLINUX)"
$a run "$out/demo-x86_64.qcow2" --bios --until "login:" --timeout 10m | grep -E 'SYSLINUX|Loading|login:'

echo
echo "Outputs are in $out/ (rootfs tars, qcow2 disk images, the OCI layout, SBOMs, the lock file, the build logs)."
echo "Try: bin/alpinist run $out/demo-aarch64.qcow2 (Ctrl-A X quits) ; skopeo inspect oci:$out/demo.oci:latest ; bin/alpinist build --help"
