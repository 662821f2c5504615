// Package minirootfs gives tests Alpine's real minirootfs (real apk-tools
// 2.14, Alpine's keys, a real installed database) so that the real apk can
// judge what alpinist writes.
//
// The tarball is found through ALPINIST_MINIROOTFS (a .tar.gz or an
// extracted directory), else in ../shared/fixtures/alpine/ above the module
// root. Tests skip, saying why, when it is missing or when they cannot
// chroot (not root, not an x86_64 host).
package minirootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/alpinist/alpinist/internal/rootfstar"
)

const fixture = "alpine-minirootfs-3.20.3-x86_64.tar.gz"

// Tarball returns the path of the minirootfs tarball, or skips the test.
func Tarball(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ALPINIST_MINIROOTFS"); p != "" {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	root, err := moduleRoot()
	if err == nil {
		p := filepath.Join(root, "..", "shared", "fixtures", "alpine", fixture)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("Alpine minirootfs not found: CI has ../shared/fixtures/alpine/%s", fixture)
	}
	t.Skipf("Alpine minirootfs not found: set ALPINIST_MINIROOTFS or provide ../shared/fixtures/alpine/%s", fixture)
	return ""
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

var (
	extractOnce sync.Once
	extracted   string
	extractErr  error
)

// Dir returns a directory holding the extracted minirootfs, shared by all
// tests of the process and kept in the user cache between runs. Tests must
// not modify it; use Copy for a private one.
func Dir(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ALPINIST_MINIROOTFS"); p != "" {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
	}
	tarball := Tarball(t)
	extractOnce.Do(func() { extracted, extractErr = extract(tarball) })
	if extractErr != nil {
		t.Fatalf("minirootfs: %v", extractErr)
	}
	return extracted
}

// Real returns the directory of Alpine's real fixtures
// (../shared/fixtures/alpine-real above the module root: Alpine's own
// packages, indexes, keys and minirootfs tarballs). A test fails without
// it under CI, which always has it, and is skipped otherwise.
func Real(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err == nil {
		p := filepath.Join(root, "..", "shared", "fixtures", "alpine-real")
		if _, err = os.Stat(filepath.Join(p, "README.md")); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("Alpine's real fixtures are missing (CI always has ../shared/fixtures/alpine-real): %v", err)
	}
	t.Skipf("Alpine's real fixtures not found (../shared/fixtures/alpine-real): %v", err)
	return ""
}

// RealPackages lists the package names of a real repository's
// MANIFEST.txt (repo is "repos/v3.19/x86_64" under the fixtures), but
// those left out (which conflict with what the rest pulls in).
func RealPackages(t testing.TB, repo string, leaveOut ...string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Real(t), repo, "MANIFEST.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 || strings.HasPrefix(line, "#") || slices.Contains(leaveOut, f[1]) {
			continue
		}
		names = append(names, f[1])
	}
	return names
}

var (
	realMu   sync.Mutex
	realDirs = map[string]string{}
)

// RealDir returns Alpine's real minirootfs of version and arch
// ("3.19.4", "x86_64") from the real fixtures, extracted once into the
// user cache. Tests must not modify it.
func RealDir(t testing.TB, version, arch string) string {
	t.Helper()
	tarball := filepath.Join(Real(t), "minirootfs", "alpine-minirootfs-"+version+"-"+arch+".tar.gz")
	realMu.Lock()
	defer realMu.Unlock()
	if d, ok := realDirs[tarball]; ok {
		return d
	}
	d, err := extract(tarball)
	if err != nil {
		t.Fatalf("minirootfs: %v", err)
	}
	realDirs[tarball] = d
	return d
}

// HostApk runs the real x86_64 apk of the minirootfs mini on the host
// through its own loader (not in a chroot of mini): paths in args are the
// host's, so `add --root DIR --initdb` installs into DIR and runs the
// packages' scripts in a chroot of DIR, exactly as Alpine does. It returns
// the combined output. CanChroot must have been called.
func HostApk(mini string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(mini, "lib", "ld-musl-x86_64.so.1"),
		append([]string{"--library-path", filepath.Join(mini, "lib") + ":" + filepath.Join(mini, "usr", "lib"), filepath.Join(mini, "sbin", "apk")}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func extract(tarball string) (string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dest := filepath.Join(cache, "alpinist-test", "minirootfs-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dest, "sbin", "apk")); err == nil {
		return dest, nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "extract-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if err := rootfstar.Unpack(f, tmp); err != nil {
		return "", fmt.Errorf("%s: %w", tarball, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		if _, serr := os.Stat(filepath.Join(dest, "sbin", "apk")); serr == nil {
			return dest, nil // another process won the race
		}
		return "", err
	}
	return dest, nil
}

// CanChroot skips the test unless the real apk can run here: root, x86_64.
func CanChroot(t testing.TB) {
	t.Helper()
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skipf("the minirootfs's apk is x86_64 Linux; host is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("running the real apk-tools needs chroot, which needs root; CI runs as root")
		}
		t.Skip("running the real apk-tools needs chroot, which needs root")
	}
}

// Copy makes a private writable copy of the minirootfs under a test temp dir
// (for tests that install into it or bind files into it).
func Copy(t testing.TB) string {
	t.Helper()
	src := Dir(t)
	dst := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy minirootfs: %v: %s", err, out)
	}
	return dst
}

// Apk runs the real apk-tools inside root (a directory from Dir or Copy) via
// chroot and returns its combined output. Paths in args are as seen inside
// root. CanChroot must have been called.
func Apk(root string, args ...string) (string, error) {
	cmd := exec.Command("chroot", append([]string{root, "/sbin/apk"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
