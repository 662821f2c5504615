package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/ulikunitz/xz"
)

// tarIndex reads a tar's (or .tar.gz's, .tar.xz's) headers and the files named in want.
func tarIndex(t *testing.T, p string, want ...string) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hs := map[string]*tar.Header{}
	data := map[string][]byte{}
	var r io.Reader = f
	if strings.HasSuffix(p, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	if strings.HasSuffix(p, ".xz") {
		xr, err := xz.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = xr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		hs[name] = h
		if slices.Contains(want, name) {
			data[name], _ = io.ReadAll(tr)
		}
	}
	return hs, data
}

// TestBuildDemo builds testdata/specs/demo.yaml for both arches under TCG
// and checks the rootfs tars: busybox of the right arch, its post-install
// applet links, the trigger's and the test scripts' effects, the apk
// database listing exactly the locked packages; for x86_64 the real
// apk-tools reads and audits the result. Then it boots its disk images.
func TestBuildDemo(t *testing.T) {
	td := generatedRepo(t)
	spec := filepath.Join(td, "specs", "demo.yaml")
	cache := t.TempDir()
	out := t.TempDir()
	arches := []string{"x86_64", "aarch64"} // demo.yaml's
	for _, arch := range arches {
		vmtest.Binary(t, arch)
	}
	res := mustCLI(t, "build", spec, "-o", out, "--cache", cache, "--output", "tar,raw,qcow2")
	t.Log(res)
	lock := mustCLI(t, "resolve", spec, "--locked", filepath.Join(out, "demo.lock"), "--cache", cache)
	for _, arch := range arches {
		t.Run(arch, func(t *testing.T) {
			tarPath := filepath.Join(out, "demo-"+arch+".tar")
			hs, data := tarIndex(t, tarPath, "bin/busybox", "lib/apk/db/installed", "var/lib/alpinist-test/scripts.post-install", "etc/apk/world")
			ef, err := elf.NewFile(bytes.NewReader(data["bin/busybox"]))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]elf.Machine{"x86_64": elf.EM_X86_64, "aarch64": elf.EM_AARCH64}[arch]
			if ef.Machine != want {
				t.Errorf("bin/busybox is %v", ef.Machine)
			}
			if h := hs["bin/ls"]; h == nil || h.Linkname != "/bin/busybox" {
				t.Errorf("bin/ls: %+v (busybox's post-install did not run)", h)
			}
			if !strings.Contains(string(data["var/lib/alpinist-test/scripts.post-install"]), "payload=present") {
				t.Errorf("post-install marker %q", data["var/lib/alpinist-test/scripts.post-install"])
			}
			// The database lists exactly the locked packages.
			var installed []string
			sc := bufio.NewScanner(bytes.NewReader(data["lib/apk/db/installed"]))
			name := ""
			for sc.Scan() {
				l := sc.Text()
				if v, ok := strings.CutPrefix(l, "P:"); ok {
					name = v
				}
				if v, ok := strings.CutPrefix(l, "V:"); ok {
					installed = append(installed, name+" "+v)
				}
			}
			var locked []string
			section := ""
			for _, l := range strings.Split(strings.TrimSpace(lock), "\n") {
				if s, ok := strings.CutPrefix(l, "# "); ok {
					section = s
					continue
				}
				if section == arch {
					f := strings.Fields(l)
					locked = append(locked, f[0]+" "+f[1])
				}
			}
			slices.Sort(installed)
			slices.Sort(locked)
			if strings.Join(installed, "\n") != strings.Join(locked, "\n") || len(locked) < 10 {
				t.Errorf("installed:\n%s\nlocked:\n%s", strings.Join(installed, "\n"), strings.Join(locked, "\n"))
			}
			for p, h := range hs {
				if h.ModTime.Unix() > 1704067200 || h.Uname != "" && h.Uname != "root" {
					t.Errorf("%s: time %v owner %s", p, h.ModTime, h.Uname)
				}
			}
		})
	}
	// The real apk-tools accepts the x86_64 result.
	t.Run("real apk", func(t *testing.T) {
		minirootfs.CanChroot(t)
		mini := minirootfs.Copy(t)
		target := filepath.Join(mini, "target")
		os.MkdirAll(target, 0o755)
		if o, err := runTar(filepath.Join(out, "demo-x86_64.tar"), target); err != nil {
			t.Fatalf("tar: %v %s", err, o)
		}
		o, err := minirootfs.Apk(mini, "--root", "/target", "info", "-v")
		if err != nil || !strings.Contains(o, "busybox-1.35.0-r0") || !strings.Contains(o, "linux-virt-") {
			t.Errorf("apk info: %v\n%s", err, o)
		}
		o, err = minirootfs.Apk(mini, "--root", "/target", "audit")
		if err != nil {
			t.Errorf("apk audit: %v\n%s", err, o)
		}
		for _, l := range strings.Split(strings.TrimSpace(o), "\n") {
			// Changes made on purpose: the test scripts' markers, and the
			// configuration of a spec with a disk (the serial console's
			// getty, DHCP on eth0).
			switch {
			case l == "", strings.Contains(l, "var/lib/alpinist-test"),
				l == "U etc/inittab", l == "A etc/network/interfaces", l == "D etc/apk/", l == "D etc/network/":
			default:
				t.Errorf("apk audit: %s", l)
			}
		}
	})
	// Building again gives the same bytes: the x86_64 build's outputs
	// are those of the two-arch build.
	again := t.TempDir()
	mustCLI(t, "build", spec, "-o", again, "--cache", cache, "--arch", "x86_64", "--output", "tar,raw,qcow2")
	a, b := fileSums(t, out), fileSums(t, again)
	for _, f := range []string{"demo-x86_64.tar", "demo-x86_64.raw", "demo-x86_64.qcow2"} {
		if a[f] == "" || a[f] != b[f] {
			t.Errorf("%s differs between two builds", f)
		}
	}

	// alpinist assemble makes the same disks from the rootfs tar alone,
	// with no VM: it boots them with what the rootfs has (EXTLINUX and
	// GRUB's EFI image).
	asm := t.TempDir()
	mustCLI(t, "assemble", filepath.Join(out, "demo-x86_64.tar"), "--name", "demo", "--arch", "x86_64", "-o", asm, "--output", "raw,qcow2,vmdk,ova,vhd,gce")
	c := fileSums(t, asm)
	for _, f := range []string{"demo-x86_64.raw", "demo-x86_64.qcow2"} {
		if a[f] != c[f] {
			t.Errorf("%s from alpinist assemble differs from the build's", f)
		}
	}
	// The VHD is the same disk, for qemu-img.
	checkConverted(t, filepath.Join(asm, "demo-x86_64.raw"), filepath.Join(asm, "demo-x86_64.vhd"), "vpc")
	checkConverted(t, filepath.Join(asm, "demo-x86_64.raw"), filepath.Join(asm, "demo-x86_64.vmdk"), "vmdk")
	if _, err := os.Stat(filepath.Join(asm, "demo-x86_64.ova")); err != nil {
		t.Error(err)
	}
	// An OVA is for x86: an aarch64 one is refused, saying why.
	if code, _, errs := cli(t, "assemble", filepath.Join(out, "demo-aarch64.tar"), "--name", "demo", "--arch", "aarch64", "-o", t.TempDir(), "--output", "ova"); code == 0 || !strings.Contains(errs, "x86_64 and x86") {
		t.Errorf("an aarch64 OVA: exit %d\n%s", code, errs)
	}

	// The disk images (GPT) boot to the system's login prompt: x86_64
	// with BIOS (SeaBIOS, gptmbr.bin, EXTLINUX) and UEFI (OVMF, GRUB),
	// aarch64 with UEFI (AAVMF, GRUB); all under TCG.
	// alpinist run picks UEFI for a disk with an ESP.
	for _, tc := range []struct {
		arch, flag string
		bios       bool
	}{{"x86_64", "--bios", true}, {"x86_64", "", false}, {"aarch64", "", false}} {
		t.Run(tc.arch+map[bool]string{true: " bios", false: " uefi"}[tc.bios], func(t *testing.T) {
			raw, img := filepath.Join(out, "demo-"+tc.arch+".raw"), filepath.Join(out, "demo-"+tc.arch+".qcow2")
			if !tc.bios {
				pt := checkDisk(t, raw, img)
				wantRoot := "LegacyBIOSBootable"
				if tc.arch != "x86_64" {
					wantRoot = ""
				}
				if pt.Label != "gpt" || len(pt.Partitions) != 2 || pt.Partitions[0].Type != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" || pt.Partitions[1].Attrs != wantRoot {
					t.Errorf("want a GPT with an ESP and a root partition (attributes %q): %+v", wantRoot, pt)
				}
			}
			bootToLogin(t, img, tc.arch, tc.flag, tc.bios)
		})
	}
}

// TestBuildFailingScript: a package whose script fails fails the build,
// naming the package and showing the script's output, and leaves nothing
// in the output directory.
func TestBuildFailingScript(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	spec := filepath.Join(dir, "failing.yaml")
	writeFile(t, spec, "name: failing\narch: [x86_64]\nrepositories: ["+repoDir+"/main]\nkeys: ["+repoDir+"/keys/]\npackages: [busybox, alpinist-test-failing]\n", 0o644)
	out := filepath.Join(dir, "out")
	code, _, errs := cli(t, "build", spec, "-o", out, "--cache", t.TempDir())
	if code == 0 || !strings.Contains(errs, "alpinist-test-failing-1.0.0-r0") || !strings.Contains(errs, "fails on purpose") {
		t.Errorf("exit %d:\n%s", code, errs)
	}
	left, _ := os.ReadDir(out)
	if len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("left in the output directory: %v", names)
	}
}

func runTar(tarball, dir string) ([]byte, error) {
	return exec.Command("tar", "-xpf", tarball, "-C", dir).CombinedOutput()
}

// TestBuildTestPackages builds testpkgs.yaml for x86_64 and checks what
// the demo does not exercise: the capability xattr, hard links, special
// directory modes and owners, the trigger, replaces, a 64 MiB file.
func TestBuildTestPackages(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	out := t.TempDir()
	mustCLI(t, "build", filepath.Join(td, "specs", "testpkgs.yaml"), "-o", out, "--arch", "x86_64", "--cache", t.TempDir())
	hs, data := tarIndex(t, filepath.Join(out, "testpkgs-x86_64.tar"), "var/lib/alpinist-test/trigger.log", strings.TrimPrefix(testrepo.SharedFile, "/"))
	if h := hs[strings.TrimPrefix(testrepo.CapFile, "/")]; h == nil || h.PAXRecords["SCHILY.xattr.security.capability"] != string(testrepo.CapNetRawEP()) {
		t.Errorf("%s: %+v", testrepo.CapFile, h)
	}
	if h := hs["usr/share/alpinist-test/hardlinks/b"]; h == nil || h.Typeflag != tar.TypeLink {
		t.Errorf("hard link: %+v", h)
	}
	if h := hs["var/lib/alpinist-test-empty/setgid"]; h == nil || h.Mode != 0o2775 || h.Gid != 42 {
		t.Errorf("setgid dir: %+v", h)
	}
	if h := hs["tmp"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp: %+v", h)
	}
	if h := hs[strings.TrimPrefix(testrepo.LargeFile, "/")]; h == nil || h.Size != 64<<20 {
		t.Errorf("large file: %+v", h)
	}
	if !strings.Contains(string(data["var/lib/alpinist-test/trigger.log"]), testrepo.HooksDir) {
		t.Errorf("trigger log %q", data["var/lib/alpinist-test/trigger.log"])
	}
	if got := string(data[strings.TrimPrefix(testrepo.SharedFile, "/")]); got != "from alpinist-test-replacer\n" {
		t.Errorf("replaces: %q", got)
	}
}

// dbPackages lists NAME-VERSION of a rootfs tar's apk database, sorted.
func dbPackages(t *testing.T, tarPath string) []string {
	t.Helper()
	_, data := tarIndex(t, tarPath, "lib/apk/db/installed")
	var out []string
	name := ""
	for _, l := range strings.Split(string(data["lib/apk/db/installed"]), "\n") {
		if v, ok := strings.CutPrefix(l, "P:"); ok {
			name = v
		}
		if v, ok := strings.CutPrefix(l, "V:"); ok {
			out = append(out, name+"-"+v)
		}
	}
	slices.Sort(out)
	return out
}

// TestBuildWithApkTools builds with `installer: apk-tools` (Alpine's real
// apk from the minirootfs fixture, inside the x86_64 VM) and with our
// installer: both list the same packages, and apk's scripts and triggers
// ran.
func TestBuildWithApkTools(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	mini := minirootfs.Tarball(t)
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	body := "arch: [x86_64]\nrepositories: [" + repoDir + "/main]\nkeys: [" + repoDir + "/keys/]\n" +
		"packages: [alpine-base, busybox, alpinist-test-scripts, alpinist-test-consumer, alpinist-test-trigger, alpinist-test-hook]\n"
	ours := filepath.Join(dir, "ours.yaml")
	theirs := filepath.Join(dir, "theirs.yaml")
	writeFile(t, ours, "name: ours\n"+body, 0o644)
	writeFile(t, theirs, "name: theirs\n"+body+"installer:\n  type: apk-tools\n  minirootfs: "+mini+"\n", 0o644)
	cache := t.TempDir()
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", ours, "-o", out, "--cache", cache)
	mustCLI(t, "build", theirs, "-o", out, "--cache", cache)
	a, b := dbPackages(t, filepath.Join(out, "ours-x86_64.tar")), dbPackages(t, filepath.Join(out, "theirs-x86_64.tar"))
	if strings.Join(a, " ") != strings.Join(b, " ") || len(a) < 8 {
		t.Errorf("our installer: %v\napk-tools: %v", a, b)
	}
	hs, data := tarIndex(t, filepath.Join(out, "theirs-x86_64.tar"), "var/lib/alpinist-test/trigger.log", "etc/apk/world")
	if h := hs["bin/ls"]; h == nil || h.Linkname != "/bin/busybox" {
		t.Errorf("bin/ls: %+v", h)
	}
	if !strings.Contains(string(data["var/lib/alpinist-test/trigger.log"]), testrepo.HooksDir) {
		t.Errorf("trigger log %q", data["var/lib/alpinist-test/trigger.log"])
	}
	// apk writes the world sorted, and so do we.
	_, ourData := tarIndex(t, filepath.Join(out, "ours-x86_64.tar"), "etc/apk/world")
	if w := string(data["etc/apk/world"]); !strings.HasPrefix(w, "alpine-base\nalpinist-test-") || w != string(ourData["etc/apk/world"]) {
		t.Errorf("world %q, ours %q", w, ourData["etc/apk/world"])
	}
	// A wrong checksum for the minirootfs is refused before any VM runs.
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "name: bad\n"+body+"installer:\n  type: apk-tools\n  minirootfs: "+mini+"\n  sha256: "+strings.Repeat("0", 64)+"\n", 0o644)
	if code, _, errs := cli(t, "build", bad, "-o", filepath.Join(dir, "bad"), "--cache", cache); code == 0 || !strings.Contains(errs, "checksum") {
		t.Errorf("bad checksum: %d %s", code, errs)
	}
}

// TestBuildFailingPreInstall: a package (made here with pkg build, in a
// second repository) whose pre-install fails stops the build before its
// files are installed, naming it.
func TestBuildFailingPreInstall(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	w := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	mustCLI(t, "repo", "keygen", "--out", filepath.Join(w, "keys"), "--name", "pre", "--bits", "2048")
	os.MkdirAll(filepath.Join(w, "pub"), 0o755)
	os.Rename(filepath.Join(w, "keys", "pre.rsa.pub"), filepath.Join(w, "pub", "pre.rsa.pub"))
	writeFile(t, filepath.Join(w, "root", "usr/share/pre/file"), "x\n", 0o644)
	writeFile(t, filepath.Join(w, "scripts", "pre-install"), "#!/bin/sh\necho refusing to install on purpose\nexit 3\n", 0o755)
	repo := filepath.Join(w, "repo", "x86_64")
	mustCLI(t, "pkg", "build", filepath.Join(w, "root"), "--name", "pre-fails", "--version", "1.0-r0", "--arch", "x86_64",
		"--key", filepath.Join(w, "keys", "pre.rsa"), "-o", repo, "--scripts", filepath.Join(w, "scripts"), "--depends", "/bin/sh")
	mustCLI(t, "repo", "index", repo, "--key", filepath.Join(w, "keys", "pre.rsa"))
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	spec := filepath.Join(w, "pre.yaml")
	writeFile(t, spec, "name: pre\narch: [x86_64]\nrepositories: ["+repoDir+"/main, "+filepath.Join(w, "repo")+"]\nkeys: ["+repoDir+"/keys/, "+filepath.Join(w, "pub")+"]\npackages: [busybox, pre-fails]\n", 0o644)
	out := filepath.Join(w, "out")
	code, _, errs := cli(t, "build", spec, "-o", out, "--cache", t.TempDir())
	if code == 0 || !strings.Contains(errs, "pre-fails-1.0-r0") || !strings.Contains(errs, "pre-install") || !strings.Contains(errs, "refusing to install on purpose") {
		t.Errorf("exit %d:\n%s", code, errs)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("left in the output directory: %d entries", len(left))
	}
}

// TestBuildConfig: hostname and run steps are applied in the VM after
// the install; a failing run step fails the build showing the command and
// its output.
func TestBuildConfig(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "aarch64")
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	base := "arch: [aarch64]\nrepositories: [" + repoDir + "/main]\nkeys: [" + repoDir + "/keys/]\npackages: [alpine-base, alpinist-test-service]\n"
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "name: good\n"+base+"hostname: builder.example\nservices: {boot: [alpinist-test]}\nrun:\n  - echo \"$(uname -m) $(id -u)\" > /etc/run-step\n  - ls /bin/ls >> /etc/run-step\n"+
		"groups:\n  - {name: devs, gid: 2000}\n"+
		"users:\n  - name: alice\n    uid: 1500\n    groups: [devs]\n    password: $6$salt$abcdefghijklmnop\n    ssh_authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIexample alice@host\"]\n  - name: bob\n", 0o644)
	out := filepath.Join(dir, "out")
	cache := t.TempDir()
	mustCLI(t, "build", good, "-o", out, "--cache", cache)
	hs, data := tarIndex(t, filepath.Join(out, "good-aarch64.tar"), "etc/hostname", "etc/hosts", "etc/run-step", "etc/passwd", "etc/group", "etc/shadow", "home/alice/.ssh/authorized_keys")
	for file, want := range map[string][]string{
		"etc/passwd":                      {"alice:x:1500:1500:", ":/home/alice:/bin/sh", "bob:x:"},
		"etc/group":                       {"devs:x:2000:alice", "alice:x:1500:"},
		"etc/shadow":                      {"alice:$6$salt$abcdefghijklmnop:", "bob:!"},
		"home/alice/.ssh/authorized_keys": {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIexample alice@host\n"},
	} {
		for _, w := range want {
			if !strings.Contains(string(data[file]), w) {
				t.Errorf("%s lacks %q:\n%s", file, w, data[file])
			}
		}
	}
	if h := hs["home/alice"]; h == nil || h.Uid != 1500 || h.Gid != 1500 {
		t.Errorf("home/alice: %+v", h)
	}
	if h := hs["home/alice/.ssh"]; h == nil || h.Mode != 0o700 || h.Uid != 1500 {
		t.Errorf(".ssh: %+v", h)
	}
	if h := hs["home/alice/.ssh/authorized_keys"]; h == nil || h.Mode != 0o600 || h.Uid != 1500 {
		t.Errorf("authorized_keys: %+v", h)
	}
	if string(data["etc/hostname"]) != "builder.example\n" || !strings.Contains(string(data["etc/hosts"]), "127.0.0.1\tbuilder.example builder localhost.localdomain localhost\n") {
		t.Errorf("hostname %q hosts %q", data["etc/hostname"], data["etc/hosts"])
	}
	if h := hs["etc/runlevels/boot/"+testrepo.ServiceName]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != testrepo.ServiceScript {
		t.Errorf("runlevel link: %+v", h)
	}
	if string(data["etc/run-step"]) != "aarch64 0\n/bin/ls\n" {
		t.Errorf("run step output %q (runs natively on the target arch as root)", data["etc/run-step"])
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "name: bad\n"+base+"run:\n  - echo about to fail; exit 7\n", 0o644)
	code, _, errs := cli(t, "build", bad, "-o", filepath.Join(dir, "badout"), "--cache", cache)
	if code == 0 || !strings.Contains(errs, "run step 1 (echo about to fail; exit 7)") || !strings.Contains(errs, "about to fail") {
		t.Errorf("exit %d: %s", code, errs)
	}
}
