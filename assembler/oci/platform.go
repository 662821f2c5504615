// Package oci writes the rootfs as an OCI image: one gzip'ed layer
// compressed in parallel, an image config from the spec's oci section, an
// OCI image layout (a multi-arch image index for several arches), a
// docker-archive, and pushes a layout to a registry. It builds on
// go-containerregistry's v1 interfaces and checks what it builds with its
// validate package in tests.
package oci

import (
	"fmt"
	"maps"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// platforms maps Alpine's arches to OCI platforms (GOARCH names, and the
// variant for arm as the image-spec lists them).
var platforms = map[string]v1.Platform{
	"x86_64":      {OS: "linux", Architecture: "amd64"},
	"x86":         {OS: "linux", Architecture: "386"},
	"aarch64":     {OS: "linux", Architecture: "arm64", Variant: "v8"},
	"armv7":       {OS: "linux", Architecture: "arm", Variant: "v7"},
	"armhf":       {OS: "linux", Architecture: "arm", Variant: "v6"},
	"ppc64le":     {OS: "linux", Architecture: "ppc64le"},
	"s390x":       {OS: "linux", Architecture: "s390x"},
	"riscv64":     {OS: "linux", Architecture: "riscv64"},
	"loongarch64": {OS: "linux", Architecture: "loong64"},
}

// Platform is the OCI platform of an Alpine arch.
func Platform(arch string) (v1.Platform, error) {
	p, ok := platforms[arch]
	if !ok {
		return v1.Platform{}, fmt.Errorf("oci: no OCI platform for arch %q", arch)
	}
	return p, nil
}

// Arch is the Alpine arch of an OCI platform (linux only). A platform
// without a variant takes the arch's usual one: arm is armv7.
func Arch(p v1.Platform) (string, bool) {
	if p.OS != "" && p.OS != "linux" {
		return "", false
	}
	var loose string
	for _, a := range slices.Sorted(maps.Keys(platforms)) {
		q := platforms[a]
		if q.Architecture != p.Architecture {
			continue
		}
		if q.Variant == p.Variant {
			return a, true
		}
		if p.Variant == "" && (loose == "" || a == "armv7") {
			loose = a
		}
	}
	return loose, loose != ""
}
