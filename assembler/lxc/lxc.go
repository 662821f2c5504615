// Package lxc writes the rootfs as an Incus (and LXD) unified image
// tarball, which `incus image import FILE --alias NAME` accepts:
// metadata.yaml (architecture, creation_date, properties, templates),
// templates/ and the root filesystem under rootfs/, xz-compressed.
package lxc

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"context"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/assembler/tarball"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
)

// Arch is the Incus architecture name of an Alpine arch (arch.All's
// LXC), "" for none.
func Arch(name string) string {
	a, _ := arch.Lookup(name)
	return a.LXC
}

// Image describes the image.
type Image struct {
	// Name is the spec's name, Arch the Alpine arch.
	Name, Arch string
	// Created is its creation date (SOURCE_DATE_EPOCH).
	Created time.Time
	// Hostname is the spec's hostname: when empty, a template gives each
	// instance its own name as hostname, as Incus's own images do.
	Hostname string
}

// Metadata is metadata.yaml.
type Metadata struct {
	Architecture string              `yaml:"architecture"`
	CreationDate int64               `yaml:"creation_date"`
	Properties   Properties          `yaml:"properties"`
	Templates    map[string]Template `yaml:"templates"`
}

// Properties describe the image in `incus image list`.
type Properties struct {
	Architecture string `yaml:"architecture"`
	Description  string `yaml:"description"`
	Name         string `yaml:"name"`
	OS           string `yaml:"os"`
	Release      string `yaml:"release,omitempty"`
	Variant      string `yaml:"variant"`
}

// Template is a file Incus renders into an instance.
type Template struct {
	When     []string `yaml:"when"`
	Template string   `yaml:"template"`
}

// hostnameTemplate is templates/hostname.tpl.
const hostnameTemplate = "{{ instance.name }}\n"

// WriteFile writes the rootfs tar file src as the unified tarball dst.
// It stops at its next read of src once ctx (nil: never) is done.
func WriteFile(ctx context.Context, dst, src string, img Image) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("lxc: %w", err)
	}
	defer in.Close()
	release, err := alpineRelease(ctxio.Reader(ctx, in))
	if err != nil {
		return fmt.Errorf("lxc: %s: %w", src, err)
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("lxc: %w", err)
	}
	err = atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		return Write(w, ctxio.Reader(ctx, in), img, release)
	})
	if err != nil {
		return fmt.Errorf("lxc: %s: %w", dst, err)
	}
	return nil
}

// NewMetadata is the image's metadata.yaml; release is the Alpine
// release ("" when unknown).
func NewMetadata(img Image, release string) (Metadata, error) {
	arch := Arch(img.Arch)
	if arch == "" {
		return Metadata{}, fmt.Errorf("lxc: no Incus architecture for arch %q", img.Arch)
	}
	desc := "Alpine Linux"
	if release != "" {
		desc += " " + release
	}
	m := Metadata{
		Architecture: arch,
		CreationDate: img.Created.Unix(),
		Properties: Properties{
			Architecture: arch, Name: img.Name, OS: "alpinelinux", Release: release, Variant: "default",
			Description: desc + " " + img.Name + " (" + img.Arch + ")",
		},
		Templates: map[string]Template{},
	}
	if img.Hostname == "" {
		m.Templates["/etc/hostname"] = Template{When: []string{"create", "copy"}, Template: "hostname.tpl"}
	}
	return m, nil
}

// Write writes the rootfs tar stream r to w as a unified tarball.
func Write(w io.Writer, r io.Reader, img Image, release string) error {
	m, err := NewMetadata(img, release)
	if err != nil {
		return err
	}
	meta, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	zw, err := tarball.NewWriter(w, "xz")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	err = tarball.AddFile(tw, "metadata.yaml", meta, 0o644, img.Created)
	if err == nil && len(m.Templates) > 0 {
		err = addDir(tw, "templates/", img.Created)
		if err == nil {
			err = tarball.AddFile(tw, "templates/hostname.tpl", []byte(hostnameTemplate), 0o644, img.Created)
		}
	}
	if err == nil {
		err = addDir(tw, "rootfs/", img.Created)
	}
	if err == nil {
		err = tarball.Copy(tw, r, func(h *tar.Header) bool {
			h.Name = "rootfs/" + strings.TrimPrefix(h.Name, "./")
			if h.Typeflag == tar.TypeLink {
				h.Linkname = "rootfs/" + strings.TrimPrefix(h.Linkname, "./")
			}
			return true
		})
	}
	return errors.Join(err, tw.Close(), zw.Close())
}

func addDir(tw *tar.Writer, name string, mtime time.Time) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime.Truncate(time.Second)})
}

// alpineRelease reads etc/alpine-release from the rootfs tar ("" when it
// has none), reading only the headers up to it.
func alpineRelease(r io.Reader) (string, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if strings.TrimPrefix(h.Name, "./") == "etc/alpine-release" && h.Typeflag == tar.TypeReg && h.Size < 256 {
			b, err := io.ReadAll(tr)
			return strings.TrimSpace(string(b)), err
		}
	}
}
