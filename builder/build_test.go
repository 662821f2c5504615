package builder

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
)

// demoSpec is testdata/specs/demo.yaml, after checking that the
// generated test repository it uses is there.
func demoSpec(t *testing.T, name string) string {
	t.Helper()
	testrepo.Generated(t)
	return filepath.Join("..", "testdata", "specs", name)
}

// recorder is a Progress that remembers what it was told.
type recorder struct {
	mu       sync.Mutex
	started  []string
	phases   map[string][]string
	finished map[string]string
	waited   bool
}

func (r *recorder) Start(arches []string, _ int64) { r.started = arches }
func (r *recorder) Bytes(int64)                    {}
func (r *recorder) Phase(arch, p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases[arch] = append(r.phases[arch], p)
}
func (r *recorder) Finish(arch, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished[arch] = state
}
func (r *recorder) Wait() { r.waited = true }

// TestBuild builds the demo for x86_64 through the library, as cmd does
// without cobra: the outputs, the lock and the phases reported; then
// again, from the build cache.
func TestBuild(t *testing.T) {
	spec := demoSpec(t, "demo.yaml")
	vmtest.Binary(t, "x86_64")
	cache, out := t.TempDir(), t.TempDir()
	build := func() (*Report, *recorder) {
		sess, err := Open(spec, OpenOptions{Arches: []string{"x86_64"}, CacheDir: cache, NeedCache: true})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{phases: map[string][]string{}, finished: map[string]string{}}
		rep, err := Build(context.Background(), sess, Options{OutDir: out, Outputs: []string{"tar"}, Tool: "alpinist-test", Progress: rec})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rep.Close)
		return rep, rec
	}
	rep, rec := build()
	var got []string
	for _, r := range rep.Results {
		got = append(got, r.Output+" "+filepath.Base(r.Path))
		if filepath.Dir(r.Path) != out {
			t.Errorf("%s is not in the output directory", r.Path)
		}
	}
	if want := []string{"sbom demo-x86_64.spdx.json", "tar demo-x86_64.tar"}; !slices.Equal(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	if rep.Lock != filepath.Join(out, "demo.lock") {
		t.Errorf("lock %s", rep.Lock)
	}
	for _, name := range []string{"demo.lock", "demo-x86_64.log", "demo-x86_64.tar"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	if !slices.Equal(rec.started, []string{"x86_64"}) || rec.finished["x86_64"] != "built" || !rec.waited {
		t.Errorf("progress: started %v, finished %v, waited %v", rec.started, rec.finished, rec.waited)
	}
	phases := rec.phases["x86_64"]
	for _, p := range []string{"plan", "build cache", "kernel+initramfs", "boot", "fetch", "disks", "tar"} {
		if !slices.Contains(phases, p) {
			t.Errorf("phase %s not reported: %v", p, phases)
		}
	}
	if len(rep.Summaries) != 1 || !strings.HasPrefix(rep.Summaries[0], "x86_64: plan ") {
		t.Errorf("summaries %v", rep.Summaries)
	}

	// Nothing the VM is given changed: the build cache has the rootfs,
	// and nothing only a VM needs is done: no fetch, no kernel.
	rep2, rec2 := build()
	if !slices.Equal(rec2.phases["x86_64"], []string{"plan", "build cache"}) || !strings.Contains(rep2.Summaries[0], "build cache") {
		t.Errorf("the second build did more than take the cache's rootfs: %v, %v", rec2.phases["x86_64"], rep2.Summaries)
	}
}

// TestBuildChecksFirst: what a build can tell before any VM boots, it
// tells before: a disk output without a kernel or without a disk:
// section, an arch the spec does not build, a lock without the arch.
func TestBuildChecksFirst(t *testing.T) {
	spec := demoSpec(t, "demo.yaml")
	dir := t.TempDir()
	noKernel := filepath.Join(dir, "nokernel.yaml")
	abs, _ := filepath.Abs(filepath.Join("..", "testdata", "repo"))
	os.WriteFile(noKernel, []byte("name: nk\narch: [x86_64]\nrepositories: ["+abs+"/main]\nkeys: ["+abs+"/keys/]\npackages: [busybox]\ndisk: {}\n"), 0o644)
	sess, err := Open(noKernel, OpenOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{phases: map[string][]string{}, finished: map[string]string{}}
	out := filepath.Join(dir, "out")
	_, err = Build(context.Background(), sess, Options{OutDir: out, Outputs: []string{"qcow2"}, Progress: rec})
	if err == nil || !strings.Contains(err.Error(), "a disk image needs a kernel") {
		t.Errorf("qcow2 without a kernel: %v", err)
	}
	if rec.started != nil {
		t.Error("the build started VMs")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed build left its output directory")
	}
	// A bootable output of a spec without disk: (which adds the boot
	// loaders): refused before anything is resolved.
	noDisk := filepath.Join(dir, "nodisk.yaml")
	os.WriteFile(noDisk, []byte("name: nd\narch: [x86_64]\nrepositories: ["+abs+"/main]\nkeys: ["+abs+"/keys/]\npackages: [busybox, linux-virt]\n"), 0o644)
	if sess, err = Open(noDisk, OpenOptions{CacheDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), sess, Options{OutDir: out, Outputs: []string{"iso"}, Progress: rec})
	if err == nil || !strings.Contains(err.Error(), "output iso boots, and the spec has no disk: section") {
		t.Errorf("an ISO without disk:: %v", err)
	}
	// An OVA of the demo's aarch64: refused before anything is resolved.
	sess, err = Open(spec, OpenOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), sess, Options{OutDir: out, Outputs: []string{"ova"}, Progress: rec})
	if err == nil || !strings.Contains(err.Error(), "output ova is made for x86_64 and x86, not aarch64") {
		t.Errorf("an aarch64 OVA: %v", err)
	}
	if rec.started != nil {
		t.Error("the build started VMs")
	}
	if _, err := Open(spec, OpenOptions{Arches: []string{"riscv64"}}); err == nil || !strings.Contains(err.Error(), "--arch riscv64: the spec") {
		t.Errorf("an arch the spec does not build: %v", err)
	}
	lock := filepath.Join(dir, "x.lock")
	os.WriteFile(lock, []byte(`{"version":1,"name":"demo","arches":[]}`), 0o644)
	sess, err = Open(spec, OpenOptions{LockPath: lock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Resolve(context.Background(), "x86_64"); err == nil || !strings.Contains(err.Error(), "no entry for x86_64") {
		t.Errorf("a lock without the arch: %v", err)
	}
}
