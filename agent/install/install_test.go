package install

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alpinist/alpinist/agent/export"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/apk/solver"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
)

// disk resolves world against the generated x86_64 repository, fetches
// the packages and writes a package disk, as the host does for a build.
func disk(t *testing.T, world ...string) string {
	t.Helper()
	dir := testrepo.Generated(t)
	return diskFrom(t, []string{filepath.Join(dir, "main")}, filepath.Join(dir, "keys"), "x86_64", []string{"/repo/main"}, world...)
}

// diskFrom resolves world against the repositories (directories holding
// ARCH/APKINDEX.tar.gz) with the keys of keysDir, fetches the packages
// and writes a package disk whose /etc/apk/repositories is repoLines.
func diskFrom(t *testing.T, repos []string, keysDir, arch string, repoLines []string, world ...string) string {
	t.Helper()
	keys, err := sign.LoadKeyring(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	cache, _ := repo.OpenCache(t.TempDir())
	c := &repo.Client{Keys: keys, Cache: cache}
	var srepos []solver.Repository
	var rs []repo.Repository
	for _, u := range repos {
		r := repo.Repository{URL: u}
		idx, err := c.Index(context.Background(), r, arch)
		if err != nil {
			t.Fatal(err)
		}
		srepos = append(srepos, solver.Repository{Name: r.URL, Packages: idx.Packages})
		rs = append(rs, r)
	}
	var deps []apk.Dependency
	for _, w := range world {
		d, err := apk.ParseDependency(w)
		if err != nil {
			t.Fatal(err)
		}
		deps = append(deps, d)
	}
	installs, err := solver.Solve(srepos, deps)
	if err != nil {
		t.Fatal(err)
	}
	var items []repo.Item
	m := pkgdisk.Manifest{Arch: arch, World: world, Repositories: repoLines, SourceDateEpoch: 1700000000}
	for _, in := range installs {
		items = append(items, repo.Item{Repository: rs[in.Repository], Arch: arch, Package: in.Package})
		m.Packages = append(m.Packages, pkgdisk.Package{Name: in.Package.Name, Version: in.Package.Version, Checksum: apk.EncodeChecksum(in.Package.Checksum), Size: in.Package.Size, Arch: in.Package.Arch, Tag: in.Tag})
	}
	paths, err := c.Fetch(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	pems := map[string][]byte{}
	ents, err := os.ReadDir(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".pub") {
			pems[e.Name()], _ = os.ReadFile(filepath.Join(keysDir, e.Name()))
		}
	}
	return writeDisk(t, m, pems, keys, paths)
}

// writeDisk writes a package disk of the package files at paths, prepared
// as the host prepares them, and returns its path.
func writeDisk(t *testing.T, m pkgdisk.Manifest, pems map[string][]byte, keys *sign.Keyring, paths []string) string {
	t.Helper()
	m.Prepared = true
	f, err := os.Create(filepath.Join(t.TempDir(), "pkgs.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pkgdisk.NewWriter(f, m, pems)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if err := w.AddPackage(p, keys); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") != "" {
		t.Fatal("installing with owners and chroot scripts needs root; CI runs as root")
	}
	if os.Geteuid() != 0 || runtime.GOARCH != "amd64" {
		t.Skip("installing with owners and chroot scripts needs root on an x86_64 host (the agent runs as root in the VM)")
	}
}

// install installs the disk into target as the agent does, and checks
// that the export, naming the files the host has, gives the same tar
// once the host filled them in as the export of every byte.
func install(t *testing.T, disk, target string) (string, error) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// As the agent reads it: from the file, the files' bytes copied by
	// the kernel (TestRefsSeeChanges reads a disk as a stream).
	d, err := pkgdisk.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	if d.Disk() != f {
		t.Fatal("pkgdisk.Open: no disk file")
	}
	var log bytes.Buffer
	refs := NewRefs()
	err = (&Installer{Root: target, Log: &log, Refs: refs}).Install(d)
	if err == nil {
		checkRefs(t, f, target, refs)
	}
	return log.String(), err
}

// checkRefs exports target twice, with every byte and with refs, and
// fails unless the second, filled in from the disk, is the first.
func checkRefs(t *testing.T, disk *os.File, target string, refs *Refs) {
	t.Helper()
	st, err := disk.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var whole, withRefs, filled bytes.Buffer
	if err := export.WriteTar(&whole, target, export.Options{Epoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	if err := export.WriteTar(&withRefs, target, export.Options{Epoch: 1700000000, Ref: refs.Lookup}); err != nil {
		t.Fatal(err)
	}
	refSize := withRefs.Len()
	tr, tw := tar.NewReader(&withRefs), tar.NewWriter(&filled)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == export.RefType {
			n++
		}
		r, err := export.Fill(h, tr, disk, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	if !bytes.Equal(whole.Bytes(), filled.Bytes()) {
		t.Errorf("the export with refs, filled in from the package disk, differs from the export of every byte (%d and %d bytes)", filled.Len(), whole.Len())
	}
	if n == 0 {
		t.Errorf("the export named no file on the package disk")
	}
	t.Logf("%d of the exported files' bytes were left on the package disk (%d of %d bytes of tar)", n, refSize, whole.Len())
}

// TestInstallTestPackages installs the testpkgs world into an empty root
// and lets Alpine's real apk-tools judge the result.
func TestInstallTestPackages(t *testing.T) {
	needRoot(t)
	world := []string{"busybox", "alpine-baselayout", "alpinist-test-scripts", "alpinist-test-trigger", "alpinist-test-hook",
		"alpinist-test-consumer", "alpinist-test-if-a", "alpinist-test-if-b", "alpinist-test-owner", "alpinist-test-replacer",
		"alpinist-test-hardlinks", "alpinist-test-xattr", "alpinist-test-emptydirs", "alpinist-test-noarch"}
	data := disk(t, world...)
	mini := ""
	target := filepath.Join(t.TempDir(), "target")
	if _, err := os.Stat(minirootfs.Tarball(t)); err == nil {
		mini = minirootfs.Copy(t)
		target = filepath.Join(mini, "target")
	}
	log, err := install(t, data, target)
	t.Logf("install log:\n%s", log)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(target, "bin/ls")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/ls -> %q %v: busybox's post-install did not run", l, err)
	}
	read := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(target, p))
		return string(b)
	}
	if got := read("var/lib/alpinist-test/scripts.pre-install"); !strings.Contains(got, "payload=absent") {
		t.Errorf("pre-install marker %q", got)
	}
	if got := read("var/lib/alpinist-test/scripts.post-install"); !strings.Contains(got, "payload=present") {
		t.Errorf("post-install marker %q", got)
	}
	if got := read("var/lib/alpinist-test/trigger.log"); !strings.Contains(got, testrepo.HooksDir) {
		t.Errorf("trigger log %q", got)
	}
	if got := read(testrepo.SharedFile); got != "from alpinist-test-replacer\n" {
		t.Errorf("replaces: %q", got)
	}
	if fi, err := os.Stat(filepath.Join(target, "etc/shadow")); err != nil || fi.Mode().Perm() != 0o640 || fi.Sys().(*syscall.Stat_t).Gid != 42 {
		t.Errorf("etc/shadow: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(target, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp: %v %v", fi, err)
	}
	// apk writes the world sorted by name.
	sorted := slices.Clone(world)
	slices.SortFunc(sorted, apk.CompareNames)
	if read("etc/apk/world") != strings.Join(sorted, "\n")+"\n" {
		t.Errorf("world %q", read("etc/apk/world"))
	}
	if mini == "" {
		return
	}
	out, err := minirootfs.Apk(mini, "--root", "/target", "info", "-v")
	if err != nil {
		t.Fatalf("apk info: %v\n%s", err, out)
	}
	// (apk warns that /repo/main, the target's repository, is absent here.)
	var installed []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "WARNING") {
			installed = append(installed, l)
		}
	}
	slices.Sort(installed)
	t.Logf("apk info -v: %v", installed)
	if len(installed) < len(world) || !slices.Contains(installed, "busybox-1.35.0-r0") {
		t.Errorf("apk info lists %v", installed)
	}
	out, err = minirootfs.Apk(mini, "--root", "/target", "audit", "--packages")
	t.Logf("apk audit --packages:\n%s", out)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("apk audit --packages: %v\n%s", err, out)
	}
	if out, err := exec.Command("chroot", target, "/bin/sh", "-c", "/usr/bin/alpinist-hello").CombinedOutput(); err != nil || string(out) != "hello from alpinist\n" {
		t.Errorf("alpinist-hello: %v %q", err, out)
	}
}

func TestInstallFailures(t *testing.T) {
	needRoot(t)
	// A failing post-install fails the install and names the package and
	// shows the script's output.
	_, err := install(t, disk(t, "busybox", "alpinist-test-failing"), filepath.Join(t.TempDir(), "t"))
	if err == nil || !strings.Contains(err.Error(), "alpinist-test-failing-1.0.0-r0") || !strings.Contains(err.Error(), "post-install") || !strings.Contains(err.Error(), "fails on purpose") {
		t.Errorf("failing script: %v", err)
	}
}

// TestInstallFileConflict: two packages owning the same file, without
// replaces, fail the install naming the file and its owner, as apk does.
func TestInstallFileConflict(t *testing.T) {
	needRoot(t)
	k, err := sign.Generate("conflict", 2048)
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	m := pkgdisk.Manifest{Arch: "x86_64", SourceDateEpoch: 1}
	for _, name := range []string{"first", "second"} {
		meta := &apk.Package{Name: name, Version: "1-r0", Arch: "x86_64", BuildTime: 1}
		data := name + "\n"
		var b bytes.Buffer
		out, err := apkfile.Write(&b, meta, nil, []apkfile.Entry{
			{Path: "usr", Type: apkfile.TypeDir, Mode: 0o755}, {Path: "usr/share", Type: apkfile.TypeDir, Mode: 0o755},
			{Path: "usr/share/shared", Type: apkfile.TypeReg, Mode: 0o644, Size: int64(len(data)),
				Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }},
		}, apkfile.WriteOptions{Key: k, TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b.Bytes())
		m.Packages = append(m.Packages, pkgdisk.Package{Name: name, Version: "1-r0", Checksum: apk.EncodeChecksum(out.Checksum), Size: out.Size})
	}
	var paths []string
	for i, f := range files {
		p := filepath.Join(t.TempDir(), fmt.Sprintf("%d.apk", i))
		if err := os.WriteFile(p, f, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	kr := sign.NewKeyring()
	if err := kr.AddPEM(k.Name, k.PublicPEM()); err != nil {
		t.Fatal(err)
	}
	_, err = install(t, writeDisk(t, m, map[string][]byte{k.Name: k.PublicPEM()}, kr, paths), filepath.Join(t.TempDir(), "t"))
	if err == nil || !strings.Contains(err.Error(), "second-1-r0") || !strings.Contains(err.Error(), "/usr/share/shared owned by first-1-r0") {
		t.Errorf("got %v", err)
	}
}

// TestRefsSeeChanges: a file changed after the install, in place, with
// its size and mtime kept, is not one the host has any more.
func TestRefsSeeChanges(t *testing.T) {
	needRoot(t)
	f, err := os.Open(disk(t, "busybox", "alpine-baselayout"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := pkgdisk.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "t")
	refs := NewRefs()
	if err := (&Installer{Root: target, Refs: refs}).Install(d); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(target, "bin/busybox")
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := refs.Lookup(&st); !ok {
		t.Fatal("bin/busybox, as installed, is not on the package disk")
	}
	// One byte, in place, with the mtime set back: only the ctime tells.
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte{0}, 100); err != nil {
		t.Fatal(err)
	}
	w.Close()
	mtime := time.Unix(st.Mtim.Unix())
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	var after syscall.Stat_t
	if err := syscall.Lstat(p, &after); err != nil {
		t.Fatal(err)
	}
	if after.Size != st.Size || after.Mtim != st.Mtim {
		t.Fatalf("size or mtime changed: %v", after)
	}
	if _, _, ok := refs.Lookup(&after); ok {
		t.Error("bin/busybox, changed after the install, is still taken from the package disk")
	}
	checkRefs(t, f, target, refs)
}
