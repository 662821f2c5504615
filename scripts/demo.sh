#!/bin/sh
# make demo: what alpinist can show today. The build VM does not exist yet,
# so the demo resolves the demo spec against the generated, signed test
# repository for both architectures, writes the lock file and verifies a
# package; it does not build or boot an image yet.
set -eu
cd "$(dirname "$0")/.."
a=bin/alpinist
out=${DEMO_OUT:-$(mktemp -d)}

echo "== the signed synthetic repository (testdata/repo -> $(readlink testdata/repo))"
ls testdata/repo/main/*/APKINDEX.tar.gz

for arch in x86_64 aarch64; do
	echo
	echo "== alpinist resolve testdata/specs/demo.yaml --arch $arch"
	$a resolve testdata/specs/demo.yaml --arch "$arch"
done

echo
echo "== lock file for both arches: $out/demo.lock"
$a resolve testdata/specs/demo.yaml --lock "$out/demo.lock" >/dev/null
head -20 "$out/demo.lock"

pkg=$(ls testdata/repo/main/x86_64/busybox-*.apk | head -1)
echo
echo "== alpinist pkg inspect $pkg --keys testdata/repo/keys"
$a pkg inspect "$pkg" --keys testdata/repo/keys

echo
echo "The build VM (installing these packages natively in QEMU and writing images) is the next step; see README.md."
