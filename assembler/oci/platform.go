// Package oci writes the rootfs as an OCI image: one gzip'ed layer
// compressed in parallel, an image config from the spec's oci section, an
// OCI image layout (a multi-arch image index for several arches), a
// docker-archive, and pushes a layout to a registry. It builds on
// go-containerregistry's v1 interfaces and checks what it builds with its
// validate package in tests.
package oci

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/alpinist/alpinist/arch"
)

// Platform is the OCI platform of an Alpine arch (arch.All's OCI names:
// GOARCH names, and the variant for arm as the image-spec lists them).
func Platform(name string) (v1.Platform, error) {
	a, ok := arch.Lookup(name)
	if !ok || a.OCI == "" {
		return v1.Platform{}, fmt.Errorf("oci: no OCI platform for arch %q", name)
	}
	return v1.Platform{OS: "linux", Architecture: a.OCI, Variant: a.OCIVariant}, nil
}

// Arch is the Alpine arch of an OCI platform (linux only). A platform
// without a variant takes the arch's usual one: arm is armv7.
func Arch(p v1.Platform) (string, bool) {
	if p.OS != "" && p.OS != "linux" {
		return "", false
	}
	return arch.FromOCI(p.Architecture, p.Variant)
}
