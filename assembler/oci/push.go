package oci

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushOptions tune Push.
type PushOptions struct {
	// Insecure allows plain HTTP (and unverified TLS): only for a
	// registry on the loopback interface.
	Insecure bool
	// Keychain finds credentials (default: the user's docker and podman
	// credential files: ~/.docker/config.json or $DOCKER_CONFIG, then
	// $REGISTRY_AUTH_FILE, then containers/auth.json under
	// $XDG_RUNTIME_DIR or ~/.config).
	Keychain authn.Keychain
	// Progress, when set, gets the bytes pushed so far and in all.
	Progress func(done, total int64)
}

// Push pushes the image (or multi-arch index) of the OCI layout dir to
// the registry reference ref, then its SBOM referrers, and returns the
// pushed manifest's digest.
func Push(ctx context.Context, dir, ref string, o PushOptions) (v1.Hash, error) {
	var nopts []name.Option
	if o.Insecure {
		host, err := registryHost(ref)
		if err != nil {
			return v1.Hash{}, err
		}
		if !Loopback(host) {
			return v1.Hash{}, fmt.Errorf("oci: push %s: --insecure is only for a registry on localhost, not %s", ref, host)
		}
		nopts = append(nopts, name.Insecure)
	}
	tag, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("oci: push: %q is not an image reference: %w", ref, err)
	}
	top, referrers, err := ReadLayout(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if o.Progress != nil {
		ch := make(chan v1.Update, 16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range ch {
				o.Progress(u.Complete, u.Total)
			}
		}()
		defer func() { <-done }()
		ropts = append(ropts, remote.WithProgress(ch))
	}
	lp := layout.Path(dir)
	if top.MediaType.IsIndex() {
		ii, err := lp.ImageIndex()
		if err == nil {
			ii, err = ii.ImageIndex(top.Digest)
		}
		if err == nil {
			err = remote.WriteIndex(tag, ii, ropts...)
		}
		if err != nil {
			return v1.Hash{}, fmt.Errorf("oci: push %s to %s: %w", dir, ref, err)
		}
	} else {
		img, err := lp.Image(top.Digest)
		if err == nil {
			err = remote.Write(tag, img, ropts...)
		}
		if err != nil {
			return v1.Hash{}, fmt.Errorf("oci: push %s to %s: %w", dir, ref, err)
		}
	}
	// The progress channel is closed by each write: the referrers go
	// without it.
	ropts = []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	for _, r := range referrers {
		img, err := lp.Image(r.Digest)
		if err == nil {
			err = remote.Write(tag.Context().Digest(r.Digest.String()), img, ropts...)
		}
		if err != nil {
			return v1.Hash{}, fmt.Errorf("oci: push %s: SBOM %s: %w", ref, r.Digest, err)
		}
	}
	return top.Digest, nil
}

// ReadLayout finds the layout's image (the one entry without an
// artifactType) and its referrers.
func ReadLayout(dir string) (top v1.Descriptor, referrers []v1.Descriptor, err error) {
	ii, err := layout.Path(dir).ImageIndex()
	if err != nil {
		return top, nil, fmt.Errorf("oci: %s is not an OCI image layout: %w", dir, err)
	}
	m, err := ii.IndexManifest()
	if err != nil {
		return top, nil, fmt.Errorf("oci: %s: index.json: %w", dir, err)
	}
	var images []v1.Descriptor
	for _, d := range m.Manifests {
		if d.ArtifactType != "" {
			referrers = append(referrers, d)
		} else {
			images = append(images, d)
		}
	}
	if len(images) != 1 {
		return top, nil, fmt.Errorf("oci: %s: index.json lists %d images; push takes a layout of one image or one multi-arch index", dir, len(images))
	}
	return images[0], referrers, nil
}

// registryHost is the host of ref's registry.
func registryHost(ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("oci: push: %q is not an image reference: %w", ref, err)
	}
	return r.Context().RegistryStr(), nil
}

// Loopback tells whether a registry host[:port] is on this machine.
func Loopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
