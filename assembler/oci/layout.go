package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/alpinist/alpinist/internal/atomicfile"
)

// Entry is one arch's image in a layout, with its SBOM (nil: none).
type Entry struct {
	Arch  string
	Image v1.Image
	// SBOM is an SPDX JSON document, attached to the image as an OCI 1.1
	// referrer (an artifact manifest whose subject is the image).
	SBOM []byte
	// SBOMName is the SBOM's file name (its title annotation).
	SBOMName string
}

// SBOMType is the artifact and blob media type of an SPDX JSON SBOM.
const SBOMType = "application/spdx+json"

// emptyConfig is the OCI 1.1 empty descriptor an artifact manifest's
// config points to.
var emptyConfig = v1.Descriptor{
	MediaType: "application/vnd.oci.empty.v1+json",
	Size:      2,
	Digest:    v1.Hash{Algorithm: "sha256", Hex: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
	Data:      []byte("{}"),
}

// WriteLayout writes the images of entries as the OCI image layout dir,
// whose blobs directory may already hold their layers (WriteLayer). The
// layout's index.json names exactly one image, tagged ref.name=tag, so
// that `skopeo inspect oci:DIR` and `umoci unpack --image DIR:TAG` find
// it: the image itself for one arch, else an image index of every arch
// with its platform. The SBOMs are attached as OCI 1.1 referrers listed
// in index.json as well (as oras does).
func WriteLayout(dir, tag string, annotations map[string]string, entries []Entry) error {
	if len(entries) == 0 {
		return fmt.Errorf("oci: layout %s: no image", dir)
	}
	lp := layout.Path(dir)
	if err := atomicfile.WriteBytes(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	var images, referrers []v1.Descriptor
	for _, e := range entries {
		if err := lp.WriteImage(e.Image); err != nil {
			return fmt.Errorf("oci: layout %s: %s: %w", dir, e.Arch, err)
		}
		desc, err := descriptor(e.Image)
		if err != nil {
			return fmt.Errorf("oci: layout %s: %s: %w", dir, e.Arch, err)
		}
		plat, err := Platform(e.Arch)
		if err != nil {
			return err
		}
		desc.Platform = &plat
		images = append(images, desc)
		if e.SBOM != nil {
			r, err := writeSBOM(lp, desc, e, annotations)
			if err != nil {
				return fmt.Errorf("oci: layout %s: %s: sbom: %w", dir, e.Arch, err)
			}
			referrers = append(referrers, r)
		}
	}
	top := images[0]
	if len(images) > 1 {
		ix := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: images, Annotations: annotations}
		d, err := writeJSON(lp, types.OCIImageIndex, ix)
		if err != nil {
			return fmt.Errorf("oci: layout %s: %w", dir, err)
		}
		top = d
	}
	top.Annotations = map[string]string{"org.opencontainers.image.ref.name": tag}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: append([]v1.Descriptor{top}, referrers...)}
	data, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, "index.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	return nil
}

// descriptor is img's manifest descriptor.
func descriptor(img v1.Image) (v1.Descriptor, error) {
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	n, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: n}, nil
}

// writeSBOM writes e's SBOM and its referrer manifest, and returns the
// manifest's descriptor.
func writeSBOM(lp layout.Path, subject v1.Descriptor, e Entry, annotations map[string]string) (v1.Descriptor, error) {
	subject.Platform = nil
	blob, err := writeBlob(lp, SBOMType, e.SBOM)
	if err != nil {
		return v1.Descriptor{}, err
	}
	blob.Annotations = map[string]string{"org.opencontainers.image.title": e.SBOMName}
	if err := writeRaw(lp, emptyConfig.Digest, []byte("{}")); err != nil {
		return v1.Descriptor{}, err
	}
	cfg := emptyConfig
	m := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: SBOMType,
		Config: cfg, Layers: []v1.Descriptor{blob}, Subject: &subject,
		Annotations: map[string]string{Created: annotations[Created]},
	}
	d, err := writeJSON(lp, types.OCIManifestSchema1, m)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d.ArtifactType = SBOMType
	return d, nil
}

func writeJSON(lp layout.Path, mt types.MediaType, v any) (v1.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return writeBlob(lp, mt, data)
}

func writeBlob(lp layout.Path, mt types.MediaType, data []byte) (v1.Descriptor, error) {
	sum := sha256.Sum256(data)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if err := writeRaw(lp, h, data); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(data))}, nil
}

func writeRaw(lp layout.Path, h v1.Hash, data []byte) error {
	return lp.WriteBlob(h, io.NopCloser(bytes.NewReader(data)))
}

// EmptyConfig is the OCI 1.1 empty descriptor an artifact manifest's
// config points to ({}), for the artifacts other packages push.
func EmptyConfig() v1.Descriptor {
	d := emptyConfig
	d.Data = []byte("{}")
	return d
}
