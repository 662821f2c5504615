package main

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/regcache"
)

var sharedRE = regexp.MustCompile(`packages: (\d+) downloaded, (\d+) from`)

// packagesLine is the build's "packages: N downloaded, M from ..." line.
func packagesLine(t *testing.T, out string) (downloaded, shared string) {
	t.Helper()
	m := sharedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no packages line:\n%s", out)
	}
	return m[1], m[2]
}

// TestBuildSharedCache: builders on "other machines" (other cache
// directories) share their work through a registry (Debian's
// docker-registry on loopback). The first pushes its packages and
// rootfs with --cache-to; a second with an empty cache and --cache-from
// takes the rootfs and boots no VM, fetching no package; a third,
// forced to boot its VM, takes every package from the registry and
// downloads none, and builds the same bytes.
func TestBuildSharedCache(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	host := startRegistry(t)
	ref := host + "/alpinist/cache"
	body, repoDir := smallSpec(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "small.yaml")
	writeFile(t, spec, body, 0o644)
	build := func(out, cache string, extra ...string) string {
		t.Helper()
		return mustCLI(t, append([]string{"build", spec, "-o", filepath.Join(dir, out), "--cache", filepath.Join(dir, cache), "--output", "tar"}, extra...)...)
	}

	first := build("first", "cache-a", "--cache-to", ref, "--insecure")
	if d, s := packagesLine(t, first); d == "0" || s != "0" {
		t.Errorf("the first build: %s downloaded, %s shared", d, s)
	}
	c, err := regcache.Open(context.Background(), ref, regcache.Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	pkgs, roots, err := c.Tags()
	if d, _ := packagesLine(t, first); err != nil || len(roots) != 1 || itoa(len(pkgs)) != d {
		t.Errorf("the registry holds %d packages and %v (%v); the build downloaded %s", len(pkgs), roots, err, d)
	}

	second := build("second", "cache-b", "--cache-from", ref, "--insecure")
	if d, s := packagesLine(t, second); d != "0" || s != "0" || strings.Contains(second, " boot ") || !strings.Contains(second, "cache pull") {
		t.Errorf("the second build (a hit in the shared cache): %s downloaded, %s shared:\n%s", d, s, second)
	}
	third := build("third", "cache-c", "--cache-from", ref, "--insecure", "--no-cache")
	if d, s := packagesLine(t, third); d != "0" || s == "0" || !strings.Contains(third, " boot ") {
		t.Errorf("the third build (its VM forced): %s downloaded, %s shared:\n%s", d, s, third)
	}
	a, b, cc := fileSums(t, filepath.Join(dir, "first")), fileSums(t, filepath.Join(dir, "second")), fileSums(t, filepath.Join(dir, "third"))
	if a["small-x86_64.tar"] == "" || a["small-x86_64.tar"] != b["small-x86_64.tar"] || a["small-x86_64.tar"] != cc["small-x86_64.tar"] {
		t.Errorf("the three builds' rootfs differ: %s %s %s", a["small-x86_64.tar"], b["small-x86_64.tar"], cc["small-x86_64.tar"])
	}
	// A second push of the same build pushes nothing new.
	again := build("again", "cache-a", "--cache-to", ref, "--insecure")
	if !strings.Contains(again, "build cache") {
		t.Errorf("the rebuild did not hit its own cache:\n%s", again)
	}
	if p2, r2, _ := c.Tags(); len(p2) != len(pkgs) || len(r2) != 1 {
		t.Errorf("after a second push: %d packages, %v", len(p2), r2)
	}

	// cache pull fills an empty cache (packages verified against --keys),
	// and a build with it alone hits its build cache; cache push copies a
	// cache to another repository.
	pull := mustCLI(t, "cache", "pull", ref, "--insecure", "--keys", filepath.Join(repoDir, "keys"), "--cache", filepath.Join(dir, "cache-d"))
	if !strings.Contains(pull, "packages: "+itoa(len(pkgs))+" pulled, 0 here already") || !strings.Contains(pull, "rootfs: 1 pulled") {
		t.Errorf("cache pull:\n%s", pull)
	}
	if fourth := build("fourth", "cache-d"); !strings.Contains(fourth, "build cache") || strings.Contains(fourth, " boot ") {
		t.Errorf("a build from a pulled cache booted its VM:\n%s", fourth)
	}
	if code, _, errs := cli(t, "cache", "pull", ref, "--insecure", "--cache", filepath.Join(dir, "cache-e")); code == 0 || !strings.Contains(errs, "--keys is required") {
		t.Errorf("cache pull without keys: exit %d\n%s", code, errs)
	}
	other := host + "/alpinist/other"
	push := mustCLI(t, "cache", "push", other, "--insecure", "--cache", filepath.Join(dir, "cache-a"))
	if !strings.Contains(push, "packages: "+itoa(len(pkgs))+" pushed, 0 there already") || !strings.Contains(push, "rootfs: 1 pushed") {
		t.Errorf("cache push:\n%s", push)
	}
	if push2 := mustCLI(t, "cache", "push", other, "--insecure", "--cache", filepath.Join(dir, "cache-a")); !strings.Contains(push2, "packages: 0 pushed, "+itoa(len(pkgs))+" there already") {
		t.Errorf("a second cache push:\n%s", push2)
	}

	if code, _, errs := cli(t, "build", spec, "-o", filepath.Join(dir, "bad"), "--cache-from", "registry.example.org/cache", "--insecure"); code == 0 || !strings.Contains(errs, "--cache-from") || !strings.Contains(errs, "only for a registry on localhost") {
		t.Errorf("--insecure with a remote cache: exit %d\n%s", code, errs)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestHostileSharedRootfs: a rootfs entry in the registry under the
// build's own key, with the right digests but a hostile tar (as a
// registry an attacker writes to could hold), is read through the same
// canonical reader as a local entry: the build fails naming the entry,
// and writes nothing.
func TestHostileSharedRootfs(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	host := startRegistry(t)
	body, _ := smallSpec(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "small.yaml")
	writeFile(t, spec, body, 0o644)
	cacheA := filepath.Join(dir, "cache-a")
	mustCLI(t, "build", spec, "-o", filepath.Join(dir, "first"), "--cache", cacheA, "--output", "tar")
	jsons, _ := filepath.Glob(filepath.Join(cacheA, "rootfs", "*.json"))
	if len(jsons) != 1 {
		t.Fatalf("build cache: %v", jsons)
	}
	key := strings.TrimSuffix(filepath.Base(jsons[0]), ".json")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "../../etc/cron.d/x", Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX})
	tw.Close()
	hostile := filepath.Join(dir, "hostile.tar")
	writeFile(t, hostile, string(b.Bytes()), 0o644)
	ref := host + "/attacker/cache"
	c, err := regcache.Open(context.Background(), ref, regcache.Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutRootfs(key, hostile, strings.TrimSuffix(jsons[0], ".json")+".log", jsons[0]); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	code, _, errs := cli(t, "build", spec, "-o", out, "--cache", filepath.Join(dir, "cache-b"), "--output", "tar", "--cache-from", ref, "--insecure")
	if code == 0 || !strings.Contains(errs, "leaves the root") || !strings.Contains(errs, "the build cache's rootfs") {
		t.Errorf("a hostile shared rootfs: exit %d\n%s", code, errs)
	}
	if ents, _ := os.ReadDir(out); len(ents) > 0 {
		t.Errorf("a refused rootfs left outputs: %v", ents)
	}
}
