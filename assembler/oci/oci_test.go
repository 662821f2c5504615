package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/internal/testkit/benchcmp"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/alpinist/alpinist/internal/treecmp"
	"github.com/alpinist/alpinist/spec"
)

var created = rootfstest.Created

func rootfsTar(t testing.TB) []byte { return rootfstest.Tar(t) }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestLayer(t *testing.T) {
	tarData := rootfsTar(t)
	dir := t.TempDir()
	l, err := WriteLayer(dir, bytes.NewReader(tarData))
	if err != nil {
		t.Fatal(err)
	}
	gz, err := os.ReadFile(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	d, _ := l.Digest()
	id, _ := l.DiffID()
	n, _ := l.Size()
	if d.Hex != sha(gz) || id.Hex != sha(tarData) || n != int64(len(gz)) || l.Path() != filepath.Join(dir, "sha256", d.Hex) {
		t.Errorf("digest %s diffid %s size %d path %s", d, id, n, l.Path())
	}
	rc, _ := l.Uncompressed()
	back, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(back, tarData) {
		t.Error("the layer does not uncompress to the tar")
	}
	if err := validate.Layer(l); err != nil {
		t.Error(err)
	}
	if out, err := exec.Command("gzip", "-t", l.Path()).CombinedOutput(); err != nil {
		t.Errorf("gzip -t: %v %s", err, out)
	}
	// Again, elsewhere: the same bytes; nothing but the blob is left.
	l2, err := WriteLayer(t.TempDir(), bytes.NewReader(tarData))
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := l2.Digest(); d2 != d {
		t.Errorf("digests differ: %s, %s", d, d2)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "sha256")); len(ents) != 1 {
		t.Errorf("left in the blob dir: %v", ents)
	}
	// A failing reader leaves nothing.
	dir3 := t.TempDir()
	if _, err := WriteLayer(dir3, io.MultiReader(bytes.NewReader(tarData[:1000]), errReader{})); err == nil {
		t.Error("a read error was not reported")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir3, "sha256")); len(ents) != 0 {
		t.Errorf("left after an error: %v", ents)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("disk on fire") }

var fullOCI = spec.OCI{
	Entrypoint:   []string{"/bin/busybox"},
	Cmd:          []string{"echo", "hi"},
	Env:          map[string]string{"LANG": "C.UTF-8", "A": "1"},
	WorkDir:      "/srv",
	User:         "app",
	Labels:       map[string]string{"org.example.team": "web"},
	Annotations:  map[string]string{"org.opencontainers.image.source": "https://example.org/web"},
	ExposedPorts: []string{"80/tcp", "53/udp"},
	Volumes:      []string{"/data"},
	StopSignal:   "SIGTERM",
}

func TestImage(t *testing.T) {
	l, err := WriteLayer(t.TempDir(), bytes.NewReader(rootfsTar(t)))
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(l, "aarch64", fullOCI, created)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	want := v1.Config{
		Entrypoint: fullOCI.Entrypoint, Cmd: fullOCI.Cmd, WorkingDir: "/srv", User: "app", StopSignal: "SIGTERM",
		Env:          []string{"PATH=" + DefaultPath, "A=1", "LANG=C.UTF-8"},
		Labels:       map[string]string{"org.example.team": "web"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Volumes:      map[string]struct{}{"/data": {}},
	}
	gotJSON, _ := json.Marshal(cf.Config)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("config\n got %s\nwant %s", gotJSON, wantJSON)
	}
	if cf.Architecture != "arm64" || cf.Variant != "v8" || cf.OS != "linux" || !cf.Created.Equal(created) ||
		len(cf.History) != 1 || !cf.History[0].Created.Equal(created) {
		t.Errorf("config file: %+v", cf)
	}
	m, _ := img.Manifest()
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" ||
		m.Annotations[Created] != "2023-11-14T22:13:20Z" || m.Annotations["org.opencontainers.image.source"] != "https://example.org/web" {
		t.Errorf("manifest: %+v", m)
	}
	// PATH from the spec replaces the default.
	img2, _ := Image(l, "x86_64", spec.OCI{Env: map[string]string{"PATH": "/bin"}}, created)
	cf2, _ := img2.ConfigFile()
	if !slices.Equal(cf2.Config.Env, []string{"PATH=/bin"}) || cf2.Architecture != "amd64" || cf2.Variant != "" {
		t.Errorf("env %v arch %s/%s", cf2.Config.Env, cf2.Architecture, cf2.Variant)
	}
	if _, err := Image(l, "m68k", spec.OCI{}, created); err == nil || !strings.Contains(err.Error(), "m68k") {
		t.Errorf("unknown arch: %v", err)
	}
}

func TestRefName(t *testing.T) {
	for in, want := range map[string]string{"web": "latest", "web:1.0": "1.0", "localhost:5000/web": "latest", "localhost:5000/a/web:v2": "v2"} {
		if got := RefName(in); got != want {
			t.Errorf("RefName(%q) = %q, want %q", in, got, want)
		}
	}
}

// layoutOf builds a layout of arches in a new directory.
func layoutOf(t *testing.T, o spec.OCI, arches ...string) (string, []v1.Image) {
	dir := t.TempDir()
	var es []Entry
	var imgs []v1.Image
	for _, arch := range arches {
		l, err := WriteLayer(filepath.Join(dir, "blobs"), bytes.NewReader(rootfsTar(t)))
		if err != nil {
			t.Fatal(err)
		}
		img, err := Image(l, arch, o, created)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
		es = append(es, Entry{Arch: arch, Image: img, SBOM: []byte(`{"spdxVersion":"SPDX-2.3","name":"` + arch + `"}`), SBOMName: "web-" + arch + ".spdx.json"})
	}
	if err := WriteLayout(dir, "1.0", Annotations(fullOCI, created), es); err != nil {
		t.Fatal(err)
	}
	return dir, imgs
}

func TestLayoutOneArch(t *testing.T) {
	// umoci makes the runtime config: the user must exist or be numeric.
	o := fullOCI
	o.User = "1000:1000"
	dir, imgs := layoutOf(t, o, "x86_64")
	ii, err := layout.Path(dir).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(ii); err != nil {
		t.Fatal(err)
	}
	top, refs, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := imgs[0].Digest()
	if top.Digest != d || top.Annotations["org.opencontainers.image.ref.name"] != "1.0" || top.Platform.Architecture != "amd64" || len(refs) != 1 {
		t.Errorf("index.json: top %+v, referrers %v", top, refs)
	}
	// The SBOM referrer: an OCI 1.1 artifact manifest whose subject is
	// the image.
	var m v1.Manifest
	raw, _ := layout.Path(dir).Bytes(refs[0].Digest)
	json.Unmarshal(raw, &m)
	sbom, _ := layout.Path(dir).Bytes(m.Layers[0].Digest)
	if m.ArtifactType != SBOMType || m.Subject == nil || m.Subject.Digest != d || m.Config.MediaType != "application/vnd.oci.empty.v1+json" ||
		m.Layers[0].MediaType != SBOMType || m.Layers[0].Annotations["org.opencontainers.image.title"] != "web-x86_64.spdx.json" ||
		!strings.Contains(string(sbom), "SPDX-2.3") || refs[0].ArtifactType != SBOMType {
		t.Errorf("SBOM referrer: %s", raw)
	}
	if cfg, _ := layout.Path(dir).Bytes(m.Config.Digest); string(cfg) != "{}" {
		t.Errorf("empty config blob: %q", cfg)
	}

	skopeo := hosttool.Need(t, "skopeo", "skopeo")
	out, err := exec.Command(skopeo, "inspect", "oci:"+dir+":1.0").Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var info struct {
		Digest, Architecture, Os string
		Layers                   []string
	}
	json.Unmarshal(out, &info)
	if info.Digest != d.String() || info.Architecture != "amd64" || info.Os != "linux" || len(info.Layers) != 1 {
		t.Errorf("skopeo inspect: %s", out)
	}

	// umoci unpacks it rootless to the tree of the tar.
	umoci := hosttool.Need(t, "umoci", "umoci")
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--rootless", "--image", dir+":1.0", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	if diff := treecmp.Compare(bytes.NewReader(rootfsTar(t)), filepath.Join(bundle, "rootfs")); diff != "" {
		t.Error(diff)
	}
}

func TestLayoutMultiArch(t *testing.T) {
	dir, imgs := layoutOf(t, fullOCI, "x86_64", "aarch64")
	ii, err := layout.Path(dir).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(ii); err != nil {
		t.Fatal(err)
	}
	top, refs, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !top.MediaType.IsIndex() || len(refs) != 2 || top.Annotations["org.opencontainers.image.ref.name"] != "1.0" {
		t.Fatalf("top %+v referrers %v", top, refs)
	}
	inner, _ := ii.ImageIndex(top.Digest)
	im, _ := inner.IndexManifest()
	var plats []string
	for i, d := range im.Manifests {
		plats = append(plats, d.Platform.String())
		if want, _ := imgs[i].Digest(); d.Digest != want {
			t.Errorf("%s: digest %s, want %s", d.Platform, d.Digest, want)
		}
	}
	if !slices.Equal(plats, []string{"linux/amd64", "linux/arm64/v8"}) || im.Annotations[Created] == "" {
		t.Errorf("index: platforms %v annotations %v", plats, im.Annotations)
	}
	skopeo := hosttool.Need(t, "skopeo", "skopeo")
	raw, err := exec.Command(skopeo, "inspect", "--raw", "oci:"+dir+":1.0").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"architecture":"arm64"`) || !strings.Contains(string(raw), `"architecture":"amd64"`) {
		t.Errorf("skopeo inspect --raw: %s", raw)
	}
	out, err := exec.Command(skopeo, "inspect", "--override-arch", "arm64", "oci:"+dir+":1.0").Output()
	if err != nil {
		t.Fatal(err)
	}
	// skopeo names the index's digest and the arm64 image's config.
	var info struct{ Digest, Architecture string }
	json.Unmarshal(out, &info)
	if info.Digest != top.Digest.String() || info.Architecture != "arm64" {
		t.Errorf("skopeo inspect --override-arch arm64: %s", out)
	}
}

func TestLayoutErrors(t *testing.T) {
	if err := WriteLayout(t.TempDir(), "latest", nil, nil); err == nil {
		t.Error("an empty layout was written")
	}
	if _, _, err := ReadLayout(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("no layout: %v", err)
	}
}

func TestDockerArchive(t *testing.T) {
	l, err := WriteLayer(t.TempDir(), bytes.NewReader(rootfsTar(t)))
	if err != nil {
		t.Fatal(err)
	}
	img, _ := Image(l, "x86_64", fullOCI, created)
	dir := t.TempDir()
	p := filepath.Join(dir, "web-x86_64.docker.tar")
	if err := WriteDockerArchive(context.Background(), p, "example.org/web:1.0", img); err != nil {
		t.Fatal(err)
	}
	p2 := filepath.Join(dir, "again.tar")
	WriteDockerArchive(context.Background(), p2, "example.org/web:1.0", img)
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(p2)
	if !bytes.Equal(a, b) {
		t.Error("two docker-archives of one image differ")
	}
	// manifest.json names the tag.
	tr := tar.NewReader(bytes.NewReader(a))
	var manifest string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "manifest.json" {
			m, _ := io.ReadAll(tr)
			manifest = string(m)
		}
	}
	if !strings.Contains(manifest, `"RepoTags":["example.org/web:1.0"]`) {
		t.Errorf("manifest.json: %s", manifest)
	}
	if err := WriteDockerArchive(context.Background(), filepath.Join(dir, "bad.tar"), "Bad Tag!", img); err == nil {
		t.Error("a bad tag was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.tar")); err == nil {
		t.Error("a bad tag left a file")
	}
	skopeo := hosttool.Need(t, "skopeo", "skopeo")
	out, err := exec.Command(skopeo, "inspect", "docker-archive:"+p).Output()
	if err != nil {
		t.Fatalf("skopeo inspect docker-archive: %v", err)
	}
	if !strings.Contains(string(out), `"Architecture": "amd64"`) {
		t.Errorf("skopeo inspect: %s", out)
	}
}

// BenchmarkVsGzip compresses a 32 MiB tar-like stream into a layer (the
// parallel gzip) and with gzip -6 on the same bytes, side by side.
func BenchmarkVsGzip(b *testing.B) {
	gz := hosttool.Need(b, "gzip", "gzip")
	data := rootfsTar(b)
	for len(data) < 32<<20 {
		data = append(data, data...)
	}
	dir := b.TempDir()
	in := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		b.Fatal(err)
	}
	benchcmp.SideBySide(b, "gzip-6", func() error {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		l, err := WriteLayer(dir, f)
		if err != nil {
			return err
		}
		return os.Remove(l.Path())
	}, func() error {
		out, err := os.Create(filepath.Join(dir, "gzip.gz"))
		if err != nil {
			return err
		}
		defer out.Close()
		cmd := exec.Command(gz, "-6", "-c", in)
		cmd.Stdout = out
		return cmd.Run()
	})
}

func TestArch(t *testing.T) {
	for _, name := range arch.Names() {
		p, _ := Platform(name)
		if got, ok := Arch(p); !ok || got != name {
			t.Errorf("Arch(Platform(%s)) = %s, %v", name, got, ok)
		}
	}
	for _, tc := range []struct {
		p    v1.Platform
		want string
	}{
		{v1.Platform{OS: "linux", Architecture: "arm64"}, "aarch64"}, {v1.Platform{OS: "linux", Architecture: "arm"}, "armv7"},
		{v1.Platform{Architecture: "amd64"}, "x86_64"}, {v1.Platform{OS: "windows", Architecture: "amd64"}, ""},
		{v1.Platform{OS: "linux", Architecture: "mips"}, ""},
	} {
		if got, _ := Arch(tc.p); got != tc.want {
			t.Errorf("Arch(%v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}
