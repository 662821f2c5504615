#!/bin/sh
# make demo: build testdata/specs/demo.yaml's root filesystem for x86_64 and
# aarch64 from the generated, signed test repository, each inside a QEMU VM
# of its own architecture (TCG emulation when KVM does not work), and show
# what came out. Disk images and booting them come with the disk outputs;
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
echo "== alpinist build testdata/specs/demo.yaml -o $out   (installs inside a VM per arch)"
$a build testdata/specs/demo.yaml -o "$out"

for arch in x86_64 aarch64; do
	echo
	echo "== $out/demo-$arch.tar"
	tar -tvf "$out/demo-$arch.tar" | grep -E ' bin/(busybox|ls|sh)( |$)' || true
	tar -xOf "$out/demo-$arch.tar" lib/apk/db/installed | grep -c '^P:' | sed 's/^/packages in the apk database: /'
done

echo
echo "Outputs are in $out/ (rootfs tars, the lock file, the build logs)."
echo "Try: tar -tvf $out/demo-aarch64.tar | less ; alpinist build --help"
