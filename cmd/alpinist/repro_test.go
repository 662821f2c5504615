package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/repro"
)

// alpinistBinary is bin/alpinist, which make builds (make test and make
// repro do): the repro test runs it as a user would, in processes whose
// umask, time zone, locale, directory and user it sets.
func alpinistBinary(t *testing.T) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	bin, _ := filepath.Abs(filepath.Join(filepath.Dir(self), "..", "..", "bin", "alpinist"))
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("bin/alpinist is missing (make test builds it first): %v", err)
		}
		t.Skipf("run make build first: %v", err)
	}
	return bin
}

// reproTree lays out what a build of demo.yaml reads under root, the
// same way for both builds, so that the lock's relative repository
// paths are the same: root/specs/demo.yaml and root/repo (the test
// repository's x86_64 and aarch64 packages and keys, hard-linked or
// copied, readable by any user).
func reproTree(t *testing.T, td, root string) {
	t.Helper()
	repoSrc, err := filepath.EvalSymlinks(filepath.Join(td, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"specs", "repo/main"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec, err := os.ReadFile(filepath.Join(td, "specs", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "specs", "demo.yaml"), string(spec), 0o644)
	for _, d := range []string{"main/x86_64", "main/aarch64", "keys"} {
		src, dst := filepath.Join(repoSrc, d), filepath.Join(root, "repo", d)
		if err := exec.Command("cp", "-al", src, dst).Run(); err != nil {
			if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
				t.Fatalf("cp %s: %v\n%s", src, err, out)
			}
		}
	}
}

// TestRepro builds demo.yaml for x86_64 and aarch64 twice, with every
// output (tar, tar.gz, tar.zst, wsl, lxc, oci, docker-archive, ext4,
// raw, qcow2, vmdk, vhd, iso, gce, and the SBOMs and the lock; the ova, x86's,
// assembled from each build's x86_64 rootfs), in
// conditions that differ in everything a build must not depend on, and
// checks every output is the same, byte for byte:
//
//	            first build           second build
//	umask       022                   077
//	TZ          UTC                   Pacific/Chatham (UTC+13:45)
//	locale      C                     fr_FR.UTF-8
//	directory   A                     B
//	cache       A/cache, cold         B/cache, a copy of A's packages: warm
//	user        the test's            nobody (as root), else root in a
//	                                  user namespace
//
// SOURCE_DATE_EPOCH is unset: the date comes from the lock. make repro
// runs this test alone. KVM against TCG is not compared: KVM does not
// work on the machines this runs on.
func TestRepro(t *testing.T) {
	td := generatedRepo(t)
	bin := alpinistBinary(t)
	vmtest.Binary(t, "x86_64")
	vmtest.Binary(t, "aarch64")
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o755) // for the other user
	os.Chmod(base, 0o755)
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	reproTree(t, td, a)
	reproTree(t, td, b)
	args := []string{"build", "specs/demo.yaml", "-o", "out", "--cache", "cache", "--output", "tar,tar.gz,tar.zst,wsl,lxc,oci,docker-archive,ext4,raw,qcow2,vmdk,vhd,iso,gce"}
	// The OVA is x86's: made from each build's x86_64 rootfs by assemble,
	// in the same conditions as the build.
	ovaArgs := []string{"assemble", "out/demo-x86_64.tar", "--name", "demo", "--arch", "x86_64", "-o", "out/ova", "--output", "ova"}

	build := func(dir, umask string, env []string, attr *syscall.SysProcAttr) {
		t.Helper()
		for _, args := range [][]string{args, ovaArgs} {
			cmd := boundedCommand(t, "/bin/sh", append([]string{"-c", "umask " + umask + ` && exec "$0" "$@"`, bin}, args...)...)
			cmd.Dir = dir
			cmd.Env = env
			cmd.SysProcAttr = attr
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("alpinist %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
			}
		}
	}
	environ := func(dir string, extra ...string) []string {
		var env []string
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			switch {
			case k == "SOURCE_DATE_EPOCH", k == "TZ", k == "LANG", strings.HasPrefix(k, "LC_"),
				k == "HOME", k == "TMPDIR", k == "XDG_CACHE_HOME", k == "ALPINIST_CACHE":
				continue
			}
			env = append(env, kv)
		}
		home := filepath.Join(dir, "home")
		os.MkdirAll(filepath.Join(home, "tmp"), 0o755)
		return append(env, append([]string{"HOME=" + home, "TMPDIR=" + filepath.Join(home, "tmp"), "XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}, extra...)...)
	}

	build(a, "022", environ(a, "TZ=UTC", "LC_ALL=C", "LANG=C"), nil)

	// The second build: a warm cache elsewhere, another user.
	if out, err := exec.Command("cp", "-a", filepath.Join(a, "cache"), filepath.Join(b, "cache")).CombinedOutput(); err != nil {
		t.Fatalf("cp cache: %v\n%s", err, out)
	}
	// Not the build cache: the second build's VM must run.
	os.RemoveAll(filepath.Join(b, "cache", "rootfs"))
	envB := environ(b, "TZ=Pacific/Chatham", "LC_ALL=fr_FR.UTF-8", "LANG=fr_FR.UTF-8")
	var attr *syscall.SysProcAttr
	switch {
	case os.Getuid() == 0:
		const nobody = 65534
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", nobody, nobody), b).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v\n%s", err, out)
		}
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		t.Log("the second build runs as nobody (65534)")
	case exec.Command("unshare", "-r", "true").Run() == nil:
		attr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
		t.Log("the second build runs as root in a user namespace")
	default:
		t.Log("the second build runs as the same user: this machine allows no other (not root, no user namespaces)")
	}
	build(b, "077", envB, attr)

	diffs, same, err := repro.Compare(filepath.Join(a, "out"), filepath.Join(b, "out"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("not reproduced: %s", d)
	}
	sums := fileSums(t, filepath.Join(a, "out"))
	for _, arch := range []string{"x86_64", "aarch64"} {
		for _, ext := range []string{".tar", ".tar.gz", ".tar.zst", ".wsl.tar.gz", ".lxc.tar.xz", ".docker.tar", ".ext4", ".raw", ".qcow2", ".vmdk", ".vhd", ".iso", ".gce.tar.gz", ".spdx.json"} {
			if sums["demo-"+arch+ext] == "" {
				t.Errorf("no output demo-%s%s", arch, ext)
			}
		}
	}
	if sums["ova/demo-x86_64.ova"] == "" {
		t.Error("no OVA")
	}
	if sums["demo.oci/index.json"] == "" || sums["demo.lock"] == "" {
		t.Error("no OCI layout or lock")
	}
	t.Logf("%d outputs reproduced", same)
}
