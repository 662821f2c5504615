package fat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

var when = time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)

func image(t *testing.T, size int64, files []File, o Options) string {
	p := filepath.Join(t.TempDir(), "esp.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	if err := Write(f, 0, size, files, o); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFsckClean(t *testing.T) {
	fsck := hosttool.Need(t, "fsck.fat", "dosfstools")
	mdir := hosttool.Need(t, "mdir", "mtools")
	mtype := hosttool.Need(t, "mtype", "mtools")
	big := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB: many clusters
	files := []File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: big},
		{Path: "EFI/BOOT/grub.cfg", Data: []byte("set timeout=0\n")},
		{Path: "EFI/alpine/empty", Data: nil},
		{Path: "README", Data: []byte("hi")},
	}
	for _, size := range []int64{4 << 20, 8 << 20, 32 << 20, 33 << 20, 64 << 20, 100 << 20, 300 << 20} { // FAT16 below 33 MiB
		img := image(t, size, files, Options{Label: "ESP", VolumeID: 0x1234abcd, Time: when, HiddenSectors: 2048})
		out, err := exec.Command(fsck, "-n", "-v", img).CombinedOutput()
		if err != nil || strings.Contains(string(out), "Fixing") || strings.Contains(string(out), "should be") {
			t.Errorf("%d MiB: fsck.fat -n: %v\n%s", size>>20, err, out)
		}
		out, err = exec.Command(mdir, "-i", img, "::/EFI/BOOT").CombinedOutput()
		flat := strings.Join(strings.Fields(string(out)), " ")
		if err != nil || !strings.Contains(flat, "BOOTX64 EFI 3000000 2024-05-06 7:08") || !strings.Contains(flat, "grub cfg 14") ||
			!strings.Contains(string(out), "Volume Serial Number is 1234-ABCD") {
			t.Errorf("%d MiB: mdir: %v\n%s", size>>20, err, out)
		}
		got, err := exec.Command(mtype, "-i", img, "::/EFI/BOOT/BOOTX64.EFI").Output()
		if err != nil || !bytes.Equal(got, big) {
			t.Errorf("%d MiB: the big file reads back wrong (%v, %d bytes)", size>>20, err, len(got))
		}
	}
	// Reproducible.
	a, _ := os.ReadFile(image(t, 40<<20, files, Options{VolumeID: 1, Time: when}))
	b, _ := os.ReadFile(image(t, 40<<20, files, Options{VolumeID: 1, Time: when}))
	if !bytes.Equal(a, b) {
		t.Error("two writes differ")
	}
}

func TestErrors(t *testing.T) {
	f, _ := os.Create(filepath.Join(t.TempDir(), "x"))
	defer f.Close()
	for want, tc := range map[string]struct {
		size  int64
		files []File
		o     Options
	}{
		"not between 1 MiB":     {512 << 10, nil, Options{}},
		"FAT16 needs at least":  {2 << 20, nil, Options{}},
		"FAT16's holds 511":     {4 << 20, manyFiles(600), Options{}},
		"do not fit 4194304":    {4 << 20, []File{{Path: "BIG", Data: make([]byte, 5<<20)}}, Options{}},
		"a FAT name cannot":     {40 << 20, []File{{Path: "EFI/a:b.efi"}}, Options{}},
		"not a valid file name": {40 << 20, []File{{Path: "EFI/name "}}, Options{}},
		"given twice":           {40 << 20, []File{{Path: "A"}, {Path: "A"}}, Options{}},
		"longer than 11":        {40 << 20, nil, Options{Label: "a very long label"}},
		"do not fit":            {34 << 20, []File{{Path: "BIG", Data: make([]byte, 40<<20)}}, Options{}},
	} {
		if err := Write(f, 0, tc.size, tc.files, tc.o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
}

// TestLongNames: names that do not fit 8.3 (UEFI's removable-media
// names BOOTRISCV64.EFI, BOOTLOONGARCH64.EFI; mixed case) get VFAT
// long-name entries and unique short aliases that fsck.fat accepts and
// mtools reads back, by either name.
func TestLongNames(t *testing.T) {
	fsck := hosttool.Need(t, "fsck.fat", "dosfstools")
	mdir := hosttool.Need(t, "mdir", "mtools")
	mtype := hosttool.Need(t, "mtype", "mtools")
	files := []File{
		{Path: "EFI/BOOT/BOOTRISCV64.EFI", Data: []byte("riscv")},
		{Path: "EFI/BOOT/BOOTRISCV32.EFI", Data: []byte("riscv32")},
		{Path: "EFI/BOOT/BOOTLOONGARCH64.EFI", Data: []byte("loong")},
		{Path: "EFI/BOOT/grub.cfg", Data: []byte("cfg")},
		{Path: "EFI/Mixed Case Directory/a file with a very long name that takes three entries.txt", Data: []byte("long")},
		{Path: "Grub.cfg", Data: []byte("mixed")},
	}
	for _, size := range []int64{4 << 20, 40 << 20} {
		img := image(t, size, files, Options{VolumeID: 7, Time: when})
		if out, err := exec.Command(fsck, "-n", "-v", img).CombinedOutput(); err != nil || strings.Contains(string(out), "Fixing") || strings.Contains(string(out), "should be") {
			t.Errorf("%d MiB: fsck.fat -n: %v\n%s", size>>20, err, out)
		}
		out, err := exec.Command(mdir, "-i", img, "::/EFI/BOOT").CombinedOutput()
		for _, w := range []string{"BOOTRI~1 EFI", "BOOTRISCV32.EFI", "BOOTRI~2 EFI", "BOOTRISCV64.EFI", "BOOTLO~1 EFI", "BOOTLOONGARCH64.EFI"} {
			if err != nil || !strings.Contains(string(out), w) {
				t.Errorf("%d MiB: mdir lacks %q: %v\n%s", size>>20, w, err, out)
			}
		}
		for _, f := range files {
			got, err := exec.Command(mtype, "-i", img, "::/"+f.Path).Output()
			if err != nil || !bytes.Equal(got, f.Data) {
				t.Errorf("%d MiB: %s reads %q (%v)", size>>20, f.Path, got, err)
			}
		}
		if got, err := exec.Command(mtype, "-i", img, "::/EFI/BOOT/BOOTRI~2.EFI").Output(); err != nil || string(got) != "riscv" {
			t.Errorf("by its alias: %q (%v)", got, err)
		}
	}
}

func manyFiles(n int) []File {
	var files []File
	for i := range n {
		files = append(files, File{Path: fmt.Sprintf("F%d", i)})
	}
	return files
}
