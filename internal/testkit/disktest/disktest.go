// Package disktest reads a disk image's partition table with sfdisk and
// copies partitions out of it, for tests that check them with the file
// system tools.
package disktest

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/alpinist/alpinist/internal/fsprobe"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

// Table is what sfdisk -J says of a partition table.
type Table struct {
	Label      string // gpt or dos
	Partitions []Partition
}

// Partition is one entry of a Table.
type Partition struct {
	Node, Type, Attrs string
	Start, Size       int64 // in 512-byte sectors
	Bootable          bool
}

// Read reads the partition table of the disk image raw.
func Read(t testing.TB, raw string) Table {
	t.Helper()
	out, err := exec.Command(hosttool.Need(t, "sfdisk", "fdisk"), "-J", raw).Output()
	if err != nil {
		t.Fatalf("sfdisk -J %s: %v", raw, err)
	}
	var pt struct{ PartitionTable Table }
	if err := json.Unmarshal(out, &pt); err != nil {
		t.Fatal(err)
	}
	return pt.PartitionTable
}

// CopyOut copies the partition out of raw into a file of the test's
// temporary directory, and returns its path.
func (p Partition) CopyOut(t testing.TB, raw string) string {
	t.Helper()
	in, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(t.TempDir(), "partition")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, io.NewSectionReader(in, p.Start*512, p.Size*512))
	if err = errors.Join(err, f.Close()); err != nil {
		t.Fatalf("copying partition %s out: %v", p.Node, err)
	}
	return path
}

// Ext4UUID is the UUID of the ext4 file system image (or partition) img.
func Ext4UUID(t testing.TB, img string) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	uuid, _, ok := fsprobe.Ext4(f)
	if !ok {
		t.Fatalf("%s is not ext4", img)
	}
	return uuid
}
