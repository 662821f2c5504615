package ext4

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/benchcmp"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/alpinist/alpinist/internal/treecmp"
)

var epoch = time.Unix(1700000000, 0)

func fsck(t testing.TB, img string) {
	t.Helper()
	e2fsck := hosttool.Need(t, "e2fsck", "e2fsprogs")
	out, err := exec.Command(e2fsck, "-fn", img).CombinedOutput()
	if keep := os.Getenv("EXT4_KEEP"); keep != "" {
		exec.Command("cp", "--sparse=always", img, keep).Run()
	}
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// debugfs runs debugfs commands on img and returns the output.
func debugfs(t testing.TB, img string, cmds ...string) string {
	t.Helper()
	bin := hosttool.Need(t, "debugfs", "e2fsprogs")
	f := filepath.Join(t.TempDir(), "cmds")
	os.WriteFile(f, []byte(strings.Join(cmds, "\n")+"\n"), 0o644)
	out, err := exec.Command(bin, "-f", f, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	return string(out)
}

type entry struct {
	h    tar.Header
	body []byte
}

func makeTar(t testing.TB, ents []entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.h
		h.Size = int64(len(e.body))
		if h.ModTime.IsZero() {
			h.ModTime = epoch
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	return b.Bytes()
}

func build(t testing.TB, tarData []byte, o Options) (string, Stats) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(src, tarData, 0o644)
	img := filepath.Join(dir, "fs.ext4")
	if o.Time.IsZero() {
		o.Time = epoch
	}
	st, err := BuildFile(img, src, o)
	if err != nil {
		t.Fatal(err)
	}
	return img, st
}

// everyKind is a tree with each kind of object ext4 stores differently.
func everyKind(t testing.TB) []entry {
	long := "/usr/lib/" + strings.Repeat("a-very-long-directory-name/", 4) + "target"
	capability := string([]byte{1, 0, 0, 2, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB: several extents' worth of blocks
	holes := append(append(bytes.Repeat([]byte{0}, 3*blockSize), []byte("middle")...), bytes.Repeat([]byte{0}, 2*blockSize)...)
	return []entry{
		{tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o4755}, []byte("#!/bin/sh\n")},
		{tar.Header{Name: "bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capability}}, []byte("ping")},
		{tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil},
		{tar.Header{Name: "bin/long", Typeflag: tar.TypeSymlink, Linkname: long, Mode: 0o777}, nil},
		{tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, nil},
		{tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 0}, nil},
		{tar.Header{Name: "dev/big", Typeflag: tar.TypeChar, Mode: 0o600, Devmajor: 300, Devminor: 70000}, nil},
		{tar.Header{Name: "dev/fifo", Typeflag: tar.TypeFifo, Mode: 0o644}, nil},
		{tar.Header{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, PAXRecords: map[string]string{"SCHILY.xattr.user.note": "hello"}}, []byte("welcome\n")},
		{tar.Header{Name: "etc/motd.link", Typeflag: tar.TypeLink, Linkname: "etc/motd"}, nil},
		{tar.Header{Name: "etc/many-attrs", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 70000, Gid: 80000, PAXRecords: map[string]string{
			"SCHILY.xattr.user.a": strings.Repeat("x", 100), "SCHILY.xattr.user.b": strings.Repeat("y", 200), "SCHILY.xattr.trusted.t": "t"}}, []byte("attrs")},
		{tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "home/app/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000}, nil},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
		{tar.Header{Name: "usr/share/big", Typeflag: tar.TypeReg, Mode: 0o644}, big}, // its parents are implicit
		{tar.Header{Name: "usr/share/holes", Typeflag: tar.TypeReg, Mode: 0o644}, holes},
		{tar.Header{Name: "usr/share/empty", Typeflag: tar.TypeReg, Mode: 0o644}, nil},
	}
}

func TestEveryKind(t *testing.T) {
	img, st := build(t, makeTar(t, everyKind(t)), Options{Label: "alpine-root"})
	fsck(t, img)
	out := debugfs(t, img,
		"stat /etc/motd", "stat /etc/motd.link", "stat /dev/null", "stat /dev/big", "stat /dev/fifo",
		"stat /bin/sh", "stat /bin/long", "ea_list /bin/ping", "ea_list /etc/motd", "ea_list /etc/many-attrs",
		"stat /etc/many-attrs", "stat /bin/busybox", "stat /tmp", "stat /usr", "ls -l /dev")
	for _, want := range []string{
		"Links: 2", // the hard link pair
		"Type: character special    Mode:  0666",
		"Device major/minor number: 01:03",
		"Device major/minor number: 300:70000",
		"Type: FIFO",
		`Fast link dest: "busybox"`,
		"security.capability (20)",
		`user.note (5) = "hello"`,
		"user.b (200)",
		"trusted.t (1)",
		"User: 70000   Group: 80000",
		"Mode:  04755",
		"Mode:  01777",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("debugfs lacks %q", want)
		}
	}
	// The hard link and its file are one inode.
	inodes := regexp.MustCompile(`Inode: (\d+)`).FindAllStringSubmatch(out, 2)
	if len(inodes) < 2 || inodes[0][1] != inodes[1][1] {
		t.Errorf("hard link inodes: %v", inodes)
	}
	// Attributes too big for the inode are in a block.
	if !regexp.MustCompile(`(?s)Inode: \d+\s+Type: regular\s+Mode:\s+0640.*?File ACL: [1-9]`).MatchString(out) {
		t.Error("/etc/many-attrs has no attribute block")
	}
	// The long symlink is a slow one, with a block.
	if strings.Contains(out, "Fast link dest: \"/usr/lib/a-very") {
		t.Error("a 120-byte symlink target stored in the inode")
	}
	// Implicit directories are made.
	if !strings.Contains(out, "Type: directory    Mode:  0755") {
		t.Errorf("/usr: %s", out)
	}
	if st.Blocks == 0 || st.FreeInodes == 0 {
		t.Errorf("stats: %+v", st)
	}

	// The tree debugfs dumps is the tar's (hard links aside, which rdump
	// copies; devices, which it cannot make).
	dump := filepath.Join(t.TempDir(), "dump")
	os.Mkdir(dump, 0o755)
	debugfs(t, img, "rdump / "+dump)
	// rdump copies hard links, makes no fifos or devices, and drops the
	// setuid and sticky bits (stat above checked them).
	var noLinks []entry
	for _, e := range everyKind(t) {
		switch {
		case e.h.Typeflag == tar.TypeLink || e.h.Typeflag == tar.TypeFifo:
			continue
		case e.h.Name == "bin/busybox" || e.h.Name == "tmp/":
			e.h.Mode &= 0o777
		}
		noLinks = append(noLinks, e)
	}
	noLinks = append(noLinks, entry{tar.Header{Name: "etc/motd.link", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("welcome\n")},
		entry{tar.Header{Name: "lost+found/", Typeflag: tar.TypeDir, Mode: 0o700}, nil},
		entry{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		entry{tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		entry{tar.Header{Name: "usr/share/", Typeflag: tar.TypeDir, Mode: 0o755}, nil})
	if d := treecmp.Compare(bytes.NewReader(makeTar(t, noLinks)), filepath.Join(dump)); d != "" {
		t.Errorf("rdump differs from the tar:\n%s", d)
	}
}

func TestReproducible(t *testing.T) {
	data := makeTar(t, everyKind(t))
	a, sa := build(t, data, Options{})
	b, sb := build(t, data, Options{})
	x, _ := os.ReadFile(a)
	y, _ := os.ReadFile(b)
	if !bytes.Equal(x, y) || !reflect.DeepEqual(sa, sb) {
		t.Error("two builds of one tar differ")
	}
	// Another tar, another UUID; a given UUID is kept.
	_, sc := build(t, makeTar(t, everyKind(t)[:5]), Options{})
	if sc.UUID == sa.UUID {
		t.Error("two trees share a UUID")
	}
	uuid := [16]byte{1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16}
	img, sd := build(t, data, Options{UUID: uuid})
	if out := debugfs(t, img, "stats"); sd.UUID != uuid || !strings.Contains(out, "Filesystem UUID:          01020304-0506-4708-890a-0b0c0d0e0f10") {
		t.Errorf("UUID %x:\n%.1500s", sd.UUID, out)
	}
}

func TestRealRootfs(t *testing.T) {
	img, _ := build(t, rootfstest.Tar(t), Options{})
	fsck(t, img)
}

// A directory of 50,000 files is an htree with index nodes.
func TestLargeDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	ents := []entry{{tar.Header{Name: "big/", Typeflag: tar.TypeDir, Mode: 0o755}, nil}}
	for i := range 50_000 {
		ents = append(ents, entry{tar.Header{Name: fmt.Sprintf("big/file-%05d-%s", i, strings.Repeat("n", 20+i%40)), Typeflag: tar.TypeReg, Mode: 0o644}, nil})
	}
	img, _ := build(t, makeTar(t, ents), Options{})
	fsck(t, img)
	out := debugfs(t, img, "stat /big", "htree_dump /big")
	if !strings.Contains(out, "Flags: 0x81000") || !strings.Contains(out, "Indirect levels: 1") {
		t.Errorf("/big is not a two-level htree:\n%.2000s", out)
	}
	if !strings.Contains(debugfs(t, img, "stat /big/file-49999-"+strings.Repeat("n", 20+49999%40)), "Type: regular") {
		t.Error("the last file is not found through the htree")
	}
}

// A sparse image of several GiB: many groups, superblock backups; only
// what holds something is written.
func TestLargeSparseImage(t *testing.T) {
	img, st := build(t, makeTar(t, everyKind(t)), Options{Size: 6 << 30})
	fsck(t, img)
	if st.Blocks != 6<<30/blockSize {
		t.Errorf("%d blocks", st.Blocks)
	}
	fi, _ := os.Stat(img)
	var used int64
	if out, err := exec.Command("du", "-B1", img).Output(); err == nil {
		fmt.Sscan(string(out), &used)
	}
	if fi.Size() != 6<<30 || used > 64<<20 {
		t.Errorf("size %d, %d bytes on disk", fi.Size(), used)
	}
	if !strings.Contains(debugfs(t, img, "stats"), "Group 47:") {
		t.Error("no group 47 in a 6 GiB image")
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		ents []entry
		o    Options
		want string
	}{
		"too small": {everyKind(t), Options{Size: 8 << 20}, "too small"},
		"tiny":      {everyKind(t), Options{Size: 1 << 20}, "below the 8 MiB"},
		"label":     {everyKind(t), Options{Label: strings.Repeat("l", 17)}, "longer than 16"},
		"escape":    {[]entry{{tar.Header{Name: "../x", Typeflag: tar.TypeReg}, nil}}, Options{}, "not a clean relative path"},
		"twice":     {[]entry{{tar.Header{Name: "x", Typeflag: tar.TypeReg}, nil}, {tar.Header{Name: "x", Typeflag: tar.TypeReg}, nil}}, Options{}, "listed twice"},
		"dangling":  {[]entry{{tar.Header{Name: "x", Typeflag: tar.TypeLink, Linkname: "y"}, nil}}, Options{}, "not an earlier file"},
		"file dir":  {[]entry{{tar.Header{Name: "x", Typeflag: tar.TypeReg}, nil}, {tar.Header{Name: "x/y", Typeflag: tar.TypeReg}, nil}}, Options{}, "not a directory"},
		"pin gone":  {everyKind(t), Options{Pin: []string{"boot/ldlinux.sys"}}, "/boot/ldlinux.sys: not in the tree"},
		"pin dir":   {[]entry{{tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, nil}}, Options{Pin: []string{"d"}}, "/d: only regular files can be pinned"},
		// A gid of 2^32 became 0 (root); a uid of -1 likewise.
		"gid":   {[]entry{{tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644, Gid: 1 << 32}, nil}}, Options{}, "gid 4294967296 out of range"},
		"uid":   {[]entry{{tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 1<<32 - 1}, nil}}, Options{}, "uid 4294967295 out of range"},
		"links": {manyLinks(maxLinks), Options{}, "more than 65000 hard links to /f"},
	} {
		src := filepath.Join(dir, "src.tar")
		os.WriteFile(src, makeTar(t, tc.ents), 0o644)
		dst := filepath.Join(dir, "out.ext4")
		os.Remove(dst)
		if _, err := BuildFile(dst, src, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Errorf("%s: a failed build left its image", name)
		}
	}
}

// manyLinks is a file f with n more names (hard links).
func manyLinks(n int) []entry {
	ents := []entry{{tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("x")}, {tar.Header{Name: "l/", Typeflag: tar.TypeDir, Mode: 0o755}, nil}}
	for i := range n {
		ents = append(ents, entry{tar.Header{Name: fmt.Sprintf("l/%d", i), Typeflag: tar.TypeLink, Linkname: "f"}, nil})
	}
	return ents
}

// TestLinkLimit: 65,000 names of one file (ext4's limit) make an image
// e2fsck accepts, with the count right; one more is refused above (the
// count wrapped at 65,536 and e2fsck rejected the image).
func TestLinkLimit(t *testing.T) {
	img, _ := build(t, makeTar(t, manyLinks(maxLinks-1)), Options{})
	fsck(t, img)
	if out := debugfs(t, img, "stat /f"); !strings.Contains(out, "Links: 65000") {
		t.Errorf("stat /f:\n%s", out)
	}
}

// TestPin: a pinned file is immutable and Stats.Pinned lists the blocks
// debugfs finds it in.
func TestPin(t *testing.T) {
	body := bytes.Repeat([]byte("ldlinux!"), 59392/8)
	ents := append(everyKind(t), entry{tar.Header{Name: "boot/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		entry{tar.Header{Name: "boot/ldlinux.sys", Typeflag: tar.TypeReg, Mode: 0o444}, body})
	img, st := build(t, makeTar(t, ents), Options{Pin: []string{"boot/ldlinux.sys"}})
	fsck(t, img)
	blocks := st.Pinned["boot/ldlinux.sys"]
	if len(blocks) != 15 {
		t.Fatalf("pinned blocks %v, want 15 of them", blocks)
	}
	out := debugfs(t, img, "stat /boot/ldlinux.sys", "blocks /boot/ldlinux.sys")
	if !strings.Contains(out, "Flags: 0x80010") {
		t.Errorf("ldlinux.sys is not immutable (flags 0x80010 wanted):\n%s", out)
	}
	var want []string
	for _, b := range blocks {
		want = append(want, fmt.Sprint(b))
	}
	if !strings.Contains(out, "\n"+strings.Join(want, " ")+" \n") {
		t.Errorf("debugfs blocks differ from %v:\n%s", want, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, 4096)
	f.ReadAt(got, int64(blocks[1])*4096)
	if !bytes.Equal(got, body[4096:8192]) {
		t.Error("the second pinned block does not hold the file's second block")
	}
}

// benchTree is a rootfs-like tree: 4000 files of 0 to 64 KiB in 40
// directories (about 128 MiB), unpacked for mke2fs -d and as a tar for
// us.
func benchTree(b *testing.B) (tarPath, dir string) {
	var ents []entry
	for d := range 40 {
		ents = append(ents, entry{tar.Header{Name: fmt.Sprintf("usr/lib/d%02d/", d), Typeflag: tar.TypeDir, Mode: 0o755}, nil})
		for f := range 100 {
			size := (d*100 + f) * 7919 % (64 << 10)
			body := bytes.Repeat([]byte{byte(f), byte(d), 'x', 'y'}, size/4)
			ents = append(ents, entry{tar.Header{Name: fmt.Sprintf("usr/lib/d%02d/f%03d", d, f), Typeflag: tar.TypeReg, Mode: 0o644}, body})
		}
	}
	tmp := b.TempDir()
	tarPath = filepath.Join(tmp, "tree.tar")
	os.WriteFile(tarPath, makeTar(b, ents), 0o644)
	dir = filepath.Join(tmp, "tree")
	os.Mkdir(dir, 0o755)
	if out, err := exec.Command("tar", "-C", dir, "-xf", tarPath).CombinedOutput(); err != nil {
		b.Fatalf("tar: %v %s", err, out)
	}
	return tarPath, dir
}

// BenchmarkVsMke2fs times our writer and mke2fs -d on the same tree,
// with the same size and features, side by side: the ratio is the figure.
func BenchmarkVsMke2fs(b *testing.B) {
	mke2fs := hosttool.Need(b, "mke2fs", "e2fsprogs")
	tarPath, dir := benchTree(b)
	ours, theirs := filepath.Join(b.TempDir(), "ours.ext4"), filepath.Join(b.TempDir(), "mke2fs.ext4")
	benchcmp.SideBySide(b, "mke2fs", func() error {
		_, err := BuildFile(ours, tarPath, Options{Size: 256 << 20, Time: epoch})
		return err
	}, func() error {
		os.Remove(theirs)
		cmd := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-O", "^resize_inode,^flex_bg,^64bit,metadata_csum", "-E", "lazy_itable_init=1,lazy_journal_init=1",
			"-d", dir, theirs, "256M")
		cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v %s", err, o)
		}
		return nil
	})
}

func FuzzBuild(f *testing.F) {
	f.Add(makeTar(f, everyKind(f)[:6]))
	f.Add(makeTar(f, []entry{{tar.Header{Name: "a/b/c", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("x")}, {tar.Header{Name: "a/l", Typeflag: tar.TypeLink, Linkname: "a/b/c"}, nil}}))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := os.CreateTemp(dir, "fuzz-*.ext4")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(out.Name())
		defer out.Close()
		Build(out, bytes.NewReader(data), Options{Size: 8 << 20, Time: epoch})
	})
}

// TestCanceled: a done context stops the build at its next read of the
// tar, leaving no image.
func TestCanceled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.tar")
	os.WriteFile(src, makeTar(t, everyKind(t)), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(dir, "out.ext4")
	if _, err := BuildFile(dst, src, Options{Context: ctx}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a canceled build left its image")
	}
}
