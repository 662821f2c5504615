// Package regcache keeps alpinist's caches in an OCI registry, as
// BuildKit's registry cache does, so that builders on other machines
// share them: one OCI 1.1 artifact per entry, each under a tag derived
// from what identifies it.
//
//   - A package of the package cache is the artifact tagged
//     apk-SHA1HEX (the SHA-1 of its control part, the index's C:),
//     artifactType PackageType, one layer: the .apk file as it is
//     (media type APKMediaType).
//   - A build-cache rootfs is the artifact tagged rootfs-KEY (the build
//     key, 64 hex digits), artifactType RootfsType, three layers: the
//     rootfs tar (RootfsTarType), the build VM's log (RootfsLogType) and
//     the entry's metadata (RootfsEntryType).
//
// Every manifest has the empty config, the key in its annotations and no
// time stamp: two builders that push the same entry at once push the
// same bytes, and a tag that is there already is left as it is. What is
// pulled is checked: the manifest's type and key, each blob's digest as
// it streams (go-containerregistry checks it at its end); the package's
// signature and checksum are the fetch's to verify, the rootfs's entries
// the build cache's canonical reader's.
package regcache

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/assembler/oci"
)

// The media types of the artifacts and their blobs.
const (
	PackageType     = "application/vnd.alpinist.cache.apk.v1"
	APKMediaType    = "application/vnd.alpinist.apk"
	RootfsType      = "application/vnd.alpinist.cache.rootfs.v1"
	RootfsTarType   = "application/vnd.alpinist.rootfs.tar"
	RootfsLogType   = "application/vnd.alpinist.rootfs.log"
	RootfsEntryType = "application/vnd.alpinist.rootfs.entry+json"

	// KeyAnnotation holds the entry's key: the package checksum's hex or
	// the build key.
	KeyAnnotation   = "dev.alpinist.cache.key"
	titleAnnotation = "org.opencontainers.image.title"
)

// ErrMiss is the error for an entry the registry does not have.
var ErrMiss = errors.New("not in the registry cache")

// Cache is a cache in one repository of a registry.
type Cache struct {
	repo name.Repository
	opts []remote.Option
}

// Options tune Open.
type Options struct {
	// Insecure allows plain HTTP: only for a registry on this machine.
	Insecure bool
	// Keychain finds credentials (default: the docker and podman
	// credential files, as alpinist push uses them).
	Keychain authn.Keychain
}

// Open gives the cache in the repository ref (HOST[:PORT]/REPO).
func Open(ctx context.Context, ref string, o Options) (*Cache, error) {
	var nopts []name.Option
	if o.Insecure {
		r, err := name.NewRepository(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("regcache: %q is not a repository: %w", ref, err)
		}
		if host := r.RegistryStr(); !oci.Loopback(host) {
			return nil, fmt.Errorf("regcache: %s: --insecure is only for a registry on localhost, not %s", ref, host)
		}
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("regcache: %q is not a repository (HOST[:PORT]/REPO, no tag): %w", ref, err)
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return &Cache{repo: repo, opts: []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}}, nil
}

// String names the cache's repository.
func (c *Cache) String() string { return c.repo.String() }

// PackageTag is the tag of the package whose control checksum is sum.
func PackageTag(sum []byte) string { return "apk-" + hex.EncodeToString(sum) }

// RootfsTag is the tag of the build-cache rootfs of key.
func RootfsTag(key string) string { return "rootfs-" + key }

var keyRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Has tells whether the registry has the entry tagged tag.
func (c *Cache) Has(tag string) (bool, error) {
	_, err := remote.Head(c.repo.Tag(tag), c.opts...)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("regcache: %s:%s: %w", c.repo, tag, err)
	}
	return true, nil
}

// PutPackage pushes the package file at path, whose control checksum is
// sum, unless the registry has it. It says whether it pushed.
func (c *Cache) PutPackage(sum []byte, path string) (bool, error) {
	if len(sum) == 0 {
		return false, errors.New("regcache: a package without a checksum")
	}
	return c.put(PackageTag(sum), PackageType, hex.EncodeToString(sum), []blobSpec{{path: path, mediaType: APKMediaType}})
}

// PutRootfs pushes the build-cache entry of key: its rootfs tar, the
// build VM's log and its metadata (JSON), unless the registry has it. It
// says whether it pushed.
func (c *Cache) PutRootfs(key, tarPath, logPath, entryPath string) (bool, error) {
	if !keyRE.MatchString(key) {
		return false, fmt.Errorf("regcache: %q is not a build key", key)
	}
	return c.put(RootfsTag(key), RootfsType, key, []blobSpec{
		{path: tarPath, mediaType: RootfsTarType},
		{path: logPath, mediaType: RootfsLogType},
		{path: entryPath, mediaType: RootfsEntryType},
	})
}

type blobSpec struct {
	path      string
	mediaType types.MediaType
}

// put pushes an artifact of the files in blobs under tag, unless the tag
// is there.
func (c *Cache) put(tag, artifactType, key string, blobs []blobSpec) (bool, error) {
	if ok, err := c.Has(tag); err != nil || ok {
		return false, err
	}
	a := &artifact{blobs: map[v1.Hash]partial.CompressedLayer{}}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        oci.EmptyConfig(),
		Annotations:   map[string]string{KeyAnnotation: key},
	}
	for _, b := range blobs {
		fb, err := newFileBlob(b.path, b.mediaType)
		if err != nil {
			return false, fmt.Errorf("regcache: %w", err)
		}
		a.blobs[fb.hash] = fb
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: b.mediaType, Size: fb.size, Digest: fb.hash,
			Annotations: map[string]string{titleAnnotation: filepath.Base(b.path)}})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	a.raw = raw
	img, err := partial.CompressedToImage(a)
	if err != nil {
		return false, err
	}
	if err := remote.Write(c.repo.Tag(tag), img, c.opts...); err != nil {
		return false, fmt.Errorf("regcache: push %s:%s: %w", c.repo, tag, err)
	}
	return true, nil
}

// OpenPackage streams the package whose control checksum is sum from the
// registry (ErrMiss when it has none). The stream fails at its end when
// the blob is not the manifest's; the package itself is the caller's to
// verify.
func (c *Cache) OpenPackage(sum []byte) (io.ReadCloser, error) {
	layers, err := c.manifest(PackageTag(sum), PackageType, hex.EncodeToString(sum), APKMediaType)
	if err != nil {
		return nil, err
	}
	return c.blob(layers[0])
}

// GetRootfs pulls the build-cache entry of key into files made by
// create (tar, log and metadata, in that order, each given its media
// type): ErrMiss when the registry has none. Each blob's digest is
// checked as it streams; a file create gave is not whole when GetRootfs
// fails.
func (c *Cache) GetRootfs(key string, create func(mediaType string) (io.Writer, error)) error {
	if !keyRE.MatchString(key) {
		return fmt.Errorf("regcache: %q is not a build key", key)
	}
	layers, err := c.manifest(RootfsTag(key), RootfsType, key, RootfsTarType, RootfsLogType, RootfsEntryType)
	if err != nil {
		return err
	}
	for _, l := range layers {
		w, err := create(string(l.MediaType))
		if err != nil {
			return err
		}
		rc, err := c.blob(l)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("regcache: %s:%s: %s: %w", c.repo, RootfsTag(key), l.MediaType, err)
		}
	}
	return nil
}

// manifest reads the artifact tagged tag and checks that it is of
// artifactType, for key, with layers of the media types wanted.
func (c *Cache) manifest(tag, artifactType, key string, wantLayers ...types.MediaType) ([]v1.Descriptor, error) {
	desc, err := remote.Get(c.repo.Tag(tag), c.opts...)
	if isNotFound(err) {
		return nil, fmt.Errorf("%s:%s: %w", c.repo, tag, ErrMiss)
	}
	if err != nil {
		return nil, fmt.Errorf("regcache: %s:%s: %w", c.repo, tag, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("regcache: %s:%s: %w", c.repo, tag, err)
	}
	bad := func(what string, args ...any) error {
		return fmt.Errorf("regcache: %s:%s is not an alpinist cache entry: "+what, append([]any{c.repo, tag}, args...)...)
	}
	switch {
	case m.ArtifactType != artifactType:
		return nil, bad("artifact type %q, not %q", m.ArtifactType, artifactType)
	case m.Annotations[KeyAnnotation] != key:
		return nil, bad("its key is %q", m.Annotations[KeyAnnotation])
	case len(m.Layers) != len(wantLayers):
		return nil, bad("%d blobs, not %d", len(m.Layers), len(wantLayers))
	}
	for i, l := range m.Layers {
		if l.MediaType != wantLayers[i] {
			return nil, bad("blob %d is %q, not %q", i+1, l.MediaType, wantLayers[i])
		}
	}
	return m.Layers, nil
}

// blob streams a blob of the repository, checked against d's digest and
// size.
func (c *Cache) blob(d v1.Descriptor) (io.ReadCloser, error) {
	l, err := remote.Layer(c.repo.Digest(d.Digest.String()), c.opts...)
	if err != nil {
		return nil, fmt.Errorf("regcache: %s@%s: %w", c.repo, d.Digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("regcache: %s@%s: %w", c.repo, d.Digest, err)
	}
	return &sizedReader{rc: rc, left: d.Size, what: c.repo.String() + "@" + d.Digest.String()}, nil
}

// sizedReader fails a blob longer or shorter than its descriptor says.
type sizedReader struct {
	rc   io.ReadCloser
	left int64
	what string
}

func (s *sizedReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	s.left -= int64(n)
	if s.left < 0 {
		return n, fmt.Errorf("regcache: %s: longer than its descriptor says", s.what)
	}
	if err == io.EOF && s.left > 0 {
		return n, fmt.Errorf("regcache: %s: %d bytes short", s.what, s.left)
	}
	return n, err
}

func (s *sizedReader) Close() error { return s.rc.Close() }

// Tags lists the entries of the cache: packages and rootfs tags.
func (c *Cache) Tags() (packages, rootfs []string, err error) {
	tags, err := remote.List(c.repo, c.opts...)
	if isNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("regcache: %s: %w", c.repo, err)
	}
	for _, t := range tags {
		switch {
		case strings.HasPrefix(t, "apk-"):
			packages = append(packages, t)
		case strings.HasPrefix(t, "rootfs-"):
			rootfs = append(rootfs, t)
		}
	}
	return packages, rootfs, nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && (te.StatusCode == http.StatusNotFound)
}

// artifact is a manifest and its blobs, as go-containerregistry pushes
// an image.
type artifact struct {
	raw   []byte
	blobs map[v1.Hash]partial.CompressedLayer
}

func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.raw, nil }
func (a *artifact) RawConfigFile() ([]byte, error)      { return []byte("{}"), nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.blobs[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("regcache: no blob %s", h)
}

// fileBlob is a file pushed as a blob, opened again for each attempt.
type fileBlob struct {
	path      string
	mediaType types.MediaType
	hash      v1.Hash
	size      int64
}

func newFileBlob(path string, mt types.MediaType) (*fileBlob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, n, err := v1.SHA256(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &fileBlob{path: path, mediaType: mt, hash: h, size: n}, nil
}

func (b *fileBlob) Digest() (v1.Hash, error)            { return b.hash, nil }
func (b *fileBlob) Size() (int64, error)                { return b.size, nil }
func (b *fileBlob) MediaType() (types.MediaType, error) { return b.mediaType, nil }
func (b *fileBlob) Compressed() (io.ReadCloser, error)  { return os.Open(b.path) }

// PullPackage pulls the package whose control checksum is sum into the
// package cache, verified as a fetch verifies it: its signature by one
// of keys, its data hash and every file's checksum, and its control
// checksum against sum (the index's, when a build asks for it). ErrMiss
// when the registry has none.
func (c *Cache) PullPackage(sum []byte, cache *repo.Cache, keys *sign.Keyring) (string, error) {
	rc, err := c.OpenPackage(sum)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return cache.Put(sum, func(tmp *os.File) error {
		got, err := apkfile.Verify(io.TeeReader(rc, tmp), keys)
		if err != nil {
			return fmt.Errorf("regcache: %s:%s: %w", c.repo, PackageTag(sum), err)
		}
		if !bytes.Equal(got.Checksum, sum) {
			return fmt.Errorf("regcache: %s:%s holds %s, whose checksum is %s", c.repo, PackageTag(sum), got, hex.EncodeToString(got.Checksum))
		}
		return nil
	})
}

// TagChecksum is the control checksum a package tag (apk-HEX) names.
func TagChecksum(tag string) ([]byte, bool) {
	h, ok := strings.CutPrefix(tag, "apk-")
	if !ok || len(h) != 40 {
		return nil, false
	}
	b, err := hex.DecodeString(h)
	return b, err == nil
}

// TagKey is the build key a rootfs tag (rootfs-KEY) names.
func TagKey(tag string) (string, bool) {
	k, ok := strings.CutPrefix(tag, "rootfs-")
	return k, ok && keyRE.MatchString(k)
}

// A fleet's results: one small JSON document per built entry, tagged
// fleet-RUN-JOB-INDEX, that the fleet's assemble step waits for.
const (
	ResultType      = "application/vnd.alpinist.fleet.result.v1"
	ResultMediaType = "application/vnd.alpinist.fleet.result+json"
	// maxResult bounds a result document.
	maxResult = 64 << 10
)

// PutResult pushes a result document under tag (its key is the tag),
// replacing none that is there.
func (c *Cache) PutResult(tag string, data []byte) (bool, error) {
	if len(data) > maxResult {
		return false, fmt.Errorf("regcache: result %s: %d bytes, more than %d", tag, len(data), maxResult)
	}
	dir, err := os.MkdirTemp("", "alpinist-result-")
	if err != nil {
		return false, fmt.Errorf("regcache: %w", err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "result.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return false, fmt.Errorf("regcache: %w", err)
	}
	return c.put(tag, ResultType, tag, []blobSpec{{path: file, mediaType: ResultMediaType}})
}

// GetResult reads the result document tagged tag (ErrMiss when there
// is none).
func (c *Cache) GetResult(tag string) ([]byte, error) {
	layers, err := c.manifest(tag, ResultType, tag, ResultMediaType)
	if err != nil {
		return nil, err
	}
	if layers[0].Size > maxResult {
		return nil, fmt.Errorf("regcache: %s:%s: a result of %d bytes, more than %d", c.repo, tag, layers[0].Size, maxResult)
	}
	rc, err := c.blob(layers[0])
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("regcache: %s:%s: %w", c.repo, tag, err)
	}
	return data, nil
}
