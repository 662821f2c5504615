package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"

	"github.com/alpinist/alpinist/internal/counting"
)

// The layer is compressed in blocks of layerBlock bytes, up to
// layerBlocks at a time. The output depends on the block size only (each
// block starts with the previous one's last 32 KiB as its dictionary), so
// both are fixed and the digest never depends on the host's CPUs.
const (
	layerBlock  = 1 << 20
	layerBlocks = 8
)

// Layer is the rootfs as one gzip'ed OCI layer in a file. It is a
// v1.Layer.
type Layer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
}

// WriteLayer compresses the tar stream r into dir as the blob file
// sha256/HEX that an OCI image layout keeps it in, computing its digest
// and diff ID as it goes. The file appears whole or not at all.
func WriteLayer(dir string, r io.Reader) (*Layer, error) {
	bdir := filepath.Join(dir, "sha256")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return nil, fmt.Errorf("oci: layer: %w", err)
	}
	tmp, err := os.CreateTemp(bdir, ".layer-*")
	if err != nil {
		return nil, fmt.Errorf("oci: layer: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	zsum, tsum := sha256.New(), sha256.New()
	cw := &counting.Writer{W: io.MultiWriter(tmp, zsum)}
	zw, err := pgzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if err == nil {
		err = zw.SetConcurrency(layerBlock, layerBlocks)
	}
	if err == nil {
		_, err = io.Copy(io.MultiWriter(zw, tsum), r)
		err = errors.Join(err, zw.Close())
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err = errors.Join(err, tmp.Close()); err != nil {
		return nil, fmt.Errorf("oci: layer: %w", err)
	}
	l := &Layer{
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(zsum.Sum(nil))},
		diffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(tsum.Sum(nil))},
		size:   cw.N,
	}
	l.path = filepath.Join(bdir, l.digest.Hex)
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return nil, fmt.Errorf("oci: layer: %w", err)
	}
	return l, nil
}

// Path is the layer's file.
func (l *Layer) Path() string { return l.path }

// Digest is the sha256 of the compressed layer.
func (l *Layer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the sha256 of the uncompressed tar.
func (l *Layer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Size is the compressed size.
func (l *Layer) Size() (int64, error) { return l.size, nil }

// MediaType is the OCI gzip'ed layer type.
func (l *Layer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// Compressed opens the layer's file.
func (l *Layer) Compressed() (io.ReadCloser, error) { return os.Open(l.path) }

// Uncompressed opens the layer's tar.
func (l *Layer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("oci: layer %s: %w", l.path, err)
	}
	return readCloser{zr, f}, nil
}

type readCloser struct {
	io.Reader
	f *os.File
}

func (r readCloser) Close() error { return r.f.Close() }
