package testrepo

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// apkEnv is a private minirootfs with the x86_64 repository and the test
// key copied in, and an empty target root.
type apkEnv struct {
	t      *testing.T
	mini   string // the minirootfs copy
	target string // the target root, as seen from the host
}

func newApkEnv(t *testing.T) *apkEnv {
	repo := Generated(t)
	minirootfs.CanChroot(t)
	mini := minirootfs.Copy(t)
	for _, c := range [][2]string{
		{filepath.Join(repo, "main", "x86_64"), filepath.Join(mini, "repo", "main", "x86_64")},
		{filepath.Join(repo, "keys"), filepath.Join(mini, "testkeys")},
	} {
		if err := os.MkdirAll(filepath.Dir(c[1]), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", c[0], c[1]).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
	}
	// No network repositories: only -X /repo/main.
	if err := os.WriteFile(filepath.Join(mini, "etc/apk/repositories"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(mini, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	return &apkEnv{t: t, mini: mini, target: target}
}

// apk runs the real apk-tools on the target root with only the test key
// and the generated repository.
func (e *apkEnv) apk(args ...string) (string, error) {
	base := []string{"--root", "/target", "--no-network", "--no-cache", "--keys-dir", "/testkeys",
		"-X", "/repo/main", "--arch", "x86_64"}
	out, err := minirootfs.Apk(e.mini, append(base, args...)...)
	e.t.Logf("apk %s:\n%s", strings.Join(args, " "), out)
	return out, err
}

func (e *apkEnv) path(p string) string { return filepath.Join(e.target, p) }

func (e *apkEnv) read(p string) string {
	e.t.Helper()
	data, err := os.ReadFile(e.path(p))
	if err != nil {
		e.t.Error(err)
	}
	return string(data)
}

func (e *apkEnv) run(argv ...string) string {
	e.t.Helper()
	out, err := exec.Command("chroot", append([]string{e.target}, argv...)...).CombinedOutput()
	if err != nil {
		e.t.Errorf("chroot %s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// TestRealApkInstall has Alpine's real apk-tools install packages from
// the generated x86_64 repository into an empty root, trusting only the
// test key, and checks what the packages and their scripts did.
func TestRealApkInstall(t *testing.T) {
	e := newApkEnv(t)
	out, err := e.apk("add", "--initdb", "alpine-base", "linux-virt", "syslinux", "grub-efi",
		"alpinist-test-scripts", "alpinist-test-trigger", "alpinist-test-hook", "alpinist-test-consumer",
		"alpinist-test-if-a", "alpinist-test-if-b", "alpinist-test-owner", "alpinist-test-replacer",
		"alpinist-test-conflict-a", "alpinist-test-hardlinks", "alpinist-test-xattr",
		"alpinist-test-emptydirs", "alpinist-test-large", "alpinist-test-prio",
		"alpinist-test-versioned", "alpinist-test-noarch", "tzdata", ServicePackage)
	if err != nil {
		t.Fatalf("apk add: %v", err)
	}
	for _, bad := range []string{"UNTRUSTED", "ERROR", "WARNING", "BAD signature"} {
		if strings.Contains(out, bad) {
			t.Errorf("apk add printed %s", bad)
		}
	}
	for _, want := range []string{"alpinist-test-if-both", "alpinist-test-prio-b", "alpinist-test-versioned (2.0.0-r0)", "busybox", "alpine-baselayout-data"} {
		if !strings.Contains(out, want) {
			t.Errorf("apk add did not install %s", want)
		}
	}

	// busybox's post-install ran (natively) and made the applet links.
	if l, err := os.Readlink(e.path("bin/ls")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/ls -> %q, %v (busybox --install -s did not run)", l, err)
	}
	if l, _ := os.Readlink(e.path("bin/sh")); l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q", l)
	}
	fi, err := os.Stat(e.path("etc/shadow"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o640 || st.Uid != 0 || st.Gid != 42 {
		t.Errorf("etc/shadow: %v %d:%d, want 0640 0:42", fi.Mode(), st.Uid, st.Gid)
	}
	for p, mode := range map[string]os.FileMode{"tmp": os.ModeSticky | 0o777, "var/tmp": os.ModeSticky | 0o777, "root": 0o700, "var/empty": 0o555,
		"var/lib/alpinist-test-empty/private": 0o700, "var/lib/alpinist-test-empty/setgid": os.ModeSetgid | 0o775} {
		fi, err := os.Lstat(e.path(p))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSticky | os.ModeSetgid | os.ModeDir); got != mode|os.ModeDir {
			t.Errorf("%s: mode %v, want %v", p, got, mode|os.ModeDir)
		}
	}
	if l, _ := os.Readlink(e.path("var/run")); l != "/run" {
		t.Errorf("var/run -> %q", l)
	}
	if !strings.Contains(e.read("etc/os-release"), "ID=alpine") {
		t.Error("etc/os-release lacks ID=alpine")
	}

	// Scripts: pre-install ran before the files were there, post-install after.
	if got := e.read("var/lib/alpinist-test/scripts.pre-install"); got != "pre-install "+TestVersion+" payload=absent\n" {
		t.Errorf("pre-install marker %q", got)
	}
	if got := e.read("var/lib/alpinist-test/scripts.post-install"); got != "post-install "+TestVersion+" payload=present\n" {
		t.Errorf("post-install marker %q", got)
	}
	if got := e.read("var/lib/alpinist-test/trigger.log"); !strings.Contains(got, HooksDir) {
		t.Errorf("trigger log %q does not name %s", got, HooksDir)
	}
	if got := e.read(SharedFile); got != "from alpinist-test-replacer\n" {
		t.Errorf("%s = %q, want the replacer's", SharedFile, got)
	}
	var inodes []uint64
	for _, p := range []string{"usr/share/alpinist-test/hardlinks/a", "usr/share/alpinist-test/hardlinks/b", "usr/share/alpinist-test/hardlinks/c"} {
		fi, err := os.Stat(e.path(p))
		if err != nil {
			t.Fatal(err)
		}
		inodes = append(inodes, fi.Sys().(*syscall.Stat_t).Ino)
	}
	if inodes[0] != inodes[1] || inodes[0] != inodes[2] {
		t.Errorf("hard links: inodes %v", inodes)
	}
	capv := make([]byte, 64)
	n, err := syscall.Getxattr(e.path(CapFile), "security.capability", capv)
	if err != nil || hex.EncodeToString(capv[:n]) != hex.EncodeToString(CapNetRawEP()) {
		t.Errorf("%s security.capability = %x, %v", CapFile, capv[:max(n, 0)], err)
	}
	f, err := os.Open(e.path(LargeFile))
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := sha256.New(), sha256.New()
	if _, err := io.Copy(h1, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := io.Copy(h2, LargeContent()); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(h1.Sum(nil)) != hex.EncodeToString(h2.Sum(nil)) {
		t.Error("large file content differs from LargeContent")
	}
	if got := e.run("/usr/bin/alpinist-hello"); got != "hello from alpinist\n" {
		t.Errorf("alpinist-hello printed %q", got)
	}
	// tzdata's zones, through Debian's relative links too; busybox's
	// (static glibc) date reads them.
	if l, err := os.Readlink(e.path(ZoneinfoDir + "/UTC")); err != nil || l != "Etc/UTC" {
		t.Errorf("%s/UTC -> %q, %v", ZoneinfoDir, l, err)
	}
	for _, z := range TzdataZones {
		if fi, err := os.Stat(e.path(ZoneinfoDir + "/" + z)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s/%s: %v", ZoneinfoDir, z, err)
		}
	}
	if got := e.run("/bin/sh", "-c", "TZ=America/New_York date -d @0 +%Z; TZ=Europe/Paris date -d @0 +%H:%M"); got != "EST\n01:00\n" {
		t.Errorf("date with tzdata's zones printed %q, want EST and 01:00", got)
	}
	// The OpenRC service: an executable openrc-run script and its settings.
	if fi, err := os.Stat(e.path(ServiceScript)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: %v, %v; want mode 0755", ServiceScript, fi, err)
	} else if !strings.HasPrefix(e.read(ServiceScript), "#!/sbin/openrc-run\n") {
		t.Errorf("%s is not an openrc-run script", ServiceScript)
	}
	if fi, err := os.Stat(e.path(ServiceConf)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("%s: %v, %v; want mode 0644", ServiceConf, fi, err)
	}
	e.run("/bin/sh", "-n", ServiceScript)

	kver := strings.TrimSpace(e.read("usr/share/kernel/virt/kernel.release"))
	if _, err := os.Stat(e.path("lib/modules/" + kver + "/kernel/drivers/virtio/virtio_pci.ko.gz")); err != nil {
		t.Error(err)
	}

	// The bundled-glibc tools run on this busybox-only system.
	if got := e.run("/sbin/extlinux", "--version"); !strings.Contains(got, "extlinux") && !strings.Contains(got, "6.04") {
		t.Errorf("extlinux --version printed %q", got)
	}
	if got := e.run("/usr/bin/grub-mkimage", "--version"); !strings.Contains(got, "GRUB") {
		t.Errorf("grub-mkimage --version printed %q", got)
	}
	e.run("/usr/bin/grub-mkimage", "-O", "x86_64-efi", "-o", "/tmp/bootx64.efi", "-p", "/boot/grub", "part_gpt", "fat", "ext2", "normal", "linux")
	if fi, err := os.Stat(e.path("tmp/bootx64.efi")); err != nil || fi.Size() < 64<<10 {
		t.Errorf("grub-mkimage made no EFI image: %v", err)
	}

	// The installed database is consistent with the files.
	if out, err := e.apk("audit", "--system"); err != nil {
		t.Errorf("apk audit: %v", err)
	} else {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			// busybox's applet links and the trigger log are made by scripts.
			if l != "" && !strings.HasPrefix(l, "A bin/") && !strings.HasPrefix(l, "A sbin/") && !strings.HasPrefix(l, "A usr/") &&
				!strings.Contains(l, "var/lib/alpinist-test") && !strings.Contains(l, "lib/modules/") {
				t.Errorf("apk audit: %s", l)
			}
		}
	}

	// Refusals the repository is there to provoke.
	if out, err := e.apk("add", "alpinist-test-conflict-b"); err == nil || !strings.Contains(out, "conflict") {
		t.Errorf("installing alpinist-test-conflict-b next to -conflict-a: err %v", err)
	}
	if _, err := e.apk("add", "alpinist-test-virtual"); err == nil {
		t.Error("apk chose a provider of the ambiguous alpinist-test-virtual")
	}
	out, err = e.apk("add", "alpinist-test-failing")
	if err == nil || !strings.Contains(out, "alpinist-test-failing") || !strings.Contains(out, "post-install") {
		t.Errorf("alpinist-test-failing: err %v", err)
	}
	if _, err := os.Stat(e.path("usr/share/alpinist-test/failing.txt")); err != nil {
		t.Errorf("alpinist-test-failing's files: %v", err)
	}
}
