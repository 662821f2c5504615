package install

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/internal/treecmp"
)

// realCorpora are the real v3.19 x86_64 package sets the installer is
// held to apk-tools on.
var realCorpora = map[string][]string{
	"base":   {"alpine-base"},
	"server": {"alpine-base", "openssh", "chrony", "e2fsprogs", "doas", "tiny-cloud-nocloud"},
}

// testWorld is the synthetic repository's set that shows what real
// packages cannot: hooks, replaces, xattrs, hard links, empty
// directories, install_if.
var testWorld = []string{"busybox", "alpine-baselayout", "alpinist-test-scripts", "alpinist-test-trigger", "alpinist-test-hook",
	"alpinist-test-consumer", "alpinist-test-if-a", "alpinist-test-if-b", "alpinist-test-owner", "alpinist-test-replacer",
	"alpinist-test-hardlinks", "alpinist-test-xattr", "alpinist-test-emptydirs", "alpinist-test-noarch"}

// allowed are the paths that may differ from apk-tools' tree: the keys
// and repositories (the spec decides them).
func allowed(rel string) bool {
	return rel == "etc/apk/repositories" || rel == "etc/apk/keys" || strings.HasPrefix(rel, "etc/apk/keys/")
}

// TestRealAlpine installs Alpine's own v3.19 packages with our installer
// and with Alpine's apk-tools 2.14 (the 3.19.4 minirootfs's, on the
// host), and compares the two trees: every path, type, mode, owner,
// symlink target, content, hard-link set, xattr, device number, and the
// database files.
func TestRealAlpine(t *testing.T) {
	needRoot(t)
	minirootfs.CanChroot(t)
	real := minirootfs.Real(t)
	repoDir := filepath.Join(real, "repos", "v3.19")
	corpora := maps.Clone(realCorpora)
	corpora["all"] = minirootfs.RealPackages(t, "repos/v3.19/x86_64", "vlan", "bridge", "bonding", "network-extras", "openntpd", "openntpd-openrc")
	if len(corpora["all"]) != 94 {
		t.Fatalf("%d co-installable packages in the real v3.19 set, want 94", len(corpora["all"]))
	}
	for _, name := range slices.Sorted(maps.Keys(corpora)) {
		t.Run(name, func(t *testing.T) {
			compareWithApk(t, name, []string{repoDir}, filepath.Join(real, "keys"), corpora[name])
		})
	}
}

// TestSyntheticLikeApk holds the installer to apk-tools on the synthetic
// repository's odd packages.
func TestSyntheticLikeApk(t *testing.T) {
	needRoot(t)
	minirootfs.CanChroot(t)
	dir := testrepo.Generated(t)
	compareWithApk(t, "synthetic", []string{filepath.Join(dir, "main")}, filepath.Join(dir, "keys"), testWorld)
}

// compareWithApk installs world from the repositories with Alpine's
// apk-tools 2.14 (the real 3.19.4 x86_64 minirootfs's, run on the host)
// and with our installer, and fails naming every difference between the
// two trees. ALPINIST_KEEP=DIR keeps both trees of a failure in DIR/name.
func compareWithApk(t *testing.T, name string, repos []string, keys string, world []string) (ours string) {
	t.Helper()
	mini := minirootfs.RealDir(t, "3.19.4", "x86_64")
	ref := filepath.Join(t.TempDir(), "ref")
	args := []string{"add", "--root", ref, "--initdb", "--no-network", "--no-cache", "--keys-dir", keys}
	for _, r := range repos {
		args = append(args, "--repository", r)
	}
	out, err := minirootfs.HostApk(mini, append(args, world...)...)
	if err != nil {
		t.Fatalf("apk add: %v\n%s", err, out)
	}
	target := filepath.Join(t.TempDir(), "ours")
	log, err := install(t, diskFrom(t, repos, keys, "x86_64", repos, world...), target)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, log)
	}
	want, err := treecmp.ReadDir(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := treecmp.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	if d := treecmp.Diff(want, got, allowed); len(d) > 0 {
		t.Errorf("%d differences from apk-tools:\n%s", len(d), strings.Join(d, "\n"))
		if k := os.Getenv("ALPINIST_KEEP"); k != "" {
			os.RemoveAll(filepath.Join(k, name))
			os.MkdirAll(filepath.Join(k, name), 0o755)
			os.Rename(ref, filepath.Join(k, name, "ref"))
			os.Rename(target, filepath.Join(k, name, "ours"))
		}
	}
	t.Logf("%s: %d paths, as apk-tools makes them", name, len(want))
	return target
}
