package vmdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/benchcmp"
	"github.com/alpinist/alpinist/internal/testkit/disktest"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

var opts = Options{FileName: "disk.vmdk", CID: 0x12345678, LongContentID: strings.Repeat("ab", 16)}

// TestQemuAccepts: qemu-img checks the VMDK, reads it as streamOptimized
// with the raw image's size and content: sizes with a partial last
// grain, a grain table of zero grains in the middle (skipped), one grain,
// and several tables.
func TestQemuAccepts(t *testing.T) {
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	for _, tc := range []struct {
		name string
		size int64
		hole bool // zero the second 32 MiB: a grain table of zero grains
	}{
		{"one grain", 512, false},
		{"partial last grain", 3<<20 + 1536, false},
		{"tables", 70 << 20, true},
		{"all zeros", 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := disktest.RawImage(t, dir, tc.size, uint64(tc.size))
			if tc.hole {
				f, _ := os.OpenFile(raw, os.O_WRONLY, 0)
				f.WriteAt(make([]byte, 32<<20), 32<<20)
				f.Close()
			}
			if tc.name == "all zeros" {
				os.WriteFile(raw, make([]byte, tc.size), 0o644)
			}
			v := filepath.Join(dir, "disk.vmdk")
			if err := WriteFile(context.Background(), v, raw, opts); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(qemuImg, "check", "-f", "vmdk", v).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img check: %v\n%s", err, out)
			}
			disktest.SameAsRaw(t, raw, v, "vmdk")
			out, err := exec.Command(qemuImg, "info", "--output", "json", v).Output()
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				Format      string
				VirtualSize int64 `json:"virtual-size"`
				Specific    struct {
					Data struct {
						CreateType string `json:"create-type"`
						CID        int64
					}
				} `json:"format-specific"`
			}
			json.Unmarshal(out, &info)
			if info.Format != "vmdk" || info.VirtualSize != (tc.size+511)/512*512 || info.Specific.Data.CreateType != "streamOptimized" || info.Specific.Data.CID != 0x12345678 {
				t.Errorf("qemu-img info: %s", out)
			}
		})
	}
}

// TestStreamLayout: the header defers the grain directory to the end,
// the file ends with the footer's marker, the footer (whose directory is
// where the file has it) and the end-of-stream marker, and two writes of
// the same image give the same bytes.
func TestStreamLayout(t *testing.T) {
	dir := t.TempDir()
	raw := disktest.RawImage(t, dir, 40<<20, 9)
	a, b := filepath.Join(dir, "a.vmdk"), filepath.Join(dir, "b.vmdk")
	for _, p := range []string{a, b} {
		if err := WriteFile(context.Background(), p, raw, opts); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("two writes of the same image differ")
	}
	le := binary.LittleEndian
	if string(da[:4]) != "KDMV" || le.Uint64(da[56:]) != gdAtEnd || le.Uint32(da[8:]) != 0x30001 {
		t.Errorf("header: % x", da[:80])
	}
	if !strings.Contains(string(da[512:1536]), `createType="streamOptimized"`) || !strings.Contains(string(da[512:1536]), `RW 81920 SPARSE "disk.vmdk"`) {
		t.Errorf("descriptor:\n%s", bytes.TrimRight(da[512:2048], "\x00"))
	}
	n := len(da)
	footerMarker, footer, eos := da[n-1536:n-1024], da[n-1024:n-512], da[n-512:]
	if le.Uint64(footerMarker) != 1 || le.Uint32(footerMarker[12:]) != markerFooter || !bytes.Equal(eos, make([]byte, 512)) || string(footer[:4]) != "KDMV" {
		t.Fatal("the file does not end with the footer's marker, the footer and the end-of-stream marker")
	}
	gd := int64(le.Uint64(footer[56:])) * 512
	gdMarker := da[gd-512 : gd]
	if le.Uint32(gdMarker[12:]) != markerGD || le.Uint64(gdMarker) != 1 {
		t.Errorf("no grain directory marker before the footer's directory at %d", gd)
	}
	if err := Write(&bytes.Buffer{}, bytes.NewReader(nil), 0, opts); err == nil {
		t.Error("an empty disk was written")
	}
	if err := Write(&bytes.Buffer{}, bytes.NewReader(make([]byte, 512)), 512, Options{FileName: "a\"b"}); err == nil {
		t.Error("a file name with a quote was written into the descriptor")
	}
	if err := Write(&bytes.Buffer{}, bytes.NewReader(make([]byte, 100)), 512, opts); err == nil {
		t.Error("a short image was written")
	}
}

// BenchmarkVmdkVsQemuImg writes a streamOptimized VMDK of a 64 MiB raw
// image beside qemu-img convert -O vmdk -o subformat=streamOptimized
// (make bench).
func BenchmarkVmdkVsQemuImg(b *testing.B) {
	qemuImg := hosttool.Need(b, "qemu-img", "qemu-utils")
	dir := b.TempDir()
	raw := disktest.RawImage(b, dir, 64<<20, 3)
	benchcmp.SideBySide(b, "qemu-img", func() error {
		return WriteFile(context.Background(), filepath.Join(dir, "ours.vmdk"), raw, opts)
	}, func() error {
		return disktest.QemuImgConvert(qemuImg, raw, filepath.Join(dir, "qemu.vmdk"), "vmdk", append(disktest.Synced, "-o", "subformat=streamOptimized")...)
	})
}
