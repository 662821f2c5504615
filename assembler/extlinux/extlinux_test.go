package extlinux

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/testrepo"
)

// loader extracts EXTLINUX from the test repository's syslinux package
// (Debian's extlinux 6.04~git20190206).
func loader(t testing.TB) (*Loader, []byte) {
	t.Helper()
	exe, err := os.ReadFile(testrepo.Extract(t, "x86_64", "syslinux", "usr/libexec/syslinux/extlinux"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Extract(exe)
	if err != nil {
		t.Fatal(err)
	}
	return l, exe
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// TestExtract checks the pieces against what docs/design/extlinux.md
// found in Debian's extlinux by hand (and booted).
func TestExtract(t *testing.T) {
	l, _ := loader(t)
	if l.Version != "6.04" {
		t.Errorf("version %q", l.Version)
	}
	if got := sum(l.bootSector); !strings.HasPrefix(got, "94bb1010") || !strings.HasSuffix(got, "f5a5") {
		t.Errorf("boot sector sha256 %s, want 94bb1010…f5a5", got)
	}
	if len(l.image) != 58368 || !strings.HasPrefix(sum(l.image), "266813dd") || !strings.HasSuffix(sum(l.image), "b3d8") {
		t.Errorf("ldlinux.sys: %d bytes, sha256 %s; want 58368, 266813dd…b3d8", len(l.image), sum(l.image))
	}
	if l.SysSize() != 59392 || len(l.SysFile()) != 59392 {
		t.Errorf("ldlinux.sys file: %d bytes", l.SysSize())
	}
	// ldlinux.c32 is the package's, but for its .comment (a binNMU).
	pkg, err := os.ReadFile(testrepo.Extract(t, "x86_64", "syslinux", "usr/share/syslinux/ldlinux.c32"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.C32) != 119532 {
		t.Errorf("ldlinux.c32: %d bytes, want 119532", len(l.C32))
	}
	for _, name := range []string{".text", ".rodata", ".data", ".dynsym"} {
		a, b := section(t, l.C32, name), section(t, pkg, name)
		if !bytes.Equal(a, b) {
			t.Errorf("ldlinux.c32 %s differs from the package's", name)
		}
	}
}

func section(t *testing.T, b []byte, name string) []byte {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(name)
	if s == nil {
		t.Fatalf("no %s", name)
	}
	d, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestExtractErrors(t *testing.T) {
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	_, exe := loader(t)
	cut := bytes.Clone(exe)
	// Damage the instance word of ldlinux.sys: the boot sector no longer matches.
	i := bytes.Index(cut, []byte("\r\nSYSLINUX 6.04 \x00"))
	cut[i+0x1C] ^= 0xff
	for name, tc := range map[string]struct {
		exe  []byte
		want string
	}{
		"not elf":    {[]byte("#!/bin/sh\nexec extlinux\n"), "not an ELF program"},
		"other elf":  {self, "no EXTLINUX boot sector"},
		"mismatched": {cut, "not from the same build"},
	} {
		if _, err := Extract(tc.exe); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// check verifies a patched install the way the loader does: the image's
// words sum to the magic, the extents cover the sectors given.
func check(t *testing.T, l *Loader, in *Install, sectors []uint64, dir string) {
	t.Helper()
	img := in.Sys[:len(l.image)]
	var s uint32
	for i := 0; i < len(img); i += 4 {
		s += le.Uint32(img[i:])
	}
	if s != ldlinuxMagic {
		t.Errorf("checksum: words sum to %#x", s)
	}
	if !bytes.Equal(in.Sys[len(l.image):], l.SysFile()[len(l.image):]) {
		t.Error("the ADV changed")
	}
	epa := int(le.Uint16(img[l.patchArea+22:]))
	f := func(i int) int { return int(le.Uint16(img[epa+2*i:])) }
	// Sector 0 is in the boot sector, then the extents, then the ADV.
	bs := in.BootSector(2048, 1<<20)
	if got := uint64(le.Uint32(bs[f(7):])) | uint64(le.Uint32(bs[f(8):]))<<32; got != sectors[0] {
		t.Errorf("boot sector points at %d, want %d", got, sectors[0])
	}
	var walked []uint64
	for i := 0; i < f(6); i++ {
		lba, n := le.Uint64(img[f(5)+10*i:]), le.Uint16(img[f(5)+10*i+8:])
		if n > 127 {
			t.Errorf("extent %d: %d sectors", i, n)
		}
		for k := range uint64(n) {
			walked = append(walked, lba+k)
		}
	}
	nsect := l.SysSize() / 512
	if want := sectors[1 : nsect-2]; !slices.Equal(walked, want) {
		t.Errorf("extents give %d sectors %v…, want %v…", len(walked), walked[:min(4, len(walked))], want[:4])
	}
	if a, b := le.Uint64(img[f(0):]), le.Uint64(img[f(0)+8:]); a != sectors[nsect-2] || b != sectors[nsect-1] {
		t.Errorf("ADV at %d and %d, want %v", a, b, sectors[nsect-2:nsect])
	}
	if got := string(img[f(1) : f(1)+len(dir)+1]); got != dir+"\x00" {
		t.Errorf("directory %q", got)
	}
	if le.Uint32(bs[0x1C:]) != 2048 || le.Uint32(bs[0x20:]) != 1<<20 || le.Uint16(bs[0x0B:]) != 512 || bs[510] != 0x55 || bs[511] != 0xAA {
		t.Errorf("boot sector parameters: % x", bs[:0x24])
	}
}

func TestPatch(t *testing.T) {
	l, _ := loader(t)
	n := l.SysSize() / 512
	// Contiguous, as alpinist's ext4 writer places it: one extent.
	contiguous := make([]uint64, n)
	for i := range contiguous {
		contiguous[i] = 80000 + uint64(i)
	}
	in, err := l.Patch(contiguous, "/boot")
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, in, contiguous, "/boot")
	epa := int(le.Uint16(l.image[l.patchArea+22:]))
	ptrs := int(le.Uint16(l.image[epa+10:]))
	if lba, k, next := le.Uint64(in.Sys[ptrs:]), le.Uint16(in.Sys[ptrs+8:]), le.Uint16(in.Sys[ptrs+18:]); lba != 80001 || k != uint16(n-3) || next != 0 {
		t.Errorf("one extent {80001, %d} wanted, got {%d, %d}, then %d sectors", n-3, lba, k, next)
	}
	// Scattered in 4 KiB blocks, out of order, past 32 bits.
	var scattered []uint64
	for i := range (n + 7) / 8 {
		for k := range 8 {
			scattered = append(scattered, 1<<33+uint64((i*37)%19)*8+uint64(k)+uint64(i)*1000)
		}
	}
	in, err = l.Patch(scattered[:n], "/boot/extlinux")
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, in, scattered[:n], "/boot/extlinux")

	for name, tc := range map[string]struct {
		sectors []uint64
		dir     string
		want    string
	}{
		"short":    {contiguous[:n-1], "/boot", "needs"},
		"relative": {contiguous, "boot", "not absolute"},
		"long dir": {contiguous, "/" + strings.Repeat("d", 300), "longer than"},
	} {
		if _, err := l.Patch(tc.sectors, tc.dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestExtents(t *testing.T) {
	var run []uint64
	for i := range 300 {
		run = append(run, 1000+uint64(i))
	}
	got := extents(append(run, 5, 6, 9))
	want := []extent{{1000, 127}, {1127, 127}, {1254, 46}, {5, 2}, {9, 1}}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	c := Config{Serial: 0, Kernel: "/boot/vmlinuz-virt", Initrd: "/boot/initramfs-virt", Append: "root=UUID=x rw console=ttyS0"}
	want := "# extlinux.conf, written by alpinist\nSERIAL 0 115200\nDEFAULT alpine\nPROMPT 0\nTIMEOUT 0\n\nLABEL alpine\n" +
		"  LINUX /boot/vmlinuz-virt\n  INITRD /boot/initramfs-virt\n  APPEND root=UUID=x rw console=ttyS0\n"
	if got := c.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := (Config{Serial: -1, Kernel: "/k"}).String(); strings.Contains(got, "SERIAL") || strings.Contains(got, "INITRD") {
		t.Errorf("no serial, no initrd:\n%s", got)
	}
}
