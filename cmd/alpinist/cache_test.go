package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/alpinist/alpinist/internal/vmtest"
)

// smallSpec is the spec of a small x86_64 system (busybox and
// alpine-baselayout) from the test repository, and the repository's
// absolute path.
func smallSpec(t *testing.T) (body, repoDir string) {
	t.Helper()
	repoDir, _ = filepath.Abs(filepath.Join(generatedRepo(t), "repo"))
	return `name: small
arch: [x86_64]
repositories: [` + repoDir + `/main]
keys: [` + repoDir + `/keys/]
packages: [busybox, alpine-baselayout]
`, repoDir
}

// TestBuildCache: an unchanged rebuild takes the rootfs from the build
// cache without a VM and writes the same outputs; a changed spec or
// --no-cache boots the VM; two builds of one system at once run one VM
// (the second waits for the first's lock); cache ls and prune.
func TestBuildCache(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	body, _ := smallSpec(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "small.yaml")
	writeFile(t, spec, body, 0o644)
	cache := t.TempDir()
	build := func(out string, extra ...string) string {
		t.Helper()
		return mustCLI(t, append([]string{"build", spec, "-o", out, "--cache", cache, "--output", "tar,ext4"}, extra...)...)
	}
	booted := func(summary string) bool { return strings.Contains(summary, " boot ") }
	cached := func(summary string) bool { return strings.Contains(summary, "build cache") }

	first := build(filepath.Join(dir, "1"))
	if !booted(first) || cached(first) {
		t.Errorf("the first build did not boot the VM:\n%s", first)
	}
	ls := mustCLI(t, "cache", "ls", "--cache", cache)
	if !strings.Contains(ls, "build cache: 1 rootfs") || !strings.Contains(ls, "small") || !strings.Contains(ls, "x86_64") {
		t.Errorf("cache ls:\n%s", ls)
	}
	second := build(filepath.Join(dir, "2"))
	if booted(second) || !cached(second) {
		t.Errorf("the unchanged rebuild booted the VM:\n%s", second)
	}
	a, b := fileSums(t, filepath.Join(dir, "1")), fileSums(t, filepath.Join(dir, "2"))
	for _, f := range []string{"small-x86_64.tar", "small-x86_64.ext4", "small-x86_64.spdx.json", "small.lock"} {
		if a[f] == "" || a[f] != b[f] {
			t.Errorf("%s differs between the build and the cached rebuild", f)
		}
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "2", "small-x86_64.log")); !strings.Contains(string(log), "the rootfs comes from the build cache") || !strings.Contains(string(log), "alpinist") {
		t.Errorf("the cached build's log does not say so:\n%.300s", log)
	}
	if s := build(filepath.Join(dir, "3"), "--no-cache"); !booted(s) {
		t.Errorf("--no-cache did not boot the VM:\n%s", s)
	}
	writeFile(t, spec, body+"run: [\"echo changed > /etc/changed\"]\n", 0o644)
	if s := build(filepath.Join(dir, "4")); !booted(s) {
		t.Errorf("a changed spec did not boot the VM:\n%s", s)
	}

	// Two builds at once: one VM.
	mustCLI(t, "cache", "prune", "--all", "--cache", cache)
	if ls := mustCLI(t, "cache", "ls", "--cache", cache); !strings.Contains(ls, "build cache: empty") || !strings.Contains(ls, "packages: 0") {
		t.Errorf("after prune --all:\n%s", ls)
	}
	var wg sync.WaitGroup
	sums := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, errs := cli(t, "build", spec, "-o", filepath.Join(dir, "c", string(rune('a'+i))), "--cache", cache, "--output", "tar")
			if code != 0 {
				t.Errorf("concurrent build %d: %s", i, errs)
			}
			sums[i] = out
		}()
	}
	wg.Wait()
	if booted(sums[0]) == booted(sums[1]) || cached(sums[0]) == cached(sums[1]) {
		t.Errorf("two builds at once did not share one VM:\n%s\n---\n%s", sums[0], sums[1])
	}
	ca, cb := fileSums(t, filepath.Join(dir, "c", "a")), fileSums(t, filepath.Join(dir, "c", "b"))
	if ca["small-x86_64.tar"] == "" || ca["small-x86_64.tar"] != cb["small-x86_64.tar"] {
		t.Error("the two concurrent builds' tars differ")
	}
	if out := mustCLI(t, "cache", "prune", "--cache", cache); !strings.Contains(out, "removed 0 of 1 rootfs") {
		t.Errorf("prune removed a rootfs used just now:\n%s", out)
	}
}
