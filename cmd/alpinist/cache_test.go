package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
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
	if !strings.Contains(ls, "build cache: 1 rootfs") || !strings.Contains(ls, "small") || !strings.Contains(ls, "x86_64") || !strings.Contains(ls, "boot: 1 kernels") {
		t.Errorf("cache ls:\n%s", ls)
	}
	// The boot cache has the kernel, as an ELF (x86_64 boots it through
	// PVH), and the initramfs, and nothing half-made.
	boot, _ := filepath.Glob(filepath.Join(cache, "boot", "*"))
	hidden, _ := filepath.Glob(filepath.Join(cache, "boot", ".*"))
	if len(boot) != 2 || len(hidden) != 0 || !strings.HasSuffix(boot[1], ".kernel") {
		t.Errorf("the boot cache holds %v and %v", boot, hidden)
	} else if k, _ := os.ReadFile(boot[1]); !bytes.HasPrefix(k, []byte("\x7fELF")) {
		t.Errorf("the cached x86_64 kernel is not an ELF: % x", k[:min(len(k), 8)])
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
	code, s, errs := cli(t, "-v", "build", spec, "-o", filepath.Join(dir, "3"), "--cache", cache, "--output", "tar", "--no-cache")
	if code != 0 || !booted(s) {
		t.Errorf("--no-cache did not boot the VM (exit %d):\n%s\n%s", code, s, errs)
	}
	if !strings.Contains(errs, "the build VM's kernel and initramfs come from the boot cache") {
		t.Errorf("the rebuild did not boot from the boot cache:\n%s", errs)
	}
	writeFile(t, spec, body+"run: [\"echo changed > /etc/changed\"]\n", 0o644)
	if s := build(filepath.Join(dir, "4")); !booted(s) {
		t.Errorf("a changed spec did not boot the VM:\n%s", s)
	}

	// Two builds at once: one VM.
	mustCLI(t, "cache", "prune", "--all", "--cache", cache)
	if ls := mustCLI(t, "cache", "ls", "--cache", cache); !strings.Contains(ls, "build cache: empty") || !strings.Contains(ls, "packages: 0") || !strings.Contains(ls, "boot: 0 kernels") {
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

// TestTamperedBuildCache: the rootfs a build gets back (from the VM or,
// here, from a tampered build-cache entry) passes through the canonical
// reader before any output sees it. The tar, tar.gz, WSL, LXC,
// docker-archive and OCI outputs came out with hostile entries and exit
// code 0; now the build fails, naming the entry, and writes nothing.
func TestTamperedBuildCache(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	body, _ := smallSpec(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "small.yaml")
	writeFile(t, spec, body, 0o644)
	cache := t.TempDir()
	outputs := "tar,tar.gz,wsl,lxc,docker-archive,oci"
	mustCLI(t, "build", spec, "-o", filepath.Join(dir, "first"), "--cache", cache, "--output", "tar")
	entries, _ := filepath.Glob(filepath.Join(cache, "rootfs", "*.tar"))
	if len(entries) != 1 {
		t.Fatalf("build cache entries: %v", entries)
	}
	hostile := map[string][]tar.Header{
		"leaves the root": {{Name: "../../etc/cron.d/x", Typeflag: tar.TypeReg, Mode: 0o644}},
		"hard link to /etc/shadow, which is not a file in the tar": {{Name: "shadow", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}},
		"is under evil, a symlink": {{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
			{Name: "evil/cron.d/x", Typeflag: tar.TypeReg, Mode: 0o644}},
		"past PATH_MAX": {{Name: strings.Repeat("d/", 2100) + "x", Typeflag: tar.TypeReg, Mode: 0o644}},
	}
	for want, hs := range hostile {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			h.Format = tar.FormatPAX
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
		}
		tw.Close()
		if err := os.WriteFile(entries[0], b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out-"+strings.Fields(want)[0])
		code, _, errs := cli(t, "build", spec, "-o", out, "--cache", cache, "--output", outputs)
		if code == 0 || !strings.Contains(errs, want) || !strings.Contains(errs, "the build cache's rootfs") {
			t.Errorf("a cache entry that %s: exit %d\n%s", want, code, errs)
		}
		if ents, _ := os.ReadDir(out); len(ents) > 0 {
			t.Errorf("a refused rootfs left outputs: %v", ents)
		}
	}
}

// TestBuildKernelOverride: --kernel and --modules boot the build VM with
// a kernel image and modules directory from the host (here the test
// repository's linux-virt, unpacked) instead of the repository's
// package; the rootfs is the same as with the package's kernel, and an
// unchanged rebuild with the same files takes it from the build cache.
// --kernel needs one arch (a spec's only one, or --arch); armhf boots
// armv7's kernel.
func TestBuildKernelOverride(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	body, repoDir := smallSpec(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "small.yaml")
	writeFile(t, spec, body, 0o644)
	kernel, modules := unpackKernel(t, repoDir, "x86_64", filepath.Join(dir, "linux-virt"))
	cache := t.TempDir()
	build := func(out string, extra ...string) string {
		t.Helper()
		return mustCLI(t, append([]string{"build", spec, "-o", filepath.Join(dir, out), "--cache", cache, "--output", "tar"}, extra...)...)
	}
	build("pkg")
	override := []string{"--kernel", kernel, "--modules", modules}
	if s := build("files", override...); !strings.Contains(s, " boot ") {
		t.Errorf("the build with --kernel did not boot its own VM:\n%s", s)
	}
	a, b := fileSums(t, filepath.Join(dir, "pkg")), fileSums(t, filepath.Join(dir, "files"))
	if a["small-x86_64.tar"] == "" || a["small-x86_64.tar"] != b["small-x86_64.tar"] {
		t.Error("the rootfs built with --kernel differs from the one built with the package's kernel")
	}
	if s := build("again", override...); !strings.Contains(s, "build cache") {
		t.Errorf("an unchanged rebuild with --kernel did not take the build cache's rootfs:\n%s", s)
	}
	code, _, errs := cli(t, "build", spec, "-o", filepath.Join(dir, "bad"), "--cache", cache, "--arch", "x86_64", "--kernel", filepath.Join(dir, "none"))
	if code == 0 || !strings.Contains(errs, "none") {
		t.Errorf("a missing --kernel file: exit %d\n%s", code, errs)
	}
	two := filepath.Join(dir, "two.yaml")
	writeFile(t, two, strings.Replace(body, "arch: [x86_64]", "arch: [x86_64, aarch64]", 1), 0o644)
	if code, _, errs := cli(t, "build", two, "-o", filepath.Join(dir, "bad"), "--cache", cache, "--kernel", kernel); code == 0 || !strings.Contains(errs, "builds x86_64, aarch64: choose one with --arch") {
		t.Errorf("--kernel for two arches: exit %d\n%s", code, errs)
	}

	// armhf boots armv7's linux-virt (Alpine's armhf has none; the VM's
	// CPU is ARMv7), unpacked to its Image as the package's kernel is.
	armv7Kernel, armv7Modules := unpackKernel(t, repoDir, "armv7", filepath.Join(dir, "armv7"))
	armhf := filepath.Join(dir, "armhf.yaml")
	writeFile(t, armhf, strings.Replace(body, "arch: [x86_64]", "arch: [armhf]", 1), 0o644)
	mustCLI(t, "build", armhf, "-o", filepath.Join(dir, "armhf"), "--cache", cache, "--output", "tar", "--kernel", armv7Kernel, "--modules", armv7Modules)
	if _, data := tarIndex(t, filepath.Join(dir, "armhf", "small-armhf.tar"), "etc/apk/arch"); strings.TrimSpace(string(data["etc/apk/arch"])) != "armhf" {
		t.Errorf("armhf built with armv7's kernel: etc/apk/arch %q", data["etc/apk/arch"])
	}
}

// unpackKernel unpacks the test repository's linux-virt of arch into
// root and gives its boot/vmlinuz-virt and lib/modules/KVER.
func unpackKernel(t *testing.T, repoDir, arch, root string) (kernel, modules string) {
	t.Helper()
	pkgs, _ := filepath.Glob(filepath.Join(repoDir, "main", arch, "linux-virt-*.apk"))
	if len(pkgs) != 1 {
		t.Fatalf("linux-virt: %v", pkgs)
	}
	f, err := os.Open(pkgs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = apkfile.Read(f, apkfile.ReadOptions{AllowUntrusted: true, Entry: func(h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg || !strings.HasPrefix(h.Name, "boot/vmlinuz") && !strings.HasPrefix(h.Name, "lib/modules/") {
			return nil
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	}})
	if err != nil {
		t.Fatal(err)
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz*"))
	mods, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*"))
	if len(kernels) != 1 || len(mods) != 1 {
		t.Fatalf("unpacked linux-virt: %v %v", kernels, mods)
	}
	return kernels[0], mods[0]
}
