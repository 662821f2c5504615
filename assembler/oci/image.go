package oci

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/alpinist/alpinist/spec"
)

// DefaultPath is the PATH an image gets when the spec's env sets none,
// as Docker and apko give one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Created is the annotation that dates an image.
const Created = "org.opencontainers.image.created"

// Image is the OCI image of one arch: layer, the image config from o, and
// created (SOURCE_DATE_EPOCH) as its date everywhere. Its manifest
// carries o's annotations and org.opencontainers.image.created.
func Image(layer v1.Layer, arch string, o spec.OCI, created time.Time) (v1.Image, error) {
	plat, err := Platform(arch)
	if err != nil {
		return nil, err
	}
	created = created.UTC()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "alpinist build", Comment: "the Alpine root filesystem"},
	})
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", arch, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", arch, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config = Config(o)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", arch, err)
	}
	return mutate.Annotations(img, Annotations(o, created)).(v1.Image), nil
}

// Config is the image config's runtime part from the spec's oci section.
func Config(o spec.OCI) v1.Config {
	c := v1.Config{
		Entrypoint: o.Entrypoint,
		Cmd:        o.Cmd,
		WorkingDir: o.WorkDir,
		User:       o.User,
		StopSignal: o.StopSignal,
	}
	for _, k := range slices.Sorted(maps.Keys(o.Env)) {
		c.Env = append(c.Env, k+"="+o.Env[k])
	}
	if _, ok := o.Env["PATH"]; !ok {
		c.Env = append([]string{"PATH=" + DefaultPath}, c.Env...)
	}
	if len(o.Labels) > 0 {
		c.Labels = maps.Clone(o.Labels)
	}
	if len(o.ExposedPorts) > 0 {
		c.ExposedPorts = map[string]struct{}{}
		for _, p := range o.ExposedPorts {
			c.ExposedPorts[p] = struct{}{}
		}
	}
	if len(o.Volumes) > 0 {
		c.Volumes = map[string]struct{}{}
		for _, v := range o.Volumes {
			c.Volumes[v] = struct{}{}
		}
	}
	return c
}

// Annotations are the manifest's and index's annotations: the spec's,
// and org.opencontainers.image.created unless the spec sets it.
func Annotations(o spec.OCI, created time.Time) map[string]string {
	a := map[string]string{Created: created.UTC().Format(time.RFC3339)}
	maps.Copy(a, o.Annotations)
	return a
}

// RefName is the tag of ref (NAME[:TAG], TAG defaulting to latest), the
// org.opencontainers.image.ref.name a layout gives its image.
func RefName(ref string) string {
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[i+1:]
	}
	return "latest"
}
