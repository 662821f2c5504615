package oci

import (
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"context"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
)

// WriteDockerArchive writes img as the docker-archive file path (what
// `docker save` writes and `docker load` and `podman load` read), tagged
// tag (NAME[:TAG]; :latest when no tag is given).
func WriteDockerArchive(ctx context.Context, path, tag string, img v1.Image) error {
	ref, err := name.NewTag(tag, name.WeakValidation)
	if err != nil {
		return fmt.Errorf("oci: docker-archive %s: tag %q: %w", path, tag, err)
	}
	err = atomicfile.Write(path, 0o644, func(w io.Writer) error {
		return tarball.Write(ref, img, ctxio.Writer(ctx, w))
	})
	if err != nil {
		return fmt.Errorf("oci: docker-archive %s: %w", path, err)
	}
	return nil
}
