package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specpkg "github.com/alpinist/alpinist/spec"

	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// cli runs alpinist in-process and returns its exit status and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	// Every command a test runs, a build VM and all, is stopped within
	// testBound: a hang fails the test in minutes, not at go test's
	// package timeout.
	ctx, cancel := context.WithTimeout(context.Background(), testBound)
	defer cancel()
	code := run(ctx, args, strings.NewReader(""), &out, &errb)
	if ctx.Err() != nil {
		t.Errorf("alpinist %s: stopped after %v", strings.Join(args, " "), testBound)
	}
	return code, out.String(), errb.String()
}

// testBound bounds each alpinist command a test runs (the slowest, a
// two-arch build with every output under TCG, takes about a minute).
const testBound = 8 * time.Minute

// boundedCommand is exec.Command for an alpinist binary, killed after
// testBound.
func boundedCommand(t *testing.T, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), testBound)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, name, args...)
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := cli(t, args...)
	if code != 0 {
		t.Fatalf("alpinist %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// cliRepo makes a key with repo keygen and a repository of two packages
// with pkg build and repo index; it returns the work directory.
func cliRepo(t *testing.T) string {
	t.Helper()
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	w := t.TempDir()
	mustCLI(t, "repo", "keygen", "--out", filepath.Join(w, "keys"), "--name", "cli-test", "--bits", "2048")
	if code, _, errs := cli(t, "repo", "keygen", "--out", filepath.Join(w, "keys"), "--name", "cli-test", "--bits", "2048"); code == 0 || !strings.Contains(errs, "not overwriting") {
		t.Errorf("second keygen: %d %s", code, errs)
	}
	os.MkdirAll(filepath.Join(w, "pub"), 0o755)
	os.Rename(filepath.Join(w, "keys", "cli-test.rsa.pub"), filepath.Join(w, "pub", "cli-test.rsa.pub"))

	root := filepath.Join(w, "hello-root")
	writeFile(t, filepath.Join(root, "usr/bin/cli-hello"), "#!/bin/sh\necho hello from the cli\n", 0o755)
	writeFile(t, filepath.Join(root, "usr/share/cli-hello/data"), "data\n", 0o644)
	os.Symlink("cli-hello", filepath.Join(root, "usr/bin/cli-hi"))
	os.Link(filepath.Join(root, "usr/bin/cli-hello"), filepath.Join(root, "usr/bin/cli-hello2"))
	writeFile(t, filepath.Join(w, "scripts", "post-install"), "#!/bin/sh\necho post > /cli-post-install.out\n", 0o755)
	lib := filepath.Join(w, "lib-root")
	writeFile(t, filepath.Join(lib, "usr/lib/libclitest.so.1"), "lib\n", 0o755)

	repo := filepath.Join(w, "repo", "x86_64")
	key := filepath.Join(w, "keys", "cli-test.rsa")
	mustCLI(t, "pkg", "build", lib, "--name", "cli-lib", "--version", "1.0-r0", "--arch", "x86_64", "--key", key, "-o", repo,
		"--provides", "so:libclitest.so.1=1", "--license", "MIT", "--description", "cli test library")
	mustCLI(t, "pkg", "build", root, "--name", "cli-hello", "--version", "2.0-r1", "--arch", "x86_64", "--key", key, "-o", repo,
		"--depends", "so:libclitest.so.1", "--provides", "cmd:cli-hello=2.0-r1", "--scripts", filepath.Join(w, "scripts"), "--sig-type", "RSA256")
	out := mustCLI(t, "repo", "index", repo, "--key", key, "--description", "cli repo", "--keys", filepath.Join(w, "pub"))
	if !strings.Contains(out, "2 packages") {
		t.Errorf("repo index printed %q", out)
	}
	return w
}

func TestPkgBuildInspectIndex(t *testing.T) {
	w := cliRepo(t)
	pkg := filepath.Join(w, "repo", "x86_64", "cli-hello-2.0-r1.apk")
	out := mustCLI(t, "pkg", "inspect", pkg, "--keys", filepath.Join(w, "pub"), "--list")
	for _, want := range []string{"P:cli-hello\n", "V:2.0-r1\n", "A:x86_64\n", "D:so:libclitest.so.1\n", "p:cmd:cli-hello=2.0-r1\n",
		"script: post-install", "signature: RSA256 by cli-test.rsa.pub: OK", "l  777 0:0 usr/bin/cli-hi -> cli-hello",
		"h  755 0:0 usr/bin/cli-hello2 => usr/bin/cli-hello", "t:1700000000\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	// The same input gives the same bytes.
	first, _ := os.ReadFile(pkg)
	mustCLI(t, "pkg", "build", filepath.Join(w, "hello-root"), "--name", "cli-hello", "--version", "2.0-r1", "--arch", "x86_64",
		"--key", filepath.Join(w, "keys", "cli-test.rsa"), "-o", filepath.Join(w, "again"),
		"--depends", "so:libclitest.so.1", "--provides", "cmd:cli-hello=2.0-r1", "--scripts", filepath.Join(w, "scripts"), "--sig-type", "RSA256")
	second, _ := os.ReadFile(filepath.Join(w, "again", "cli-hello-2.0-r1.apk"))
	if !bytes.Equal(first, second) {
		t.Error("pkg build is not deterministic")
	}

	// Failures: a flipped byte anywhere past the signature's gzip header,
	// an untrusted key, a missing key directory.
	for _, off := range []int{20, len(first) / 3, len(first) / 2, len(first) - 10} {
		bad := filepath.Join(w, "bad.apk")
		data := bytes.Clone(first)
		data[off] ^= 0x10
		os.WriteFile(bad, data, 0o644)
		if code, _, errs := cli(t, "pkg", "inspect", bad, "--keys", filepath.Join(w, "pub")); code == 0 || !strings.Contains(errs, "bad.apk") {
			t.Errorf("tampered at %d: exit %d %s", off, code, errs)
		}
	}
	other := filepath.Join(w, "other")
	mustCLI(t, "repo", "keygen", "--out", other, "--name", "other", "--bits", "2048")
	os.Remove(filepath.Join(other, "other.rsa"))
	code, _, errs := cli(t, "pkg", "inspect", pkg, "--keys", other)
	if code == 0 || !strings.Contains(errs, "UNTRUSTED") || !strings.Contains(errs, "cli-hello-2.0-r1") || !strings.Contains(errs, "cli-test.rsa.pub") {
		t.Errorf("wrong key: exit %d %s", code, errs)
	}
	if code, _, errs := cli(t, "pkg", "inspect", pkg, "--keys", filepath.Join(w, "nope")); code == 0 || !strings.Contains(errs, "does not exist") {
		t.Errorf("missing keys dir: exit %d %s", code, errs)
	}
	// Bad build input.
	if code, _, errs := cli(t, "pkg", "build", filepath.Join(w, "hello-root"), "--name", "x", "--version", "one", "--arch", "x86_64", "--key", filepath.Join(w, "keys", "cli-test.rsa"), "-o", w); code == 0 || !strings.Contains(errs, "not a valid apk version") {
		t.Errorf("bad version: %d %s", code, errs)
	}
	if code, _, errs := cli(t, "pkg", "build", filepath.Join(w, "hello-root"), "--name", "x"); code == 0 || !strings.Contains(errs, "missing --version, --arch, --key, -o") {
		t.Errorf("missing flags: %d %s", code, errs)
	}
}

// TestRealApkInstallsCLIRepo has the real apk-tools install a repository
// made by pkg build and repo index, trusting only our key.
func TestRealApkInstallsCLIRepo(t *testing.T) {
	minirootfs.CanChroot(t)
	w := cliRepo(t)
	root := minirootfs.Copy(t)
	if err := os.CopyFS(filepath.Join(root, "repo"), os.DirFS(filepath.Join(w, "repo"))); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(root, "testkeys"), os.DirFS(filepath.Join(w, "pub"))); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "etc/apk/repositories"), nil, 0o644)
	out, err := minirootfs.Apk(root, "--no-network", "--keys-dir", "/testkeys", "-X", "/repo", "add", "cmd:cli-hello")
	t.Log(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"UNTRUSTED", "WARNING", "ERROR"} {
		if strings.Contains(out, bad) {
			t.Errorf("apk printed %s", bad)
		}
	}
	if data, err := os.ReadFile(filepath.Join(root, "cli-post-install.out")); err != nil || string(data) != "post\n" {
		t.Errorf("post-install: %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/lib/libclitest.so.1")); err != nil {
		t.Error(err)
	}
	if out, err := minirootfs.Apk(root, "audit", "--system"); err != nil || strings.Contains(out, "cli-") {
		t.Errorf("apk audit: %v\n%s", err, out)
	}
	// And into an empty root with --initdb (cli-lib has no scripts, which
	// would need a /bin/sh there).
	os.MkdirAll(filepath.Join(root, "target"), 0o755)
	out, err = minirootfs.Apk(root, "--root", "/target", "--initdb", "--no-network", "--keys-dir", "/testkeys", "-X", "/repo", "--arch", "x86_64", "add", "cli-lib")
	if err != nil || strings.Contains(out, "UNTRUSTED") || strings.Contains(out, "WARNING") {
		t.Errorf("apk --root --initdb add: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "target/usr/lib/libclitest.so.1")); err != nil {
		t.Error(err)
	}
}

// generatedRepo returns testdata/repo, made by make testrepo. Outside CI
// a missing repository skips the test; in CI (CI=true) it fails.
func generatedRepo(t *testing.T) string {
	t.Helper()
	p := filepath.Join("..", "..", "testdata", "repo", "main", "x86_64", "APKINDEX.tar.gz")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the generated test repository is missing (make test runs make testrepo): %v", err)
		}
		t.Skipf("run make testrepo first: %v", err)
	}
	return filepath.Join("..", "..", "testdata")
}

func TestResolveDemo(t *testing.T) {
	td := generatedRepo(t)
	spec := filepath.Join(td, "specs", "demo.yaml")
	out := mustCLI(t, "resolve", spec)
	for _, arch := range []string{"x86_64", "aarch64"} {
		if !strings.Contains(out, "# "+arch+"\n") {
			t.Errorf("no %s section:\n%s", arch, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 20 {
		t.Fatalf("resolve printed %d lines:\n%s", len(lines), out)
	}
	// busybox comes before what needs /bin/sh (install order).
	one := mustCLI(t, "resolve", spec, "--arch", "aarch64")
	names := map[string]int{}
	for i, l := range strings.Split(strings.TrimSpace(one), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("line %q is not NAME VERSION REPOSITORY", l)
		}
		names[f[0]] = i
	}
	for _, n := range []string{"busybox", "alpine-baselayout", "linux-virt", "grub-efi", "alpinist-test-scripts", "alpinist-test-consumer", "alpinist-test-lib"} {
		if _, ok := names[n]; !ok {
			t.Errorf("aarch64: %s not resolved", n)
		}
	}
	if names["busybox"] > names["alpine-baselayout"] || names["alpinist-test-lib"] > names["alpinist-test-consumer"] {
		t.Errorf("install order wrong:\n%s", one)
	}

	// Lock round trip.
	lockFile := filepath.Join(t.TempDir(), "demo.lock")
	mustCLI(t, "resolve", spec, "--arch", "x86_64", "--lock", lockFile)
	locked := mustCLI(t, "resolve", spec, "--arch", "x86_64", "--locked", lockFile)
	if locked != mustCLI(t, "resolve", spec, "--arch", "x86_64") {
		t.Error("--locked output differs from a fresh solve")
	}
	js := mustCLI(t, "resolve", spec, "--arch", "x86_64", "--json")
	if !strings.Contains(js, `"checksum": "Q1`) {
		t.Errorf("json lacks checksums:\n%s", js)
	}
}

func TestResolveErrors(t *testing.T) {
	td := generatedRepo(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, body, 0o644)
		return p
	}
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	common := "name: t\narch: [x86_64]\nrepositories: [" + repoDir + "/main]\nkeys: [" + repoDir + "/keys/]\n"
	cases := []struct{ name, body, want string }{
		{"conflict.yaml", common + "packages: [alpinist-test-conflict-a, alpinist-test-conflict-b]\n", "breaks: alpinist-test-conflict-a"},
		{"missing.yaml", common + "packages: [no-such-package]\n", "no-such-package (no such package)"},
		{"ambiguous.yaml", common + "packages: [alpinist-test-virtual]\n", "alpinist-test-virtual"},
		{"nokeys.yaml", "name: t\narch: [x86_64]\nrepositories: [" + repoDir + "/main]\nkeys: [" + dir + "]\npackages: [busybox]\n", "no public key"},
	}
	for _, c := range cases {
		code, _, errs := cli(t, "resolve", write(c.name, c.body))
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant %q", c.name, code, errs, c.want)
		}
	}
	// A key that did not sign the index.
	other := filepath.Join(dir, "other")
	mustCLI(t, "repo", "keygen", "--out", other, "--name", "other", "--bits", "2048")
	os.Remove(filepath.Join(other, "other.rsa"))
	code, _, errs := cli(t, "resolve", write("wrongkey.yaml", "name: t\narch: [x86_64]\nrepositories: ["+repoDir+"/main]\nkeys: ["+other+"]\npackages: [busybox]\n"))
	if code == 0 || !strings.Contains(errs, "UNTRUSTED") || !strings.Contains(errs, "APKINDEX.tar.gz") {
		t.Errorf("wrong key: exit %d %s", code, errs)
	}
}

func TestFetch(t *testing.T) {
	td := generatedRepo(t)
	spec := filepath.Join(td, "specs", "demo.yaml")
	cache := t.TempDir()
	out := t.TempDir()
	res := mustCLI(t, "fetch", spec, "--arch", "x86_64", "--cache", cache, "-o", out)
	if !strings.Contains(res, "x86_64: 12 packages verified") && !strings.Contains(res, "packages verified") {
		t.Errorf("fetch printed %q", res)
	}
	apks, _ := filepath.Glob(filepath.Join(out, "x86_64", "*.apk"))
	cached, _ := filepath.Glob(filepath.Join(cache, "packages", "*.apk"))
	if len(apks) < 10 || len(cached) != len(apks) {
		t.Errorf("%d copied, %d cached", len(apks), len(cached))
	}
	// Every fetched file verifies with pkg inspect.
	mustCLI(t, "pkg", "inspect", apks[0], "--keys", filepath.Join(td, "repo", "keys"))

	// --locked fetches exactly the lock, and fails clearly when a locked
	// package has gone from the repository and the cache.
	lockFile := filepath.Join(t.TempDir(), "demo.lock")
	mustCLI(t, "resolve", spec, "--arch", "x86_64", "--lock", lockFile)
	mustCLI(t, "fetch", spec, "--arch", "x86_64", "--cache", cache, "--locked", lockFile)
	data, _ := os.ReadFile(lockFile)
	i := strings.Index(string(data), `"Q1`) + 3
	c := byte('A')
	if data[i] == 'A' {
		c = 'B'
	}
	bad := string(data[:i]) + string(c) + string(data[i+1:])
	badLock := filepath.Join(filepath.Dir(lockFile), "bad.lock")
	os.WriteFile(badLock, []byte(bad), 0o644)
	if code, _, errs := cli(t, "fetch", spec, "--arch", "x86_64", "--cache", t.TempDir(), "--locked", badLock); code == 0 || !strings.Contains(errs, "neither in") {
		t.Errorf("stale lock: exit %d %s", code, errs)
	}
	// build --locked refuses it too, before any VM, writing nothing.
	buildOut := filepath.Join(t.TempDir(), "out")
	if code, _, errs := cli(t, "build", spec, "--arch", "x86_64", "-o", buildOut, "--cache", t.TempDir(), "--locked", badLock); code == 0 || !strings.Contains(errs, "neither in") || !strings.Contains(errs, "bad.lock") {
		t.Errorf("build with a stale lock: exit %d %s", code, errs)
	}
	if _, err := os.Stat(buildOut); err == nil {
		t.Error("a refused build made its output directory")
	}
}

// TestFetchTampered copies the generated repository, corrupts one package
// and checks that fetch fails naming it and caches nothing for it.
func TestFetchTampered(t *testing.T) {
	td := generatedRepo(t)
	w := t.TempDir()
	if err := os.CopyFS(filepath.Join(w, "repo"), os.DirFS(filepath.Join(td, "repo", "main"))); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Abs(filepath.Join(td, "repo", "keys"))
	victim, _ := filepath.Glob(filepath.Join(w, "repo", "x86_64", "alpinist-test-lib-*.apk"))
	if len(victim) != 1 {
		t.Fatalf("victim %v", victim)
	}
	data, _ := os.ReadFile(victim[0])
	data[len(data)/2] ^= 0x01
	os.WriteFile(victim[0], data, 0o644)
	spec := filepath.Join(w, "t.yaml")
	writeFile(t, spec, "name: t\narch: [x86_64]\nrepositories: [repo]\nkeys: ["+keys+"]\npackages: [busybox, alpinist-test-consumer]\n", 0o644)
	cache := t.TempDir()
	code, _, errs := cli(t, "fetch", spec, "--cache", cache)
	if code == 0 || !strings.Contains(errs, "alpinist-test-lib-1.0.0-r0") {
		t.Errorf("exit %d, stderr %s", code, errs)
	}
	cached, _ := filepath.Glob(filepath.Join(cache, "packages", "*"))
	tmps, _ := filepath.Glob(filepath.Join(cache, "tmp", "*"))
	if len(tmps) != 0 {
		t.Errorf("cache after failure: %v %v", cached, tmps)
	}
	for _, c := range cached {
		if code, _, errs := cli(t, "pkg", "inspect", c, "--keys", keys); code != 0 {
			t.Errorf("cached file does not verify: %s", errs)
		}
	}
}

// TestSpecsResolveLikeRealApk resolves every spec in testdata/specs for
// each of its arches, and for x86_64 compares the install order with what
// Alpine's real apk-tools chooses (add --simulate on an empty root).
func TestSpecsResolveLikeRealApk(t *testing.T) {
	td := generatedRepo(t)
	specs, _ := filepath.Glob(filepath.Join(td, "specs", "*.yaml"))
	if len(specs) < 3 {
		t.Fatalf("specs: %v", specs)
	}
	for _, spec := range specs {
		mustCLI(t, "resolve", spec)
	}
	minirootfs.CanChroot(t)
	root := minirootfs.Copy(t)
	repo, _ := filepath.Abs(filepath.Join(td, "repo"))
	if err := os.CopyFS(filepath.Join(root, "repo"), os.DirFS(filepath.Join(repo, "main"))); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(root, "testkeys"), os.DirFS(filepath.Join(repo, "keys"))); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "etc/apk/repositories"), nil, 0o644)
	os.MkdirAll(filepath.Join(root, "target"), 0o755)
	// An empty database for --simulate to start from.
	if out, err := minirootfs.Apk(root, "--root", "/target", "--initdb", "--no-network", "add"); err != nil {
		t.Fatalf("apk --initdb: %v\n%s", err, out)
	}
	for _, spec := range specs {
		t.Run(filepath.Base(spec), func(t *testing.T) {
			data, _ := os.ReadFile(spec)
			if !strings.Contains(string(data), "arch: [x86_64") && !strings.Contains(string(data), ", x86_64") {
				t.Skip("the real apk here is x86_64; this spec builds other arches (resolved above)")
			}
			if strings.Contains("\n"+string(data), "\nextends:") {
				t.Skip("its packages are the spec's it extends, compared on its own")
			}
			ours := mustCLI(t, "resolve", spec, "--arch", "x86_64")
			var world []string
			var want []string
			for _, l := range strings.Split(strings.TrimSpace(ours), "\n") {
				f := strings.Fields(l)
				want = append(want, f[0]+" "+f[1])
			}
			// The world: the packages, and the boot loaders a disk adds.
			sp, err := specpkg.Load(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range sp.World("x86_64") {
				world = append(world, d.String())
			}
			out, err := minirootfs.Apk(root, append([]string{"--root", "/target", "--simulate", "--no-network",
				"--keys-dir", "/testkeys", "-X", "/repo", "--arch", "x86_64", "add"}, world...)...)
			if err != nil {
				t.Fatalf("apk: %v\n%s", err, out)
			}
			var got []string
			for _, l := range strings.Split(out, "\n") {
				// "(3/12) Installing busybox (1.35.0-r0)"
				if _, rest, ok := strings.Cut(l, ") Installing "); ok {
					name, ver, _ := strings.Cut(rest, " (")
					got = append(got, name+" "+strings.TrimSuffix(ver, ")"))
				}
			}
			if len(got) < 5 {
				t.Fatalf("apk --simulate installed %d packages:\n%s", len(got), out)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("real apk installs\n%s\nwe resolve\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestValidate(t *testing.T) {
	td := generatedRepo(t) // the specs' keys: entries must exist
	specs, _ := filepath.Glob(filepath.Join(td, "specs", "*.yaml"))
	out := mustCLI(t, append([]string{"validate"}, specs...)...)
	if strings.Count(out, ": ok (") != len(specs) {
		t.Errorf("validate printed:\n%s", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "name: x\nrepositories: [/r]\npackages: [busybox]\nflavour: vanilla\n", 0o644)
	code, _, errs := cli(t, "validate", bad)
	if code != 1 || !strings.Contains(errs, "bad.yaml:4:1: unknown field \"flavour\"") {
		t.Errorf("exit %d: %s", code, errs)
	}
}
