package vhd

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
	"time"

	"github.com/alpinist/alpinist/internal/testkit/benchcmp"
	"github.com/alpinist/alpinist/internal/testkit/disktest"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

var opts = Options{ID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Time: time.Unix(1700000000, 0)}

// TestQemuAccepts: qemu-img reads the VHD as vpc with the raw image's
// size and content, and the disk's bytes are those qemu-img convert
// writes for a fixed VHD of the same raw image.
func TestQemuAccepts(t *testing.T) {
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	for _, size := range []int64{1 << 20, 7 << 20} {
		dir := t.TempDir()
		raw := disktest.RawImage(t, dir, size, uint64(size))
		v := filepath.Join(dir, "disk.vhd")
		if err := WriteFile(context.Background(), v, raw, opts); err != nil {
			t.Fatal(err)
		}
		// A fixed VHD has its footer only at its end: qemu-img's probe
		// (which looks at the start) takes any fixed VHD for raw.
		out, err := exec.Command(qemuImg, "info", "-f", "vpc", "--output", "json", v).Output()
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Format      string
			VirtualSize int64 `json:"virtual-size"`
		}
		json.Unmarshal(out, &info)
		if info.Format != "vpc" || info.VirtualSize != size {
			t.Errorf("qemu-img info: %s", out)
		}
		disktest.SameAsRaw(t, raw, v, "vpc")
		theirs := filepath.Join(dir, "qemu.vhd")
		if err := disktest.QemuImgConvert(qemuImg, raw, theirs, "vpc", "-o", "subformat=fixed,force_size"); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(v)
		b, _ := os.ReadFile(theirs)
		if len(a) != len(b) || !bytes.Equal(a[:size], b[:size]) {
			t.Errorf("%d bytes against qemu-img's %d, or the disk's bytes differ", len(a), len(b))
		}
		// The footers differ only in creator, time and unique id.
		fa, fb := a[size:], b[size:]
		for _, r := range [][2]int{{0, 24}, {36, 64}, {84, 512}} {
			if !bytes.Equal(fa[r[0]:r[1]], fb[r[0]:r[1]]) {
				t.Errorf("footer bytes %d-%d: % x, qemu-img's % x", r[0], r[1], fa[r[0]:r[1]], fb[r[0]:r[1]])
			}
		}
	}
}

// TestAzureRules: a fixed disk, its size a whole number of MiB, the
// file that size plus the footer, a valid checksum, and a unique id.
func TestAzureRules(t *testing.T) {
	dir := t.TempDir()
	raw := disktest.RawImage(t, dir, 3<<20, 3)
	v := filepath.Join(dir, "disk.vhd")
	if err := WriteFile(context.Background(), v, raw, opts); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(v)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	size, err := ReadFooter(f, st.Size())
	if err != nil || size != 3<<20 || st.Size() != size+FooterSize {
		t.Fatalf("ReadFooter = %d, %v (file %d bytes)", size, err, st.Size())
	}
	footer := make([]byte, FooterSize)
	f.ReadAt(footer, size)
	if bytes.Equal(footer[68:84], make([]byte, 16)) {
		t.Error("no unique id")
	}
	if got := binary.BigEndian.Uint32(footer[24:]); got != uint32(1700000000-vhdEpoch) {
		t.Errorf("timestamp %d", got)
	}

	for _, bad := range []int64{0, 3<<20 + 512, MaxSize + MiB} {
		if _, err := Footer(bad, opts); err == nil {
			t.Errorf("a disk of %d bytes was accepted", bad)
		}
	}
	if _, err := Footer(3<<20+512, opts); err == nil || !strings.Contains(err.Error(), "whole number of MiB") {
		t.Errorf("the error does not say why: %v", err)
	}
	// A footer that does not add up is refused.
	footer[100] ^= 1
	if _, err := ReadFooter(bytes.NewReader(append(make([]byte, size), footer...)), st.Size()); err == nil {
		t.Error("a wrong checksum was accepted")
	}
}

func FuzzReadFooter(f *testing.F) {
	good, _ := Footer(1<<20, opts)
	f.Add(good)
	f.Add([]byte("conectix"))
	f.Fuzz(func(t *testing.T, footer []byte) {
		ReadFooter(bytes.NewReader(footer), int64(len(footer)))
	})
}

// BenchmarkVhdVsQemuImg writes a fixed VHD of a 64 MiB raw image beside
// qemu-img convert -O vpc -o subformat=fixed,force_size (make bench).
func BenchmarkVhdVsQemuImg(b *testing.B) {
	qemuImg := hosttool.Need(b, "qemu-img", "qemu-utils")
	dir := b.TempDir()
	raw := disktest.RawImage(b, dir, 64<<20, 3)
	benchcmp.SideBySide(b, "qemu-img", func() error {
		return WriteFile(context.Background(), filepath.Join(dir, "ours.vhd"), raw, opts)
	}, func() error {
		return disktest.QemuImgConvert(qemuImg, raw, filepath.Join(dir, "qemu.vhd"), "vpc", append(disktest.Synced, "-o", "subformat=fixed,force_size")...)
	})
}
