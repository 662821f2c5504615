package regcache

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tampered maps a blob digest to the bytes testCache's registry serves
// for it instead of the blob.
var tampered sync.Map

// testCache is a cache in an in-memory registry on loopback (which
// serves the tampered blobs' replacements), and the registry's host.
func testCache(t *testing.T) (*Cache, string) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 && r.Method == http.MethodGet {
			if b, ok := tampered.Load(r.URL.Path[i+len("/blobs/"):]); ok {
				w.Write(b.([]byte))
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	c, err := Open(context.Background(), host+"/team/cache", Options{Insecure: true, Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	return c, host
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPackage pushes a package once (a second push of the same entry
// is skipped), reads it back, and misses one it does not have.
func TestPackage(t *testing.T) {
	c, _ := testCache(t)
	data := bytes.Repeat([]byte("a package "), 50000)
	sum := sha1.Sum([]byte("its control part"))
	p := writeFile(t, t.TempDir(), "busybox-1.36.1-r5.apk", data)
	if pushed, err := c.PutPackage(sum[:], p); !pushed || err != nil {
		t.Fatalf("PutPackage = %v, %v", pushed, err)
	}
	if pushed, err := c.PutPackage(sum[:], p); pushed || err != nil {
		t.Errorf("a second PutPackage = %v, %v; want skipped", pushed, err)
	}
	rc, err := c.OpenPackage(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes, %v", len(got), err)
	}
	other := sha1.Sum([]byte("another"))
	if _, err := c.OpenPackage(other[:]); !errors.Is(err, ErrMiss) {
		t.Errorf("a package not pushed: %v", err)
	}
	if ok, err := c.Has(PackageTag(other[:])); ok || err != nil {
		t.Errorf("Has(missing) = %v, %v", ok, err)
	}
	pkgs, roots, err := c.Tags()
	if err != nil || len(pkgs) != 1 || pkgs[0] != PackageTag(sum[:]) || len(roots) != 0 {
		t.Errorf("Tags = %v, %v, %v", pkgs, roots, err)
	}
}

const key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// rootfsFiles writes a rootfs entry's three files.
func rootfsFiles(t *testing.T) (dir, tarPath, logPath, entryPath string) {
	dir = t.TempDir()
	return dir, writeFile(t, dir, key+".tar", bytes.Repeat([]byte{1, 2, 3, 0}, 300000)),
		writeFile(t, dir, key+".log", []byte("the build VM's console\n")),
		writeFile(t, dir, key+".json", []byte(`{"key":"`+key+`","name":"web","arch":"x86_64"}`))
}

// pull gets the rootfs entry of key into buffers by media type.
func pull(c *Cache, k string) (map[string]*bytes.Buffer, error) {
	got := map[string]*bytes.Buffer{}
	err := c.GetRootfs(k, func(mt string) (io.Writer, error) {
		got[mt] = new(bytes.Buffer)
		return got[mt], nil
	})
	return got, err
}

// TestRootfs pushes a build-cache entry and pulls each of its files
// back; several builders pushing it at once leave one entry; an entry
// not pushed is a miss.
func TestRootfs(t *testing.T) {
	c, _ := testCache(t)
	_, tarPath, logPath, entryPath := rootfsFiles(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.PutRootfs(key, tarPath, logPath, entryPath)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := pull(c, key)
	if err != nil {
		t.Fatal(err)
	}
	for mt, p := range map[string]string{RootfsTarType: tarPath, RootfsLogType: logPath, RootfsEntryType: entryPath} {
		want, _ := os.ReadFile(p)
		if got[mt] == nil || !bytes.Equal(got[mt].Bytes(), want) {
			t.Errorf("%s: not the file pushed", mt)
		}
	}
	if _, err := pull(c, strings.Repeat("f", 64)); !errors.Is(err, ErrMiss) {
		t.Errorf("an entry not pushed: %v", err)
	}
	if _, err := c.PutRootfs("../etc", tarPath, logPath, entryPath); err == nil {
		t.Error("a key that is no build key was pushed")
	}
	_, roots, _ := c.Tags()
	if len(roots) != 1 || roots[0] != RootfsTag(key) {
		t.Errorf("rootfs tags %v", roots)
	}
}

// TestManifestsAreDeterministic: the same entry gives the same manifest
// in two registries (no time stamps), so builders racing on a tag push
// the same bytes.
func TestManifestsAreDeterministic(t *testing.T) {
	_, tarPath, logPath, entryPath := rootfsFiles(t)
	var digests []string
	for range 2 {
		c, _ := testCache(t)
		if _, err := c.PutRootfs(key, tarPath, logPath, entryPath); err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(c.repo.Tag(RootfsTag(key)), c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.Digest.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("two pushes of one entry: %v", digests)
	}
}

// rawManifest is a manifest pushed as it is.
type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// TestRejectsForeignEntries: what is under an entry's tag is checked
// before any blob is read: its artifact type, its key and its blobs'
// types and number; a blob that is not what its descriptor says fails
// as it streams.
func TestRejectsForeignEntries(t *testing.T) {
	c, _ := testCache(t)
	_, tarPath, logPath, entryPath := rootfsFiles(t)
	if _, err := c.PutRootfs(key, tarPath, logPath, entryPath); err != nil {
		t.Fatal(err)
	}
	good, err := remote.Get(c.repo.Tag(RootfsTag(key)), c.opts...)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	json.Unmarshal(good.Manifest, &m)
	blob := static.NewLayer([]byte("not the tar"), RootfsTarType)
	if err := remote.WriteLayer(c.repo, blob, c.opts...); err != nil {
		t.Fatal(err)
	}
	bd, _ := blob.Digest()
	for _, tc := range []struct {
		name string
		edit func(m *v1.Manifest)
		want string
	}{
		{"artifact type", func(m *v1.Manifest) { m.ArtifactType = "application/vnd.example.other" }, `artifact type "application/vnd.example.other"`},
		{"key", func(m *v1.Manifest) { m.Annotations[KeyAnnotation] = strings.Repeat("e", 64) }, "its key is"},
		{"blob count", func(m *v1.Manifest) { m.Layers = m.Layers[:2] }, "2 blobs, not 3"},
		{"blob type", func(m *v1.Manifest) { m.Layers[1].MediaType = "text/html" }, `blob 2 is "text/html"`},
		{"blob size", func(m *v1.Manifest) { m.Layers[0].Digest, m.Layers[0].Size = bd, 3 }, "longer than its descriptor says"},
		{"blob digest", func(m *v1.Manifest) { m.Layers[0].Digest = m.Layers[2].Digest }, "bytes short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mm v1.Manifest
			json.Unmarshal(good.Manifest, &mm)
			mm.Annotations = map[string]string{KeyAnnotation: key}
			mm.Layers = append([]v1.Descriptor(nil), m.Layers...)
			tc.edit(&mm)
			raw, _ := json.Marshal(mm)
			if err := remote.Put(c.repo.Tag(RootfsTag(key)), rawManifest(raw), c.opts...); err != nil {
				t.Fatal(err)
			}
			if _, err := pull(c, key); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("pull: %v; want %q", err, tc.want)
			}
		})
	}
	// A registry that serves other bytes for a blob, of the right size.
	t.Run("blob content", func(t *testing.T) {
		if err := remote.Put(c.repo.Tag(RootfsTag(key)), rawManifest(good.Manifest), c.opts...); err != nil {
			t.Fatal(err)
		}
		log := m.Layers[1]
		tampered.Store(log.Digest.String(), bytes.Repeat([]byte("x"), int(log.Size)))
		defer tampered.Delete(log.Digest.String())
		if _, err := pull(c, key); err == nil || !strings.Contains(err.Error(), "verifying sha256 checksum") {
			t.Errorf("pull of a tampered blob: %v", err)
		}
	})
}

// TestOpenRefusesInsecureRemote: plain HTTP only for a registry on this
// machine, and a reference with a tag is no cache repository.
func TestOpenRefusesInsecureRemote(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "registry.example.org/cache", Options{Insecure: true}); err == nil || !strings.Contains(err.Error(), "only for a registry on localhost") {
		t.Errorf("insecure remote: %v", err)
	}
	if _, err := Open(ctx, "localhost:5000/cache:latest", Options{Insecure: true}); err == nil {
		t.Error("a tagged reference was taken as a repository")
	}
	c, err := Open(ctx, "127.0.0.1:5000/team/cache", Options{Insecure: true})
	if err != nil || c.repo.Scheme() != "http" || c.String() != "127.0.0.1:5000/team/cache" {
		t.Errorf("Open = %v, %v", c, err)
	}
	if _, err := name.NewRepository("registry.example.org/cache"); err != nil {
		t.Fatal(err)
	}
}

var _ http.Handler = registry.New()
