package iso

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/assembler/fat"
	"github.com/alpinist/alpinist/internal/testkit/benchcmp"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

var when = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// isolinux are Debian's ISOLINUX files (package isolinux, syslinux-common).
func isolinux(t testing.TB) (bin, mbr, ldlinux []byte) {
	t.Helper()
	read := func(p, pkg string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (install Debian's %s)", err, pkg)
		}
		return b
	}
	return read("/usr/lib/ISOLINUX/isolinux.bin", "isolinux"), read("/usr/lib/ISOLINUX/isohdpfx.bin", "isolinux"),
		read("/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common")
}

// tree is the content of a live ISO, as files and as a host directory
// (for xorriso), with the EFI image made by package fat.
func tree(t *testing.T) ([]File, string) {
	t.Helper()
	bin, _, ldlinux := isolinux(t)
	dir := t.TempDir()
	efi := filepath.Join(t.TempDir(), "efi.img")
	f, err := os.Create(efi)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(4 << 20)
	if err := fat.Write(f, 0, 4<<20, []fat.File{{Path: "EFI/BOOT/BOOTX64.EFI", Data: bytes.Repeat([]byte("efi"), 100000)}, {Path: "EFI/BOOT/grub.cfg", Data: []byte("set timeout=0\n")}}, fat.Options{Label: "EFI", VolumeID: 7, Time: when}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	efiData, _ := os.ReadFile(efi)
	big := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 400_000), 0o644) // 6.4 MB, not sector aligned + 0
	bigData, _ := os.ReadFile(big)
	files := []File{
		{Path: "boot/vmlinuz-virt", Data: bytes.Repeat([]byte{1, 2, 3}, 1_000_001)},
		{Path: "boot/initramfs-live", Data: []byte("initramfs")},
		{Path: "boot/syslinux/isolinux.bin", Data: bin},
		{Path: "boot/syslinux/ldlinux.c32", Data: ldlinux},
		{Path: "boot/syslinux/isolinux.cfg", Data: []byte("DEFAULT live\n")},
		{Path: "boot/grub/efi.img", Source: efi},
		{Path: "EFI/BOOT/grub.cfg", Data: []byte("set timeout=0\n")},
		{Path: "a very long name with spaces and.many.dots.txt", Data: []byte("long")},
		{Path: "empty", Data: nil},
		{Path: "rootfs.tar.gz", Source: big},
	}
	for _, f := range files {
		data := f.Data
		switch f.Source {
		case efi:
			data = efiData
		case big:
			data = bigData
		}
		p := filepath.Join(dir, f.Path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files, dir
}

func liveOptions(t *testing.T) Options {
	_, mbr, _ := isolinux(t)
	return Options{
		VolumeID: "demo", SystemID: "LINUX", Preparer: "alpinist", Time: when,
		Catalog: "boot/syslinux/boot.cat",
		Boot: []Boot{
			{Path: "boot/syslinux/isolinux.bin", LoadSectors: 4, InfoTable: true},
			{Path: "boot/grub/efi.img", EFI: true},
		},
		Hybrid: true, HybridMBR: mbr, Seed: []byte("seed"),
	}
}

func write(t *testing.T, files []File, o Options) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "live.iso")
	if err := WriteFile(context.Background(), p, files, o); err != nil {
		t.Fatal(err)
	}
	return p
}

// report is xorriso's account of an image's boot records and system
// area, with what differs by design between two writers masked: GUIDs,
// the MBR signature, LBAs and sizes (the same tree is laid out in another
// order), and the media summary.
func report(t *testing.T, xorriso, img string) string {
	t.Helper()
	out, err := exec.Command(xorriso, "-indev", img, "-report_el_torito", "plain", "-report_system_area", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -report_el_torito: %v\n%s", err, out)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.Contains(l, ":") || strings.HasPrefix(l, "xorriso") || strings.Contains(l, "Media") || strings.Contains(l, "GUID") || strings.Contains(l, "Drive current") {
			continue
		}
		keep = append(keep, regexp.MustCompile(`\b\d+\b`).ReplaceAllString(strings.Join(strings.Fields(l), " "), "N"))
	}
	return strings.Join(keep, "\n")
}

// TestLikeXorriso lays out the same tree as `xorriso -as mkisofs` with
// Alpine's options and compares what xorriso reports of both: the same
// El Torito entries and options (boot info table, isohybrid-suitable),
// the same MBR and GPT partitions; and xorriso and isoinfo read every
// file back, with its Rock Ridge name.
func TestLikeXorriso(t *testing.T) {
	xorriso := hosttool.Need(t, "xorriso", "xorriso")
	isoinfo := hosttool.Need(t, "isoinfo", "genisoimage")
	files, dir := tree(t)
	ours := write(t, files, liveOptions(t))
	theirs := filepath.Join(t.TempDir(), "xorriso.iso")
	cmd := exec.Command(xorriso, "-as", "mkisofs", "-quiet", "-o", theirs, "-full-iso9660-filenames", "-rational-rock", "-sysid", "LINUX", "-volid", "demo",
		"-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin", "-eltorito-boot", "boot/syslinux/isolinux.bin", "-eltorito-catalog", "boot/syslinux/boot.cat",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "-eltorito-alt-boot", "-e", "boot/grub/efi.img", "-isohybrid-gpt-basdat", "-no-emul-boot", dir)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1714979289")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xorriso -as mkisofs: %v\n%s", err, out)
	}
	a, b := report(t, xorriso, ours), report(t, xorriso, theirs)
	t.Logf("xorriso's report, numbers masked:\n%s", a)
	if a != b {
		t.Errorf("xorriso reports our image as\n%s\n\nand its own as\n%s", a, b)
	} else if !strings.Contains(a, "boot-info-table isohybrid-suitable") || !strings.Contains(a, "MBR isohybrid cyl-align-on GPT") {
		t.Errorf("the report misses the boot options:\n%s", a)
	}

	out, err := exec.Command(isoinfo, "-d", "-i", ours).CombinedOutput()
	for _, want := range []string{"Volume id: demo", "System id: LINUX", "El Torito VD version 1 found", "Rock Ridge signatures version 1 found", "Nsect 4", "Bootid 88 (bootable)"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("isoinfo -d: no %q (%v)\n%s", want, err, out)
		}
	}
	out, err = exec.Command(isoinfo, "-R", "-l", "-i", ours).CombinedOutput()
	for _, want := range []string{"a very long name with spaces and.many.dots.txt", "vmlinuz-virt", "-r--r--r--   1    0    0         3000003 May  6 2024"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("isoinfo -R -l: no %q (%v)\n%s", want, err, out)
		}
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := exec.Command(xorriso, "-osirrox", "on", "-indev", ours, "-extract", "/", back).CombinedOutput(); err != nil {
		t.Fatalf("xorriso -extract: %v\n%s", err, out)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(back, f.Path))
		want, _ := os.ReadFile(filepath.Join(dir, f.Path))
		if f.Path == "boot/syslinux/isolinux.bin" {
			// Patched: the boot info table.
			if err == nil && len(got) == len(want) && bytes.Equal(got[64:], want[64:]) && binary.LittleEndian.Uint32(got[8:]) == 16 {
				continue
			}
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s reads back wrong (%v, %d bytes, want %d)", f.Path, err, len(got), len(want))
		}
	}
	// The boot info table matches xorriso's, but for the file's LBA.
	ia, ib := bootInfo(t, ours), bootInfo(t, theirs)
	ia[1], ib[1] = 0, 0
	if ia != ib {
		t.Errorf("boot info table %v, xorriso's %v", ia, ib)
	}
}

// bootInfo is the boot info table of an image's first El Torito image.
func bootInfo(t *testing.T, img string) [4]uint32 {
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	cat := binary.LittleEndian.Uint32(data[17*SectorSize+71:])
	lba := binary.LittleEndian.Uint32(data[int(cat)*SectorSize+32+8:])
	at := int(lba)*SectorSize + 8
	var v [4]uint32
	for i := range v {
		v[i] = binary.LittleEndian.Uint32(data[at+4*i:])
	}
	return v
}

// TestPartitions reads the hybrid MBR and GPT as fdisk and sgdisk do.
func TestPartitions(t *testing.T) {
	sfdisk := hosttool.Need(t, "sfdisk", "fdisk")
	files, _ := tree(t)
	img := write(t, files, liveOptions(t))
	st, _ := os.Stat(img)
	if st.Size()%(1<<20) != 0 {
		t.Errorf("size %d is not whole cylinders (1 MiB)", st.Size())
	}
	out, err := exec.Command(sfdisk, "--dump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	// sfdisk reads the MBR (the GPT's first entry overlaps it, as
	// xorriso's does, so the MBR is what disks boot by).
	flat := strings.Join(strings.Fields(string(out)), " ")
	for _, want := range []string{"label: dos", "start= 0, size= " + itoa(st.Size()/512) + ", type=0, bootable", "type=ef"} {
		if !strings.Contains(flat, want) {
			t.Errorf("sfdisk --dump: no %q\n%s", want, out)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestReproducible writes the same image twice, in two time zones and
// umasks: the same bytes.
func TestReproducible(t *testing.T) {
	files, _ := tree(t)
	a, _ := os.ReadFile(write(t, files, liveOptions(t)))
	t.Setenv("TZ", "Asia/Kolkata")
	b, _ := os.ReadFile(write(t, files, liveOptions(t)))
	if !bytes.Equal(a, b) {
		t.Error("two writes differ")
	}
	o := liveOptions(t)
	o.Seed = []byte("other")
	c, _ := os.ReadFile(write(t, files, o))
	if bytes.Equal(a[:1024], c[:1024]) {
		t.Error("another seed gives the same MBR and GPT")
	}
}

func TestErrors(t *testing.T) {
	files, _ := tree(t)
	bin, mbr, _ := isolinux(t)
	for want, tc := range map[string]struct {
		files []File
		o     func(*Options)
	}{
		"longer than 32":             {files, func(o *Options) { o.VolumeID = strings.Repeat("x", 33) }},
		"not a clean relative path":  {append(files, File{Path: "a/../b"}), nil},
		"given twice":                {append(files, File{Path: "empty"}), nil},
		"is a file and a directory":  {append(files, File{Path: "empty/x"}), nil},
		"boot image x is not a file": {files, func(o *Options) { o.Boot[1].Path = "x" }},
		"need a boot catalog":        {files, func(o *Options) { o.Catalog = "" }},
		"no isohybrid-capable":       {append(files[:2:2], File{Path: "boot/syslinux/isolinux.bin", Data: make([]byte, 2048)}), func(o *Options) { o.Boot = o.Boot[:1] }},
		"not 432":                    {files, func(o *Options) { o.HybridMBR = mbr[:100] }},
		"no such file":               {append(files, File{Path: "gone", Source: "/nonexistent"}), nil},
		"patched into data":          {append(files[:2:2], File{Path: "boot/syslinux/isolinux.bin", Source: "/usr/lib/ISOLINUX/isolinux.bin"}), func(o *Options) { o.Boot = o.Boot[:1] }},
		"the first entry is EFI's":   {files, func(o *Options) { o.Boot[0], o.Boot[1] = o.Boot[1], o.Boot[0] }},
		"65535 sectors of 512":       {append(files, File{Path: "big.img", Data: make([]byte, 33<<20)}), func(o *Options) { o.Boot[1].Path = "big.img" }},
		"too small for a boot info":  {append(files, File{Path: "tiny", Data: bin[:10]}), func(o *Options) { o.Boot[0].Path = "tiny"; o.HybridMBR = nil }},
	} {
		o := liveOptions(t)
		o.Boot = append([]Boot(nil), o.Boot...)
		if tc.o != nil {
			tc.o(&o)
		}
		err := WriteFile(context.Background(), filepath.Join(t.TempDir(), "x.iso"), tc.files, o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
}

func TestISONames(t *testing.T) {
	for in, want := range map[string]string{
		"vmlinuz-virt":                           "VMLINUZ_VIRT.",
		"rootfs.tar.gz":                          "ROOTFS_TAR.GZ",
		"grub.cfg":                               "GRUB.CFG",
		".hidden":                                "_HIDDEN.",
		"é.txt":                                  "_.TXT",
		strings.Repeat("a", 40) + ".verylongext": strings.Repeat("A", 21) + ".VERYLONG",
	} {
		if got := isoName(in, false); got != want {
			t.Errorf("isoName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := isoName("syslinux.d", true); got != "SYSLINUX_D" {
		t.Errorf("directory: %q", got)
	}
}

// TestDetect reads the firmware of our images and xorriso's.
func TestDetect(t *testing.T) {
	files, _ := tree(t)
	for name, tc := range map[string]struct {
		boot []Boot
		want Firmware
	}{
		"bios+efi": {liveOptions(t).Boot, Firmware{ISO: true, BIOS: true, EFI: true}},
		"efi":      {liveOptions(t).Boot[1:], Firmware{ISO: true, EFI: true}},
		"bios":     {liveOptions(t).Boot[:1], Firmware{ISO: true, BIOS: true}},
	} {
		o := liveOptions(t)
		o.Boot = tc.boot
		if !tc.want.BIOS {
			o.HybridMBR = nil
		}
		f, err := os.Open(write(t, files, o))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Detect(f)
		f.Close()
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, tc.want)
		}
	}
	if got, err := Detect(bytes.NewReader(make([]byte, 1<<20))); err != nil || got.ISO {
		t.Errorf("zeros: %+v, %v", got, err)
	}
}

func FuzzDetect(f *testing.F) {
	// A small image: the descriptors and the catalog, sectors 16-20.
	files := []File{{Path: "boot.img", Data: make([]byte, 4096)}, {Path: "efi.img", Data: make([]byte, 4096)}}
	o := Options{VolumeID: "x", Time: when, Catalog: "boot.cat", Boot: []Boot{{Path: "boot.img", LoadSectors: 4}, {Path: "efi.img", EFI: true}}}
	p := filepath.Join(f.TempDir(), "x.iso")
	if err := WriteFile(context.Background(), p, files, o); err != nil {
		f.Fatal(err)
	}
	img, _ := os.ReadFile(p)
	f.Add(img[16*SectorSize:])
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fuzzed bytes are sectors 16 on, after an empty system area.
		Detect(bytes.NewReader(append(make([]byte, 16*SectorSize), b...)))
	})
}

// BenchmarkIsoVsXorriso writes the same live ISO (a 64 MiB
// rootfs.tar.gz, a 14 MiB kernel, ISOLINUX and a 4 MiB EFI image) as
// `xorriso -as mkisofs` with Alpine's options, both from the page cache.
func BenchmarkIsoVsXorriso(b *testing.B) {
	xorriso := hosttool.Need(b, "xorriso", "xorriso")
	bin, mbr, ldlinux := isolinux(b)
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	random := func(n int) []byte {
		out := make([]byte, n)
		x := uint64(88172645463325252)
		for i := 0; i+8 <= n; i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			binary.LittleEndian.PutUint64(out[i:], x)
		}
		return out
	}
	content := map[string][]byte{
		"boot/vmlinuz-virt":          random(14 << 20),
		"boot/initramfs-live":        random(6 << 20),
		"boot/syslinux/isolinux.bin": bin,
		"boot/syslinux/ldlinux.c32":  ldlinux,
		"boot/syslinux/isolinux.cfg": []byte("DEFAULT live\n"),
		"boot/grub/efi.img":          random(4 << 20),
		"EFI/BOOT/grub.cfg":          []byte("set timeout=0\n"),
		"rootfs.tar.gz":              random(64 << 20),
	}
	var files []File
	for name, data := range content {
		p := filepath.Join(tree, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		f := File{Path: name, Source: p}
		if name == "boot/syslinux/isolinux.bin" {
			f = File{Path: name, Data: data}
		}
		files = append(files, f)
	}
	o := Options{VolumeID: "demo", SystemID: "LINUX", Time: when, Catalog: "boot/syslinux/boot.cat",
		Boot:   []Boot{{Path: "boot/syslinux/isolinux.bin", LoadSectors: 4, InfoTable: true}, {Path: "boot/grub/efi.img", EFI: true}},
		Hybrid: true, HybridMBR: mbr, Seed: []byte("seed")}
	benchcmp.SideBySide(b, "xorriso", func() error {
		return WriteFile(context.Background(), filepath.Join(dir, "ours.iso"), files, o)
	}, func() error {
		out, err := exec.Command(xorriso, "-as", "mkisofs", "-quiet", "-o", filepath.Join(dir, "xorriso.iso"), "-full-iso9660-filenames", "-rational-rock", "-sysid", "LINUX", "-volid", "demo",
			"-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin", "-eltorito-boot", "boot/syslinux/isolinux.bin", "-eltorito-catalog", "boot/syslinux/boot.cat",
			"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "-eltorito-alt-boot", "-e", "boot/grub/efi.img", "-isohybrid-gpt-basdat", "-no-emul-boot", tree).CombinedOutput()
		if err != nil {
			return fmt.Errorf("xorriso: %v\n%s", err, out)
		}
		return nil
	})
}
