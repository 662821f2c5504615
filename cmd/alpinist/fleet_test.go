package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/alpinist/alpinist/assembler/oci"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
)

// TestFleetLocal is the fleet's end-to-end test: two specs × two arches
// run as worker processes, each with an empty cache of its own, against
// Debian's docker-registry on loopback. The first run builds all four
// in VMs and pushes each spec's multi-arch index; the second run takes
// every rootfs from the registry cache (no VM, no package download) and
// pushes the same indexes. fleet plan refuses the matrix, whose
// repository is a local directory that pods do not have.
func TestFleetLocal(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	vmtest.Binary(t, "aarch64")
	host := startRegistry(t)
	_, repoDir := smallSpec(t)
	dir := t.TempDir()
	for name, pkgs := range map[string]string{"fleet-a": "busybox, alpine-baselayout", "fleet-b": "busybox, alpine-baselayout, alpinist-test-scripts"} {
		writeFile(t, filepath.Join(dir, name+".yaml"), "name: "+name+"\narch: [x86_64]\nrepositories: ["+repoDir+"/main]\nkeys: ["+repoDir+"/keys/]\npackages: ["+pkgs+"]\n", 0o644)
	}
	matrix := filepath.Join(dir, "fleet.yaml")
	writeFile(t, matrix, "specs: [fleet-a.yaml, fleet-b.yaml]\narch: [x86_64, aarch64]\n", 0o644)

	first := mustCLI(t, "fleet", "run", "--local", matrix, "--registry", host, "--insecure")
	if !strings.Contains(first, "fleet: 4 builds: 4 built in a VM, 0 from the build cache") {
		t.Errorf("the first run:\n%s", first)
	}
	rows := fleetRows(t, first)
	if len(rows) != 4 || rows[0] != "fleet-a x86_64 built" || rows[1] != "fleet-a aarch64 built" || rows[3] != "fleet-b aarch64 built" {
		t.Errorf("first run's rows: %q", rows)
	}
	digests := pushedDigests(t, first)
	if len(digests) != 2 {
		t.Fatalf("pushed %v:\n%s", digests, first)
	}
	for ref, d := range digests {
		checkIndex(t, ref, d)
	}

	// The fleet's index is the one alpinist build writes for both arches.
	both := filepath.Join(t.TempDir(), "fleet-a.yaml")
	writeFile(t, both, strings.Replace(readText(t, filepath.Join(dir, "fleet-a.yaml")), "arch: [x86_64]", "arch: [x86_64, aarch64]", 1), 0o644)
	local := filepath.Join(dir, "local")
	mustCLI(t, "build", both, "-o", local, "--output", "oci", "--cache", filepath.Join(dir, "local-cache"))
	top, _, err := oci.ReadLayout(filepath.Join(local, "fleet-a.oci"))
	if err != nil || top.Digest.String() != digests[host+"/fleet-a:latest"] {
		t.Errorf("alpinist build's two-arch index is %s (%v), the fleet's %s", top.Digest, err, digests[host+"/fleet-a:latest"])
	}

	second := mustCLI(t, "fleet", "run", "--local", matrix, "--registry", host, "--insecure")
	if !strings.Contains(second, "fleet: 4 builds: 0 built in a VM, 4 from the build cache; packages: 0 downloaded, 0 from the shared cache") {
		t.Errorf("the second run was not entirely from the cache:\n%s", second)
	}
	for ref, d := range pushedDigests(t, second) {
		if digests[ref] != d {
			t.Errorf("%s: the second run pushed %s, the first %s", ref, d, digests[ref])
		}
	}

	if code, _, errs := cli(t, "fleet", "plan", matrix, "-o", filepath.Join(dir, "k8s"), "--registry", "registry.example.org/team"); code == 0 || !strings.Contains(errs, "is a local directory, which a pod does not have") {
		t.Errorf("fleet plan of a local repository: exit %d\n%s", code, errs)
	}
	if code, _, errs := cli(t, "fleet", "run", matrix, "--registry", host); code == 0 || !strings.Contains(errs, "with --local") {
		t.Errorf("fleet run without --local: exit %d\n%s", code, errs)
	}
	// assemble of a plan whose builds never ran names them.
	plan := filepath.Join(dir, "plan.json")
	writeFile(t, plan, `{"version":1,"run":"never","matrix":"fleet.yaml","registry":"`+host+`","cache":"`+host+`/alpinist-cache","tag":"latest","insecure":true,"arch":["x86_64"],"jobs":[{"name":"amd64","nodeArch":"amd64","kvm":true,"entries":[{"spec":"fleet-a.yaml","name":"fleet-a","arch":"x86_64"}]}]}`, 0o644)
	if code, _, errs := cli(t, "fleet", "assemble", plan); code == 0 || !strings.Contains(errs, "1 of 1 builds have no result") || !strings.Contains(errs, "fleet-a/x86_64 (job amd64, index 0)") {
		t.Errorf("assemble without results: exit %d\n%s", code, errs)
	}
}

func readText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var fleetPushedRE = regexp.MustCompile(`(?m)^pushed: (\S+)@(sha256:[0-9a-f]{64}) \(`)

// pushedDigests reads a fleet run's "pushed: REF@DIGEST (arches)" lines.
func pushedDigests(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, g := range fleetPushedRE.FindAllStringSubmatch(out, -1) {
		m[g[1]] = g[2]
	}
	return m
}

// fleetRows reads a fleet run's table: "SPEC ARCH ROOTFS" per build.
func fleetRows(t *testing.T, out string) []string {
	t.Helper()
	var rows []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "SPEC":
			in = true
		case in && len(f) >= 6:
			rootfs := f[2]
			if rootfs == "from" {
				rootfs = "cached"
			}
			rows = append(rows, f[0]+" "+f[1]+" "+rootfs)
		default:
			in = false
		}
	}
	return rows
}

// checkIndex checks a pushed multi-arch index: two platforms, each
// image pullable, and skopeo reads it.
func checkIndex(t *testing.T, ref, digest string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r, remote.WithContext(context.Background()))
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	if d, _ := idx.Digest(); d.String() != digest {
		t.Errorf("%s is %s, the run said %s", ref, d, digest)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, d := range m.Manifests {
		plats = append(plats, d.Platform.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Errorf("%s %s: %d layers, %v", ref, d.Platform, len(layers), err)
		}
	}
	if strings.Join(plats, " ") != "linux/amd64 linux/arm64/v8" {
		t.Errorf("%s: platforms %v", ref, plats)
	}
	var out bytes.Buffer
	c := exec.Command(hosttool.Need(t, "skopeo", "skopeo"), "inspect", "--tls-verify=false", "--override-arch", "arm64", "docker://"+ref)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil || !strings.Contains(out.String(), `"Architecture": "arm64"`) {
		t.Errorf("skopeo inspect %s: %v\n%s", ref, err, out.String())
	}
}

// TestFleetPlanCLI: fleet plan writes plan.json, jobs/ and argo/ and
// says how to apply them; bad input is refused naming it.
func TestFleetPlanCLI(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys", "a.rsa.pub"), "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n", 0o644)
	writeFile(t, filepath.Join(dir, "web.yaml"), "name: web\narch: [x86_64]\nrepositories: [https://dl-cdn.alpinelinux.org/alpine/v3.19/main]\nkeys: [keys/]\npackages: [nginx]\n", 0o644)
	matrix := filepath.Join(dir, "fleet.yaml")
	writeFile(t, matrix, "specs: [web.yaml]\narch: [x86_64, aarch64, riscv64]\n", 0o644)
	out := filepath.Join(dir, "k8s")
	got := mustCLI(t, "fleet", "plan", matrix, "-o", out, "--registry", "registry.example.org/team", "--node-arch", "amd64,arm64", "--argo", "--run", "ci-42")
	for _, want := range []string{
		"run ci-42: 3 builds (1 specs × 3 arches), 3 files",
		"job build-amd64: 1 builds of x86_64 on amd64 nodes, KVM (devices.kubevirt.io/kvm)",
		"job build-arm64: 1 builds of aarch64 on arm64 nodes, KVM",
		"job build-tcg: 1 builds of riscv64 on amd64 nodes, TCG",
		"apply: kubectl apply -f " + filepath.Join(out, "jobs"),
		"kubectl create -f " + filepath.Join(out, "argo"),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	for _, f := range []string{"plan.json", "jobs/00-configmap.yaml", "jobs/10-build-amd64.yaml", "jobs/11-build-arm64.yaml", "jobs/12-build-tcg.yaml", "jobs/90-assemble.yaml", "argo/10-workflow.yaml"} {
		raw, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		data := string(raw)
		if f != "plan.json" && !strings.Contains(data, "alpinist-ci-42-") {
			t.Errorf("%s does not name the run", f)
		}
		if strings.HasPrefix(f, "jobs/1") && !strings.Contains(data, "image: registry.example.org/team/alpinist:"+versionString()) {
			t.Errorf("%s: not the default image:\n%s", f, data)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fleet", "plan", matrix, "--registry", "r.example.org"}, "-o DIR is required"},
		{[]string{"fleet", "plan", matrix, "-o", out}, "no registry"},
		{[]string{"fleet", "plan", matrix, "-o", out, "--registry", "r.example.org", "--run", "UPPER"}, `run name "UPPER"`},
		{[]string{"fleet", "plan", filepath.Join(dir, "web.yaml"), "-o", out, "--registry", "r.example.org"}, `unknown field "name"`},
		{[]string{"fleet", "worker", filepath.Join(out, "plan.json")}, "--job is required"},
		{[]string{"fleet", "worker", filepath.Join(out, "plan.json"), "--job", "amd64"}, "no --index, and $JOB_COMPLETION_INDEX"},
		{[]string{"fleet", "worker", filepath.Join(out, "plan.json"), "--job", "s390x", "--index", "0"}, `no job "s390x"`},
		{[]string{"fleet", "assemble", matrix}, "not a plan"},
	} {
		if code, _, errs := cli(t, c.args...); code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %q:\n%s", c.args, code, c.want, errs)
		}
	}
}

// TestFleetRealAlpine runs a fleet of Alpine's real v3.19 server set
// (its packages signed by Alpine, its install scripts and triggers) for
// x86_64 against the registry: the first run builds in a VM and pushes
// the real packages to the cache; the second takes the rootfs from it;
// a build with --cache-from and --no-cache then boots its VM with every
// real package from the registry, each verified against Alpine's keys as
// a download is, and none downloaded.
func TestFleetRealAlpine(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	host := startRegistry(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "server.yaml")
	writeFile(t, spec, "name: server\narch: [x86_64]\n"+realRepos(t)+"packages: [alpine-base, openssh, chrony]\n", 0o644)
	matrix := filepath.Join(dir, "fleet.yaml")
	writeFile(t, matrix, "specs: [server.yaml]\narch: [x86_64]\n", 0o644)

	first := mustCLI(t, "fleet", "run", "--local", matrix, "--registry", host, "--insecure")
	if !strings.Contains(first, "fleet: 1 builds: 1 built in a VM, 0 from the build cache") || !strings.Contains(first, "pushed: "+host+"/server:latest@") {
		t.Fatalf("the first run:\n%s", first)
	}
	second := mustCLI(t, "fleet", "run", "--local", matrix, "--registry", host, "--insecure")
	if !strings.Contains(second, "fleet: 1 builds: 0 built in a VM, 1 from the build cache; packages: 0 downloaded, 0 from the shared cache") {
		t.Errorf("the second run:\n%s", second)
	}
	if a, b := pushedDigests(t, first), pushedDigests(t, second); a[host+"/server:latest"] != b[host+"/server:latest"] {
		t.Errorf("the runs pushed %v and %v", a, b)
	}
	forced := mustCLI(t, "build", spec, "-o", filepath.Join(dir, "forced"), "--output", "tar", "--cache", filepath.Join(dir, "empty-cache"),
		"--cache-from", host+"/alpinist-cache", "--insecure", "--no-cache")
	if d, s := packagesLine(t, forced); d != "0" || s == "0" || !strings.Contains(forced, " boot ") {
		t.Errorf("a forced build from the shared cache: %s downloaded, %s shared:\n%s", d, s, forced)
	}
}

// TestFleetLocalFailure: a build that fails fails the run, naming it,
// with the worker's own words; nothing is assembled.
func TestFleetLocalFailure(t *testing.T) {
	host := startRegistry(t)
	_, repoDir := smallSpec(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "broken.yaml"), "name: broken\narch: [x86_64]\nrepositories: ["+repoDir+"/main]\nkeys: ["+repoDir+"/keys/]\npackages: [no-such-package]\n", 0o644)
	matrix := filepath.Join(dir, "fleet.yaml")
	writeFile(t, matrix, "specs: [broken.yaml]\narch: [x86_64]\n", 0o644)
	code, out, errs := cli(t, "fleet", "run", "--local", matrix, "--registry", host, "--insecure")
	if code == 0 || !strings.Contains(errs, "1 of 1 builds failed") || !strings.Contains(errs, "broken/x86_64: ") || !strings.Contains(errs, "no-such-package") || strings.Contains(out, "pushed:") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}
