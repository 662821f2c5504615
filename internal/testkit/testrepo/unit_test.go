package testrepo

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/apk/version"
)

func TestAPKVersion(t *testing.T) {
	for _, tc := range []struct{ deb, want string }{
		{"1:1.35.0-4+deb12u1+b1", "1.35.0-r0"},
		{"2.06-13+deb12u2", "2.06-r0"},
		{"3:6.04~git20190206.bf6db5b4+dfsg1-3", "6.04_git20190206-r0"},
		{"3:6.04~git20190206.bf6db5b4+dfsg1-3+b1", "6.04_git20190206-r0"},
		{"6.1.192-2", "6.1.192-r0"},
		{"2.36-9+deb12u14", "2.36-r0"},
		{"5.4.1-1+deb12u2", "5.4.1-r0"},
		{"2:1.02.185-2", "1.02.185-r0"},
		{"252.39-1~deb12u2", "252.39-r0"},
		{"1.2~rc3-1", "1.2_rc3-r0"},
		{"1.0~beta-1", "1.0_beta-r0"},
		{"1.0~foo1-1", "1.0-r0"},
		{"20230311", "20230311-r0"},
		{"1.2.3a-1", "1.2.3a-r0"},
		{"1.2.3.dfsg-1", "1.2.3-r0"},
	} {
		got, err := APKVersion(tc.deb)
		if err != nil {
			t.Errorf("APKVersion(%q): %v", tc.deb, err)
			continue
		}
		if got != tc.want {
			t.Errorf("APKVersion(%q) = %q, want %q", tc.deb, got, tc.want)
		}
		if !version.Valid(got) {
			t.Errorf("APKVersion(%q) = %q, which is not a valid apk version", tc.deb, got)
		}
	}
	for _, bad := range []string{"", "abc-1", "1:~rc1-2"} {
		if v, err := APKVersion(bad); err == nil {
			t.Errorf("APKVersion(%q) = %q, want an error", bad, v)
		}
	}
}

func TestParseAptShow(t *testing.T) {
	out := []byte(`Package: busybox-static
Architecture: arm64
Version: 1:1.35.0-4+deb12u1+b1
Depends: libc6 (>= 2.34), libfoo1 | libbar2, gettext-base
Filename: pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_arm64.deb
SHA256: abcd
Description: Standalone rescue shell
 with tons of builtin utilities
Description-md5: x

Package: syslinux-common
Architecture: all
Version: 3:6.04~git20190206.bf6db5b4+dfsg1-3
Filename: pool/main/s/syslinux/syslinux-common_6.04~git20190206.bf6db5b4+dfsg1-3_all.deb
SHA256: ef01
`)
	debs := parseAptShow(out)
	if len(debs) != 2 {
		t.Fatalf("got %d paragraphs, want 2", len(debs))
	}
	d := debs[0]
	if d.Package != "busybox-static" || d.Arch != "arm64" || d.Version != "1:1.35.0-4+deb12u1+b1" ||
		d.Filename != "busybox-static_1.35.0-4+deb12u1+b1_arm64.deb" || d.SHA256 != "abcd" {
		t.Errorf("first paragraph: %+v", d)
	}
	if got, want := DependsNames(d.Depends), []string{"libc6", "libfoo1", "gettext-base"}; !slices.Equal(got, want) {
		t.Errorf("DependsNames = %v, want %v", got, want)
	}
	if debs[1].Arch != "all" || debs[1].Depends != "" {
		t.Errorf("second paragraph: %+v", debs[1])
	}
	if got := DependsNames("libc6:any (>= 2), python3:any"); !slices.Equal(got, []string{"libc6", "python3"}) {
		t.Errorf("DependsNames with arch qualifiers = %v", got)
	}
}

func TestDebArch(t *testing.T) {
	for a, want := range map[string]string{"x86_64": "amd64", "aarch64": "arm64", "x86": "i386", "armv7": "armhf", "armhf": "armhf", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"} {
		if got, err := DebArch(a); err != nil || got != want {
			t.Errorf("DebArch(%s) = %q, %v", a, got, err)
		}
	}
	if _, err := DebArch("loongarch64"); err == nil || !strings.Contains(err.Error(), "x86_64, x86, aarch64") {
		t.Errorf("DebArch(loongarch64): %v", err)
	}
}

// fakeKO builds a minimal ELF64 relocatable file with a .modinfo section.
func fakeKO(modinfo string) []byte {
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	data := []byte(modinfo)
	const ehsize, shentsize = 64, 64
	dataOff := ehsize
	shstrOff := dataOff + len(data)
	shOff := (shstrOff + len(shstr) + 7) &^ 7
	buf := make([]byte, shOff+3*shentsize)
	copy(buf, "\x7fELF")
	buf[4], buf[5], buf[6] = 2, 1, 1 // 64-bit, little-endian, version 1
	le := binary.LittleEndian
	le.PutUint16(buf[16:], 1)  // ET_REL
	le.PutUint16(buf[18:], 62) // EM_X86_64
	le.PutUint32(buf[20:], 1)
	le.PutUint64(buf[40:], uint64(shOff))
	le.PutUint16(buf[52:], ehsize)
	le.PutUint16(buf[58:], shentsize)
	le.PutUint16(buf[60:], 3) // shnum
	le.PutUint16(buf[62:], 2) // shstrndx
	copy(buf[dataOff:], data)
	copy(buf[shstrOff:], shstr)
	sh := func(i int, name, typ uint32, off, size int) {
		b := buf[shOff+i*shentsize:]
		le.PutUint32(b[0:], name)
		le.PutUint32(b[4:], typ)
		le.PutUint64(b[24:], uint64(off))
		le.PutUint64(b[32:], uint64(size))
		le.PutUint64(b[48:], 1)
	}
	sh(1, 1, 1, dataOff, len(data))    // .modinfo, SHT_PROGBITS
	sh(2, 10, 3, shstrOff, len(shstr)) // .shstrtab, SHT_STRTAB
	return buf
}

func TestReadModInfo(t *testing.T) {
	ko := fakeKO("license=GPL\x00depends=virtio,virtio_ring\x00softdep=pre: crc32c post: foo-bar\x00alias=virtio:d00000002v*\x00alias=devname:vda\x00name=virtio_blk\x00vermagic=6.1.0 SMP\x00")
	m, err := ReadModInfo(bytes.NewReader(ko), "kernel/drivers/block/virtio_blk.ko")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "virtio_blk" || !slices.Equal(m.Depends, []string{"virtio", "virtio_ring"}) ||
		!slices.Equal(m.SoftPre, []string{"crc32c"}) || !slices.Equal(m.SoftPost, []string{"foo-bar"}) ||
		!slices.Equal(m.Aliases, []string{"virtio:d00000002v*", "devname:vda"}) {
		t.Errorf("ReadModInfo = %+v", m)
	}
	// Without name=, the file name gives it (dashes become underscores).
	m, err = ReadModInfo(bytes.NewReader(fakeKO("depends=\x00")), "kernel/drivers/char/hw_random/virtio-rng.ko")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "virtio_rng" || len(m.Depends) != 0 {
		t.Errorf("ReadModInfo = %+v", m)
	}
	if _, err := ReadModInfo(bytes.NewReader([]byte("not an ELF file at all")), "x.ko"); err == nil {
		t.Error("ReadModInfo accepted a non-ELF file")
	}
}

func fakeModules() *ModuleSet {
	mods := map[string]*ModInfo{}
	add := func(path string, deps, softPre []string, aliases ...string) {
		m := &ModInfo{Name: ModName(path), Path: path, Depends: deps, SoftPre: softPre, Aliases: aliases}
		mods[m.Name] = m
	}
	add("kernel/drivers/virtio/virtio_ring.ko", nil, nil)
	add("kernel/drivers/virtio/virtio.ko", []string{"virtio_ring"}, nil)
	add("kernel/drivers/virtio/virtio_pci_modern_dev.ko", nil, nil)
	add("kernel/drivers/virtio/virtio_pci_legacy_dev.ko", nil, nil)
	add("kernel/drivers/virtio/virtio_pci.ko", []string{"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_ring"}, nil)
	add("kernel/drivers/block/virtio_blk.ko", []string{"virtio", "virtio_ring"}, nil)
	add("kernel/fs/fat/fat.ko", nil, nil)
	add("kernel/fs/fat/vfat.ko", []string{"fat"}, []string{"crc32c", "missing_soft"})
	add("kernel/arch/x86/crypto/crc32c-intel.ko", nil, nil, "crc32c", "crypto-crc32c")
	add("kernel/fs/nls/nls_iso8859-1.ko", nil, nil)
	add("kernel/drivers/net/unused.ko", []string{"virtio"}, nil)
	return &ModuleSet{Modules: mods, Builtin: map[string]bool{"ext4": true, "jbd2": true}}
}

func TestModuleClosure(t *testing.T) {
	s := fakeModules()
	mods, err := s.Closure([]string{"virtio_pci", "virtio-blk", "ext4", "vfat", "nls_iso8859-1", "optional_one"},
		func(n string) bool { return n == "optional_one" })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mods {
		got = append(got, m.Name)
	}
	want := []string{"crc32c_intel", "virtio_blk", "virtio", "virtio_pci", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "fat", "vfat", "nls_iso8859_1"}
	if !slices.Equal(got, want) {
		t.Errorf("closure = %v\nwant      %v", got, want)
	}
	if _, err := s.Closure([]string{"nonexistent"}, nil); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("missing module: err = %v", err)
	}
	s.Modules["virtio"].Depends = append(s.Modules["virtio"].Depends, "gone")
	if _, err := s.Closure([]string{"virtio_blk"}, nil); err == nil || !strings.Contains(err.Error(), "gone (needed by virtio)") {
		t.Errorf("missing dependency: err = %v", err)
	}
}

func TestModulesDep(t *testing.T) {
	s := fakeModules()
	SetOrder(s.Modules, []byte("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_pci_modern_dev.ko\nkernel/drivers/virtio/virtio_pci_legacy_dev.ko\nkernel/drivers/virtio/virtio_pci.ko\n"))
	mods, err := s.Closure([]string{"virtio_pci", "virtio_blk", "vfat"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dep, err := ModulesDep(mods, func(p string) string { return p + ".gz" })
	if err != nil {
		t.Fatal(err)
	}
	// As depmod writes it for the same modules (checked against kmod's
	// depmod on Debian's kernel): dependencies transitive, the ones
	// modprobe must load first last.
	want := `kernel/arch/x86/crypto/crc32c-intel.ko.gz:
kernel/drivers/block/virtio_blk.ko.gz: kernel/drivers/virtio/virtio.ko.gz kernel/drivers/virtio/virtio_ring.ko.gz
kernel/drivers/virtio/virtio.ko.gz: kernel/drivers/virtio/virtio_ring.ko.gz
kernel/drivers/virtio/virtio_pci.ko.gz: kernel/drivers/virtio/virtio_pci_legacy_dev.ko.gz kernel/drivers/virtio/virtio_pci_modern_dev.ko.gz kernel/drivers/virtio/virtio.ko.gz kernel/drivers/virtio/virtio_ring.ko.gz
kernel/drivers/virtio/virtio_pci_legacy_dev.ko.gz:
kernel/drivers/virtio/virtio_pci_modern_dev.ko.gz:
kernel/drivers/virtio/virtio_ring.ko.gz:
kernel/fs/fat/fat.ko.gz:
kernel/fs/fat/vfat.ko.gz: kernel/fs/fat/fat.ko.gz
`
	if string(dep) != want {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", dep, want)
	}
	alias := string(ModulesAlias(mods))
	if !strings.Contains(alias, "alias crc32c crc32c_intel\n") || !strings.Contains(alias, "alias crypto-crc32c crc32c_intel\n") {
		t.Errorf("modules.alias:\n%s", alias)
	}
	order := string(FilterOrder([]byte("kernel/drivers/net/unused.ko\nkernel/drivers/virtio/virtio.ko\nkernel/fs/fat/fat.ko\n"), mods))
	if order != "kernel/drivers/virtio/virtio.ko\nkernel/fs/fat/fat.ko\n" {
		t.Errorf("modules.order = %q", order)
	}
	// A cycle is an error, not a hang.
	s.Modules["virtio_ring"].Depends = []string{"virtio"}
	if _, err := ModulesDep(mods, func(p string) string { return p }); err == nil {
		t.Error("ModulesDep accepted a dependency cycle")
	}
}

func TestLibPackageGuess(t *testing.T) {
	for so, want := range map[string]string{
		"libc.so.6": "libc6", "libm.so.6": "libc6", "ld-linux-x86-64.so.2": "libc6",
		"liblzma.so.5": "liblzma5", "libdevmapper.so.1.02.1": "libdevmapper1.02.1",
		"libpcre2-8.so.0": "libpcre2-8-0", "libselinux.so.1": "libselinux1", "libfoo.so": "",
	} {
		if got := libPackageGuess(so); got != want {
			t.Errorf("libPackageGuess(%s) = %q, want %q", so, got, want)
		}
	}
}

// hostLookup finds a library in the host's library directories.
func hostLookup(so string) (string, error) {
	for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/lib", "/usr/lib"} {
		p := filepath.Join(d, so)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func hostGlibcBinary(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs a Linux host")
	}
	for _, p := range []string{"/usr/bin/ls", "/bin/ls"} {
		if interp, _, err := ELFDeps(p); err == nil && strings.Contains(interp, "ld-linux") {
			return p
		}
	}
	t.Skip("no glibc-linked ls on this host")
	return ""
}

func TestELFDepsHost(t *testing.T) {
	ls := hostGlibcBinary(t)
	interp, needed, err := ELFDeps(ls)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(needed, "libc.so.6") {
		t.Errorf("%s DT_NEEDED = %v, want libc.so.6 among them", ls, needed)
	}
	libs, in2, err := LibClosure([]string{ls}, hostLookup)
	if err != nil {
		t.Fatal(err)
	}
	if in2 != interp {
		t.Errorf("LibClosure interpreter %q, ELFDeps %q", in2, interp)
	}
	for _, n := range needed {
		if libs[n] == "" {
			t.Errorf("closure lacks direct dependency %s", n)
		}
	}
	// Every library's own needs are in the closure too.
	for so, p := range libs {
		_, n, err := ELFDeps(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range n {
			if libs[x] == "" {
				t.Errorf("%s needs %s, missing from the closure", so, x)
			}
		}
	}
	if _, _, err := LibClosure([]string{ls}, func(string) (string, error) { return "", os.ErrNotExist }); err == nil {
		t.Error("LibClosure succeeded without libraries")
	}
	if _, _, err := ELFDeps("/etc/hostname"); err == nil {
		t.Error("ELFDeps accepted a text file")
	}
}

// TestGlibcWrapper bundles a host glibc program the way syslinux and
// grub bundle theirs and runs the wrapper from outside its root, where
// the absolute library directory does not exist.
func TestGlibcWrapper(t *testing.T) {
	bin := hostGlibcBinary(t)
	libs, interp, err := LibClosure([]string{bin}, hostLookup)
	if err != nil {
		t.Fatal(err)
	}
	interpPath, err := hostLookup(filepath.Base(interp))
	if err != nil {
		t.Fatalf("interpreter %s: %v", interp, err)
	}
	libDir := "usr/libexec/alpinist-wrapper-test"
	tr := NewTree()
	must(tr.DiskFile(libDir+"/"+filepath.Base(interp), 0o755, interpPath))
	for so, p := range libs {
		if so != filepath.Base(interp) {
			must(tr.DiskFile(libDir+"/"+so, 0o755, p))
		}
	}
	must(tr.DiskFile(libDir+"/ls", 0o755, bin))
	must(tr.File("sbin/ls", 0o755, glibcWrapper("ls", "coreutils", "/"+libDir, "../"+libDir, filepath.Base(interp))))
	root := t.TempDir()
	if err := tr.WriteTo(root); err != nil {
		t.Fatal(err)
	}
	must(os.WriteFile(filepath.Join(root, "marker-file"), nil, 0o644))
	out, err := exec.Command(filepath.Join(root, "sbin/ls"), "-1", root).CombinedOutput()
	if err != nil {
		t.Fatalf("wrapper: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "marker-file") {
		t.Errorf("wrapper output %q lacks marker-file", out)
	}
}

func TestTree(t *testing.T) {
	tr := NewTree()
	must(tr.File("usr/bin/tool", 0o755, []byte("#!/bin/sh\n")))
	must(tr.Dir("/tmp", 0o1777, 0, 0))
	must(tr.Dir("usr", 0o700, 0, 0)) // redefines the implicit parent
	must(tr.Symlink("bin/sh", "/bin/busybox"))
	// z/first sorts after a/link: Entries makes a/link the file.
	must(tr.File("z/first", 0o640, []byte("same inode")))
	must(tr.Hardlink("a/link", "z/first"))
	must(tr.Hardlink("z/second", "z/first"))
	must(tr.SetXattr("z/first", "security.capability", CapNetRawEP()))
	if err := tr.File("usr/bin/tool", 0o644, nil); err == nil {
		t.Error("adding a path twice succeeded")
	}
	if err := tr.File("usr/bin/tool/x", 0o644, nil); err == nil {
		t.Error("a file under a file succeeded")
	}
	if err := tr.Hardlink("x", "usr"); err == nil {
		t.Error("a hard link to a directory succeeded")
	}
	if err := tr.Dir("bad", 0o10000, 0, 0); err == nil {
		t.Error("a mode with type bits succeeded")
	}
	var got []string
	for _, e := range tr.Entries() {
		s := e.Path + " " + e.Type.String()
		if e.Type == TypeHardlink {
			s += "->" + e.Target
		}
		if len(e.Xattrs) > 0 {
			s += " xattr"
		}
		got = append(got, s)
	}
	want := []string{"a dir", "a/link file xattr", "bin dir", "bin/sh symlink", "tmp dir", "usr dir", "usr/bin dir", "usr/bin/tool file",
		"z dir", "z/first hardlink->a/link", "z/second hardlink->a/link"}
	if !slices.Equal(got, want) {
		t.Errorf("Entries:\n%v\nwant\n%v", got, want)
	}
	if e := tr.Get("usr"); e.Mode != 0o700 {
		t.Errorf("usr mode %o, want 0700", e.Mode)
	}
	if n := tr.InstalledSize(); n != int64(len("#!/bin/sh\n")+len("same inode")) {
		t.Errorf("InstalledSize = %d", n)
	}

	dir := t.TempDir()
	if err := tr.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp mode %v", fi.Mode())
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	var inodes []uint64
	for _, p := range []string{"a/link", "z/first", "z/second"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		inodes = append(inodes, fi.Sys().(*syscall.Stat_t).Ino)
		if fi.ModTime().Unix() != BuildTime {
			t.Errorf("%s mtime %v", p, fi.ModTime())
		}
	}
	if inodes[0] != inodes[1] || inodes[1] != inodes[2] {
		t.Errorf("hard links have inodes %v", inodes)
	}
}

func TestCapNetRawEP(t *testing.T) {
	// What setcap cap_net_raw+ep writes (read back with getxattr).
	if got := hex.EncodeToString(CapNetRawEP()); got != "0100000200200000000000000000000000000000" {
		t.Errorf("CapNetRawEP = %s", got)
	}
}

func TestLargeContent(t *testing.T) {
	hash := func() string {
		h := sha256.New()
		n, err := io.Copy(h, LargeContent())
		if err != nil || n != LargeSize {
			t.Fatalf("LargeContent: %d bytes, %v", n, err)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	a, b := hash(), hash()
	if a != b {
		t.Errorf("LargeContent is not deterministic: %s, %s", a, b)
	}
	// The stream must not be trivially compressible (it exercises streaming
	// of incompressible data): no 4 KiB block repeats in the first MiB.
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(LargeContent(), buf); err != nil {
		t.Fatal(err)
	}
	seen := map[[32]byte]bool{}
	for i := 0; i < len(buf); i += 4096 {
		s := sha256.Sum256(buf[i : i+4096])
		if seen[s] {
			t.Fatalf("block at %d repeats", i)
		}
		seen[s] = true
	}
}

// TestGeneratedPackages builds the packages that need no Debian input
// and checks the properties tests rely on.
func TestGeneratedPackages(t *testing.T) {
	b := &builder{arch: "x86_64", debArch: "amd64", work: t.TempDir(), log: discardLog()}
	base, err := buildBase(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := buildTestPackages(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	all := append(base, tp...)
	if err := checkPkgs(all); err != nil {
		t.Fatal(err)
	}
	by := map[string]*Pkg{}
	for _, p := range all {
		if p.Meta.Name == "alpinist-test-versioned" && p.Meta.Version != TestVersion {
			continue
		}
		by[p.Meta.Name] = p
	}
	for _, name := range TestPackages {
		if by[name] == nil {
			t.Errorf("test package %s is documented but not built", name)
		}
	}
	shadow := by["alpine-baselayout-data"].Tree.Get("etc/shadow")
	if shadow == nil || shadow.Mode != 0o640 || shadow.GID != 42 {
		t.Errorf("etc/shadow: %+v", shadow)
	}
	layout := by["alpine-baselayout"].Tree
	for p, mode := range map[string]uint32{"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700, "proc": 0o555, "var/empty": 0o555, "run": 0o755} {
		if e := layout.Get(p); e == nil || e.Type != TypeDir || uint32(e.Mode) != mode {
			t.Errorf("alpine-baselayout %s: %+v, want a %o directory", p, e, mode)
		}
	}
	if e := layout.Get("var/run"); e == nil || e.Type != TypeSymlink || e.Target != "/run" {
		t.Errorf("var/run: %+v", e)
	}
	if e := by["alpinist-test-xattr"].Tree.Get(CapFile); e == nil || len(e.Xattrs) != 1 || e.Xattrs[0].Name != "security.capability" {
		t.Errorf("%s: %+v", CapFile, e)
	}
	if e := by["alpinist-test-large"].Tree.Get(LargeFile); e == nil || e.Size != LargeSize {
		t.Errorf("%s: %+v", LargeFile, e)
	}
	if !bytes.Contains(by["alpinist-test-failing"].Scripts["post-install"], []byte("exit 1")) {
		t.Error("alpinist-test-failing's post-install does not fail")
	}
	if tr := by["alpinist-test-trigger"].Meta.Triggers; !slices.Equal(tr, []string{HooksDir}) {
		t.Errorf("alpinist-test-trigger triggers %v", tr)
	}
	if by["alpinist-test-noarch"].Meta.Arch != "noarch" {
		t.Error("alpinist-test-noarch is not noarch")
	}
	if got := by["alpinist-test-replacer"].Meta.Replaces[0].String(); got != "alpinist-test-owner" {
		t.Errorf("replacer replaces %s", got)
	}
	if got := by["alpinist-test-conflict-a"].Meta.Depends[0].String(); got != "!alpinist-test-conflict-b" {
		t.Errorf("conflict-a depends %s", got)
	}
	if len(by["alpinist-test-if-both"].Meta.InstallIf) != 2 {
		t.Error("alpinist-test-if-both has no install_if")
	}

	svc := by[ServicePackage].Tree
	script, conf := svc.Get(ServiceScript), svc.Get(ServiceConf)
	if script == nil || script.Type != TypeFile || script.Mode != 0o755 || script.UID != 0 {
		t.Fatalf("%s: %+v, want a 0755 root file", ServiceScript, script)
	}
	if conf == nil || conf.Type != TypeFile || conf.Mode != 0o644 {
		t.Fatalf("%s: %+v, want a 0644 file", ServiceConf, conf)
	}
	text := readEntry(t, script)
	for _, want := range []string{"#!/sbin/openrc-run\n", "\ndescription=\"", "\ncommand=\"/bin/sleep\"\n", "\npidfile=", "\ndepend() {\n\tneed localmount\n}\n"} {
		if !strings.Contains("\n"+text, want) {
			t.Errorf("%s lacks %q:\n%s", ServiceScript, want, text)
		}
	}
	if ServiceScript != "/etc/init.d/"+ServiceName || ServiceConf != "/etc/conf.d/"+ServiceName {
		t.Errorf("service paths %s, %s do not name %s", ServiceScript, ServiceConf, ServiceName)
	}
	// Both are shell (openrc-run sources the conf.d file, then the script).
	if sh, err := exec.LookPath("sh"); err == nil {
		for _, e := range []*Entry{script, conf} {
			cmd := exec.Command(sh, "-n")
			cmd.Stdin = strings.NewReader(readEntry(t, e))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("sh -n %s: %v: %s", e.Path, err, out)
			}
		}
	}
}

func readEntry(t *testing.T, e *Entry) string {
	t.Helper()
	r, err := e.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// fakeTzdata is a DebTree laid out as Debian's tzdata .deb, with its
// regular files written under dir.
func fakeTzdata(t *testing.T, dir string) map[string]*DebFile {
	t.Helper()
	files := map[string]*DebFile{}
	add := func(f *DebFile) {
		if f.Type == TypeFile {
			f.DiskPath = filepath.Join(dir, filepath.FromSlash(f.Path))
			must(os.MkdirAll(filepath.Dir(f.DiskPath), 0o755))
			must(os.WriteFile(f.DiskPath, []byte("TZif2 "+f.Path), 0o644))
		}
		files[f.Path] = f
	}
	for _, d := range []string{"usr", "usr/share", "usr/share/doc", "usr/share/doc/tzdata", "usr/share/zoneinfo",
		"usr/share/zoneinfo/Etc", "usr/share/zoneinfo/Europe", "usr/share/zoneinfo/America", "usr/share/zoneinfo/US",
		"usr/share/zoneinfo/right", "usr/share/zoneinfo/right/Europe", "usr/share/zoneinfo/posix"} {
		add(&DebFile{Path: d, Type: TypeDir, Mode: 0o755})
	}
	for _, f := range []string{"usr/share/doc/tzdata/copyright", "usr/share/zoneinfo/Etc/UTC", "usr/share/zoneinfo/Europe/Paris",
		"usr/share/zoneinfo/America/New_York", "usr/share/zoneinfo/zone1970.tab", "usr/share/zoneinfo/right/Europe/Paris"} {
		add(&DebFile{Path: f, Type: TypeFile, Mode: 0o644})
	}
	for l, target := range map[string]string{
		"usr/share/zoneinfo/UTC": "Etc/UTC", "usr/share/zoneinfo/US/Eastern": "../America/New_York",
		"usr/share/zoneinfo/posixrules": "America/New_York", "usr/share/zoneinfo/localtime": "/etc/localtime",
		"usr/share/zoneinfo/posix/UTC": "../Etc/UTC",
	} {
		add(&DebFile{Path: l, Type: TypeSymlink, Mode: 0o777, Target: target})
	}
	add(&DebFile{Path: "usr/share/zoneinfo/Europe/Monaco", Type: TypeHardlink, Mode: 0o644, Target: "usr/share/zoneinfo/Europe/Paris"})
	return files
}

// keptTzdata filters files as ExtractDeb does with keepZoneinfo.
func keptTzdata(files map[string]*DebFile) *DebTree {
	dt := &DebTree{Deb: &Deb{Package: "tzdata", Arch: "all", Version: "2026f-0+deb12u1"}, Files: map[string]*DebFile{}}
	for name, f := range files {
		if keepZoneinfo(name) {
			dt.Files[name] = f
		}
	}
	return dt
}

func TestTzdataTree(t *testing.T) {
	if v, err := APKVersion("2026f-0+deb12u1"); err != nil || v != "2026f-r0" || !version.Valid(v) {
		t.Errorf("APKVersion(2026f-0+deb12u1) = %q, %v; want the valid 2026f-r0", v, err)
	}
	files := fakeTzdata(t, t.TempDir())
	tr := NewTree()
	if err := tzdataTree(tr, keptTzdata(files)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tr.Entries() {
		s := e.Path + " " + e.Type.String()
		if e.Target != "" {
			s += " " + e.Target
		}
		got = append(got, s)
	}
	want := []string{
		"usr dir", "usr/share dir", "usr/share/zoneinfo dir",
		"usr/share/zoneinfo/America dir", "usr/share/zoneinfo/America/New_York file",
		"usr/share/zoneinfo/Etc dir", "usr/share/zoneinfo/Etc/UTC file",
		"usr/share/zoneinfo/Europe dir", "usr/share/zoneinfo/Europe/Monaco file",
		"usr/share/zoneinfo/Europe/Paris hardlink usr/share/zoneinfo/Europe/Monaco",
		"usr/share/zoneinfo/US dir", "usr/share/zoneinfo/US/Eastern symlink ../America/New_York",
		"usr/share/zoneinfo/UTC symlink Etc/UTC",
		"usr/share/zoneinfo/posixrules symlink America/New_York",
		"usr/share/zoneinfo/zone1970.tab file",
	}
	if !slices.Equal(got, want) {
		t.Errorf("tzdata tree:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Written out, the symlinks resolve to the zone files.
	root := t.TempDir()
	if err := tr.WriteTo(root); err != nil {
		t.Fatal(err)
	}
	for _, z := range append(slices.Clone(TzdataZones), "US/Eastern") {
		data, err := os.ReadFile(filepath.Join(root, ZoneinfoDir, z))
		if err != nil || !strings.HasPrefix(string(data), "TZif2 ") {
			t.Errorf("%s/%s: %q, %v", ZoneinfoDir, z, data, err)
		}
	}

	// A zone missing, a link into a skipped tree or out of it, and an
	// absolute link are errors.
	for name, edit := range map[string]func(map[string]*DebFile){
		"missing zone": func(f map[string]*DebFile) {
			delete(f, "usr/share/zoneinfo/Europe/Paris")
			delete(f, "usr/share/zoneinfo/Europe/Monaco")
		},
		"link into right": func(f map[string]*DebFile) { f["usr/share/zoneinfo/UTC"].Target = "right/Etc/UTC" },
		"dangling link":   func(f map[string]*DebFile) { f["usr/share/zoneinfo/US/Eastern"].Target = "../../../../etc/localtime" },
		"absolute link": func(f map[string]*DebFile) {
			f["usr/share/zoneinfo/posixrules"].Target = "/usr/share/zoneinfo/America/New_York"
		},
	} {
		files := fakeTzdata(t, t.TempDir())
		edit(files)
		if err := tzdataTree(NewTree(), keptTzdata(files)); err == nil {
			t.Errorf("%s: tzdataTree succeeded", name)
		}
	}
}

func TestKeepZoneinfo(t *testing.T) {
	for name, want := range map[string]bool{
		"usr/share/zoneinfo": true, "usr/share/zoneinfo/UTC": true, "usr/share/zoneinfo/Europe/Paris": true,
		"usr/share/zoneinfo/posixrules": true, "usr/share/zoneinfo/rightmost": true,
		"usr/share/zoneinfo/right": false, "usr/share/zoneinfo/right/UTC": false, "usr/share/zoneinfo/posix/Europe/Paris": false,
		"usr/share/zoneinfo/localtime": false, "usr/share/doc/tzdata/copyright": false, "usr/share/lintian/overrides/tzdata": false,
		"usr": false, "usr/share": false, "usr/share/zoneinfo-extra/x": false,
	} {
		if got := keepZoneinfo(name); got != want {
			t.Errorf("keepZoneinfo(%s) = %v, want %v", name, got, want)
		}
	}
}

// TestGeneratedTzdata reads the generated repository's tzdata package of
// each architecture and checks what tests rely on.
func TestGeneratedTzdata(t *testing.T) {
	repo := Generated(t)
	keys, err := sign.LoadKeyring(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	arches, _ := filepath.Glob(filepath.Join(repo, "main", "*", "APKINDEX.tar.gz"))
	for _, idx := range arches {
		arch := filepath.Base(filepath.Dir(idx))
		pkgs, _ := filepath.Glob(filepath.Join(filepath.Dir(idx), "tzdata-[0-9]*.apk"))
		if len(pkgs) != 1 {
			t.Errorf("%s: tzdata packages %v, want one", arch, pkgs)
			continue
		}
		f, err := os.Open(pkgs[0])
		if err != nil {
			t.Fatal(err)
		}
		entries := map[string]*tar.Header{}
		p, err := apkfile.Read(f, apkfile.ReadOptions{Keys: keys, Entry: func(h *tar.Header, r io.Reader) error {
			entries[h.Name] = h
			return nil
		}})
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", pkgs[0], err)
		}
		if !version.Valid(p.Info.Version) || p.Info.License != "Public-Domain" || p.Info.Arch != arch {
			t.Errorf("%s: version %q, license %q, arch %q", pkgs[0], p.Info.Version, p.Info.License, p.Info.Arch)
		}
		zi := strings.TrimPrefix(ZoneinfoDir, "/")
		for _, z := range TzdataZones {
			if entries[zi+"/"+z] == nil {
				t.Errorf("%s: no %s/%s", arch, ZoneinfoDir, z)
			}
		}
		for _, z := range []string{"Europe/Paris", "America/New_York", "Etc/UTC"} {
			if h := entries[zi+"/"+z]; h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o777 != 0o644 {
				t.Errorf("%s: %s/%s: %+v, want a 0644 file", arch, ZoneinfoDir, z, h)
			}
		}
		if h := entries[zi+"/UTC"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "Etc/UTC" {
			t.Errorf("%s: %s/UTC: %+v, want a symlink to Etc/UTC", arch, ZoneinfoDir, h)
		}
		for name, h := range entries {
			if !strings.HasPrefix(name+"/", zi+"/") && !strings.HasPrefix(zi+"/", name+"/") {
				t.Errorf("%s: %s is outside %s", arch, name, ZoneinfoDir)
			}
			if !keepZoneinfo(name) && strings.HasPrefix(name, zi) {
				t.Errorf("%s: %s should have been left out", arch, name)
			}
			if h.Typeflag == tar.TypeSymlink && strings.HasPrefix(h.Linkname, "/") {
				t.Errorf("%s: %s -> %s is absolute", arch, name, h.Linkname)
			}
		}
	}
}
