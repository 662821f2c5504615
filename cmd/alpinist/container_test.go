package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/regserver"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/internal/treecmp"
)

// fileSums is the sha256 of every file under dir but the build logs, by
// relative path.
func fileSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums, err := treecmp.Sums(dir, func(rel string) bool { return strings.HasSuffix(rel, ".log") })
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// startRegistry starts Debian's docker-registry (the CNCF distribution
// registry) on a free port of 127.0.0.1 and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	addr, stop, err := regserver.Start(hosttool.Need(t, "docker-registry", "docker-registry"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

var pushedRE = regexp.MustCompile(`pushed: \S+@(sha256:[0-9a-f]{64})`)

// registryDigest is the digest of ref's manifest as skopeo reads it from
// the registry (tls-verify off: the test registry is plain HTTP).
func registryDigest(t *testing.T, skopeo, ref string) string {
	t.Helper()
	raw, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--raw", "docker://"+ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect docker://%s: %v", ref, err)
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestBuildContainerOutputs builds a spec with every container output,
// for x86_64 and aarch64 and then for x86_64 alone, twice, and checks
// the outputs with the tools that consume them: skopeo (OCI layout,
// docker-archive, registry), umoci, Debian's docker-registry, podman;
// and that building again gives the same bytes for every output.
func TestBuildContainerOutputs(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	vmtest.Binary(t, "aarch64")
	skopeo := hosttool.Need(t, "skopeo", "skopeo")
	umoci := hosttool.Need(t, "umoci", "umoci")
	registry := startRegistry(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	spec := filepath.Join(dir, "box.yaml")
	writeFile(t, spec, `name: box
arch: [x86_64, aarch64]
repositories: [`+repoDir+`/main]
keys: [`+repoDir+`/keys/]
packages: [busybox, alpine-baselayout]
oci:
  entrypoint: [/bin/busybox]
  cmd: [echo, hello from alpinist]
  env: {GREETING: hi}
  labels: {org.example.team: build}
  exposed_ports: [8080]
  tag: alpinist.test/box:1.0
wsl:
  user: {default: root}
  interop: {appendWindowsPath: false}
outputs: [tar, tar.gz, tar.zst, wsl, lxc, oci, docker-archive, ext4]
`, 0o644)
	cache := t.TempDir()
	multi := filepath.Join(dir, "multi")
	mustCLI(t, "build", spec, "-o", multi, "--cache", cache)
	one := filepath.Join(dir, "one")
	out := mustCLI(t, "build", spec, "-o", one, "--cache", cache, "--arch", "x86_64", "--push", registry+"/alpinist/box:x86", "--insecure")
	again := filepath.Join(dir, "again")
	mustCLI(t, "build", spec, "-o", again, "--cache", t.TempDir(), "--arch", "x86_64")

	// Building again gives the same bytes, for every output; the x86_64
	// outputs of the two-arch build are those of the x86_64 build.
	sums, sumsAgain, sumsMulti := fileSums(t, one), fileSums(t, again), fileSums(t, multi)
	for _, want := range []string{"box-x86_64.tar", "box-x86_64.tar.gz", "box-x86_64.tar.zst", "box-x86_64.wsl.tar.gz", "box-x86_64.lxc.tar.xz",
		"box-x86_64.docker.tar", "box-x86_64.ext4", "box-x86_64.spdx.json", "box.lock", "box.oci/index.json", "box.oci/oci-layout"} {
		if sums[want] == "" {
			t.Errorf("no output %s", want)
		}
	}
	if len(sums) != len(sumsAgain) {
		t.Errorf("%d files, then %d", len(sums), len(sumsAgain))
	}
	for p, sum := range sums {
		if sumsAgain[p] != sum {
			t.Errorf("%s differs between two builds", p)
		}
		if strings.HasPrefix(p, "box-x86_64.") && sumsMulti[p] != sum {
			t.Errorf("%s differs between the x86_64 build and the two-arch build", p)
		}
	}

	// skopeo reads the layout: the tagged image, and both arches of the
	// index.
	var info struct {
		Digest, Architecture, Os string
		Labels                   map[string]string
		Env                      []string
		Layers                   []string
	}
	inspect := func(args ...string) []byte {
		t.Helper()
		b, err := exec.Command(skopeo, append([]string{"inspect"}, args...)...).Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v", strings.Join(args, " "), err)
		}
		return b
	}
	json.Unmarshal(inspect("oci:"+filepath.Join(one, "box.oci")+":1.0"), &info)
	if info.Architecture != "amd64" || info.Os != "linux" || info.Labels["org.example.team"] != "build" || len(info.Layers) != 1 ||
		!strings.Contains(strings.Join(info.Env, " "), "GREETING=hi") {
		t.Errorf("skopeo inspect oci: %+v", info)
	}
	oneDigest := info.Digest
	raw := string(inspect("--raw", "oci:"+filepath.Join(multi, "box.oci")+":1.0"))
	if !strings.Contains(raw, `"platform":{"architecture":"amd64","os":"linux"}`) || !strings.Contains(raw, `"platform":{"architecture":"arm64","os":"linux","variant":"v8"}`) ||
		!strings.Contains(raw, oneDigest) {
		t.Errorf("the index does not list linux/amd64 (%s) and linux/arm64/v8:\n%s", oneDigest, raw)
	}
	info.Architecture = ""
	json.Unmarshal(inspect("--override-arch", "arm64", "oci:"+filepath.Join(multi, "box.oci")+":1.0"), &info)
	if info.Architecture != "arm64" {
		t.Errorf("the index's arm64 image: %+v", info)
	}
	info.Architecture = ""
	json.Unmarshal(inspect("docker-archive:"+filepath.Join(one, "box-x86_64.docker.tar")), &info)
	if info.Architecture != "amd64" || len(info.Layers) != 1 {
		t.Errorf("skopeo inspect docker-archive: %+v", info)
	}

	// umoci unpacks the layout, rootless, to the tree of the rootfs tar.
	bundle := filepath.Join(t.TempDir(), "bundle")
	if b, err := exec.Command(umoci, "unpack", "--rootless", "--image", filepath.Join(one, "box.oci")+":1.0", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, b)
	}
	tarFile, err := os.Open(filepath.Join(one, "box-x86_64.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer tarFile.Close()
	if d := treecmp.Compare(tarFile, filepath.Join(bundle, "rootfs")); d != "" {
		t.Errorf("umoci's tree differs from the rootfs tar:\n%s", d)
	}

	// The push of build --push, and one of alpinist push: the registry
	// has what was pushed, digest for digest.
	m := pushedRE.FindStringSubmatch(out)
	if m == nil || m[1] != oneDigest {
		t.Errorf("build --push printed %q, want the image %s", out, oneDigest)
	}
	if d := registryDigest(t, skopeo, registry+"/alpinist/box:x86"); d != oneDigest {
		t.Errorf("the registry has %s, want %s", d, oneDigest)
	}
	pushOut := mustCLI(t, "push", filepath.Join(multi, "box.oci"), registry+"/alpinist/box:1.0", "--insecure")
	m = pushedRE.FindStringSubmatch(pushOut)
	if m == nil {
		t.Fatalf("push printed %q", pushOut)
	}
	if d := registryDigest(t, skopeo, registry+"/alpinist/box:1.0"); d != m[1] {
		t.Errorf("the registry has the index %s, push said %s", d, m[1])
	}
	// assemble pulls the index back and makes the aarch64 rootfs again:
	// the same bytes as the build's.
	pulled := filepath.Join(dir, "pulled")
	mustCLI(t, "assemble", registry+"/alpinist/box:1.0", "--insecure", "--arch", "aarch64", "-o", pulled, "--output", "tar")
	if a, b := fileSums(t, multi)["box-aarch64.tar"], fileSums(t, pulled)["box-aarch64.tar"]; a == "" || a != b {
		t.Errorf("the rootfs assembled from the registry differs from the build's (%s, %s)", a, b)
	}
	if code, _, errs := cli(t, "push", filepath.Join(multi, "box.oci"), "registry.example.org/box:1", "--insecure"); code == 0 || !strings.Contains(errs, "only for a registry on localhost") {
		t.Errorf("--insecure to a remote registry: exit %d %s", code, errs)
	}

	// e2fsck finds the ext4 image clean.
	e2fsck := hosttool.Need(t, "e2fsck", "e2fsprogs")
	if b, err := exec.Command(e2fsck, "-fn", filepath.Join(one, "box-x86_64.ext4")).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn box-x86_64.ext4: %v\n%s", err, b)
	}

	// The WSL tarball has the spec's wsl.conf.
	_, data := tarIndex(t, filepath.Join(one, "box-x86_64.wsl.tar.gz"), "etc/wsl.conf", "bin/busybox")
	if !strings.Contains(string(data["etc/wsl.conf"]), "[user]\ndefault = root\n") {
		t.Errorf("wsl.conf: %q", data["etc/wsl.conf"])
	}
	// The SBOM lists the installed packages.
	sbom, _ := os.ReadFile(filepath.Join(one, "box-x86_64.spdx.json"))
	if !strings.Contains(string(sbom), `"name": "busybox"`) || !strings.Contains(string(sbom), `"spdxVersion": "SPDX-2.3"`) {
		t.Errorf("sbom:\n%s", sbom)
	}

	podmanLoad(t, filepath.Join(one, "box-x86_64.docker.tar"), "alpinist.test/box:1.0")
	podmanRun(t, filepath.Join(one, "box.oci"), "1.0")
}

// podmanStore is podman with a store of the test's own, run as it can
// run containers here: no default ulimits (they need CAP_SYS_RESOURCE,
// which sandboxes drop), cgroupfs, and runc when installed (crun refuses
// hybrid cgroup hierarchies).
type podmanStore struct {
	bin   string
	store []string
	conf  string
}

func newPodmanStore(t *testing.T, bin string) *podmanStore {
	t.Helper()
	root := t.TempDir()
	p := &podmanStore{bin: bin, conf: filepath.Join(root, "containers.conf"),
		store: []string{"--root", filepath.Join(root, "storage"), "--runroot", filepath.Join(root, "run"), "--storage-driver", "vfs", "--events-backend", "none"}}
	writeFile(t, p.conf, "[containers]\ndefault_ulimits = []\n", 0o644)
	return p
}

// load loads a docker-archive into the store.
func (p *podmanStore) load(t *testing.T, archive string) {
	t.Helper()
	if b, err := exec.Command(p.bin, append(p.store, "load", "-i", archive)...).CombinedOutput(); err != nil {
		t.Fatalf("podman load: %v\n%s", err, b)
	}
}

// inspect is podman image inspect --format format of image.
func (p *podmanStore) inspect(image, format string) (string, error) {
	b, err := exec.Command(p.bin, append(p.store, "image", "inspect", "--format", format, image)...).CombinedOutput()
	return strings.TrimSpace(string(b)), err
}

// run is podman run with args, stopped with ctx.
func (p *podmanStore) run(ctx context.Context, args ...string) *exec.Cmd {
	cmdArgs := append(slices.Clone(p.store), "--cgroup-manager", "cgroupfs")
	if _, err := exec.LookPath("runc"); err == nil {
		cmdArgs = append(cmdArgs, "--runtime", "runc")
	}
	cmd := exec.CommandContext(ctx, p.bin, append(append(cmdArgs, "run"), args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	return cmd
}

// podmanLoad has podman load the docker-archive (into a store of the
// test's own) and checks the tag and the image.
func podmanLoad(t *testing.T, archive, tag string) {
	p := newPodmanStore(t, hosttool.Need(t, "podman", "podman"))
	p.load(t, archive)
	if got, err := p.inspect(tag, "{{.Architecture}} {{.Config.Entrypoint}}"); err != nil || got != "amd64 [/bin/busybox]" {
		t.Errorf("podman image inspect %s: %v %s", tag, err, got)
	}
}

// podmanRun runs /bin/busybox echo in the image with podman, when podman
// can run containers here; when the host does not let it (no cgroups it
// can use, limits it may not set...), it says why and returns.
func podmanRun(t *testing.T, layoutDir, tag string) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Log("podman step skipped: podman is not installed (apt-get install podman runc)")
		return
	}
	// podman names the image after the layout's path, which must be
	// lowercase: run it from a link in a lowercase directory.
	root, err := os.MkdirTemp("", "alpinist-podman-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	link := filepath.Join(root, "layout")
	if err := os.Symlink(layoutDir, link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := newPodmanStore(t, podman).run(ctx, "--rm", "--network", "none", "--ulimit", "host", "oci:"+link+":"+tag, "/bin/busybox", "echo", "hello from podman").CombinedOutput()
	if err == nil {
		if !strings.Contains(string(b), "hello from podman") {
			t.Errorf("podman run: %s", b)
		}
		t.Log("podman ran /bin/busybox echo in the OCI image")
		return
	}
	// The image was read (podman stored it) but the host refuses to run
	// a container: that is the host's limit, not the image's fault.
	for _, host := range []string{"cgroup", "setrlimit", "OCI permission denied", "not compatible with", "newuidmap", "operation not permitted", "Operation not permitted"} {
		if strings.Contains(string(b), "Writing manifest to image destination") && strings.Contains(string(b), host) {
			t.Logf("podman step skipped: podman read the image but cannot run containers on this host (%q): %v\n%s", host, err, b)
			return
		}
	}
	t.Errorf("podman run: %v\n%s", err, b)
}
