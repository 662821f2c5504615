// Package disk lays partitions out on a raw disk image: a GPT (with its
// protective MBR) or an MBR partition table, an EFI system partition
// (FAT32) when UEFI boot is wanted, and the root ext4 file system, all at
// 1 MiB boundaries; boot code in the MBR for BIOS; every GUID and the
// MBR disk signature derived from a seed, so the same inputs give the
// same bytes. The image is sparse. go-diskfs writes the partition tables
// and the FAT32 file system.
package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/sparse"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/alpinist/alpinist/assembler/fat"
)

const (
	sector = 512
	align  = 1 << 20
)

// GPT partition types.
const (
	TypeESP     = gpt.EFISystemPartition // C12A7328-F81F-11D2-BA4B-00A0C93EC93B
	TypeLinuxFS = gpt.LinuxFilesystem    // 0FC63DAF-8483-4772-8E79-3D69D8477DE4
	// TypePReP is the PowerPC PReP boot partition, which Open Firmware
	// (SLOF) loads the boot loader's ELF image from; MBRTypePReP its MBR
	// type.
	TypePReP    = gpt.Type("9E1A2D38-C612-4316-AA26-8B49521E5A8B")
	MBRTypePReP = mbr.Type(0x41)
)

// RootType is the discoverable-partitions root type of an Alpine arch
// (arch.All's RootType; the generic Linux type for the others).
func RootType(name string) gpt.Type {
	if a, _ := arch.Lookup(name); a.RootType != "" {
		return gpt.Type(a.RootType)
	}
	return TypeLinuxFS
}

// Layout describes the disk.
type Layout struct {
	// Table is "gpt" or "mbr".
	Table string
	// Size is the disk's size in bytes; 0 fits the partitions (plus the
	// backup GPT).
	Size int64
	// Seed derives the disk and partition GUIDs and the MBR signature.
	Seed []byte
	// MBRCode is boot code for the MBR's first 440 bytes (syslinux's
	// mbr.bin or gptmbr.bin), or nil.
	MBRCode []byte
	// Partitions in order.
	Partitions []Partition
}

// Partition is one partition and what fills it.
type Partition struct {
	Name string
	// Type is the GPT type; MBRType the MBR one (0x83 Linux, 0xEF ESP).
	Type    gpt.Type
	MBRType mbr.Type
	// Size in bytes, rounded up to 1 MiB.
	Size int64
	// Bootable: the legacy BIOS bootable attribute (GPT) or the active
	// flag (MBR), where BIOS boot code looks for the partition to boot.
	Bootable bool
	// Fill writes the partition's content: f at offset, size bytes.
	Fill func(f *os.File, offset, size int64) error
}

// Placed is a partition as written.
type Placed struct {
	Name         string
	Offset, Size int64
	// GUID is the GPT partition GUID, or SIGNATURE-NN for MBR (what
	// root=PARTUUID= names).
	GUID string
}

// SeedHash is the SHA-256 of a disk's seed and what a value is for:
// where every identity of a disk (and of its images) comes from.
func SeedHash(seed []byte, what string) [32]byte {
	return sha256.Sum256(append(append([]byte{}, seed...), what...))
}

// UUID is a UUID (version 4 layout) derived from seed and what.
func UUID(seed []byte, what string) string {
	h := SeedHash(seed, what)
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Write writes the disk image path (whole or not at all) and returns
// where each partition went.
func Write(path string, l Layout) ([]Placed, error) {
	if l.Table != "gpt" && l.Table != "mbr" {
		return nil, fmt.Errorf("disk: partition table %q: want gpt or mbr", l.Table)
	}
	if len(l.MBRCode) > 440 {
		return nil, fmt.Errorf("disk: MBR boot code of %d bytes (at most 440)", len(l.MBRCode))
	}
	// Place the partitions.
	var placed []Placed
	off := int64(align)
	for i, p := range l.Partitions {
		size := (p.Size + align - 1) / align * align
		if size <= 0 {
			return nil, fmt.Errorf("disk: partition %s: size %d", p.Name, p.Size)
		}
		g := UUID(l.Seed, "partition "+strconv.Itoa(i)+" "+p.Name)
		if l.Table == "mbr" {
			g = fmt.Sprintf("%08x-%02d", mbrSignature(l.Seed), i+1)
		}
		placed = append(placed, Placed{Name: p.Name, Offset: off, Size: size, GUID: g})
		off += size
	}
	need := off + align // room for the backup GPT
	size := l.Size
	if size == 0 {
		size = need
	}
	if size < need {
		return nil, fmt.Errorf("disk: %d bytes given, the partitions need %d", l.Size, need)
	}
	if l.Table == "mbr" && size/sector > 0xFFFFFFFF {
		return nil, fmt.Errorf("disk: an MBR disk holds at most 2 TiB")
	}

	err := atomicfile.WriteFile(path, 0o644, func(f *os.File) error { return write(f, size, l, placed) })
	if err != nil {
		return nil, fmt.Errorf("disk: %s: %w", path, err)
	}
	return placed, nil
}

func write(f *os.File, size int64, l Layout, placed []Placed) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	be, err := file.New(f, false).Writable()
	if err != nil {
		return err
	}
	switch l.Table {
	case "gpt":
		t := &gpt.Table{LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true, GUID: UUID(l.Seed, "disk")}
		for i, p := range l.Partitions {
			var attrs uint64
			if p.Bootable {
				attrs |= 1 << 2 // legacy BIOS bootable
			}
			t.Partitions = append(t.Partitions, &gpt.Partition{
				Index: i + 1, Start: uint64(placed[i].Offset / sector), End: uint64((placed[i].Offset+placed[i].Size)/sector - 1),
				Size: uint64(placed[i].Size), Type: p.Type, Name: p.Name, GUID: placed[i].GUID, Attributes: attrs,
			})
		}
		if err := t.Write(be, size); err != nil {
			return err
		}
	case "mbr":
		t := &mbr.Table{LogicalSectorSize: sector, PhysicalSectorSize: sector}
		for i, p := range l.Partitions {
			t.Partitions = append(t.Partitions, &mbr.Partition{
				Index: i + 1, Bootable: p.Bootable, Type: p.MBRType,
				Start: uint32(placed[i].Offset / sector), Size: uint32(placed[i].Size / sector),
			})
		}
		if err := t.Write(be, size); err != nil {
			return err
		}
		var sig [4]byte
		binary.LittleEndian.PutUint32(sig[:], mbrSignature(l.Seed))
		if _, err := f.WriteAt(sig[:], 440); err != nil {
			return err
		}
	}
	if l.MBRCode != nil {
		if _, err := f.WriteAt(l.MBRCode, 0); err != nil {
			return err
		}
	}
	for i, p := range l.Partitions {
		if p.Fill == nil {
			continue
		}
		if err := p.Fill(f, placed[i].Offset, placed[i].Size); err != nil {
			return fmt.Errorf("partition %s: %w", p.Name, err)
		}
	}
	return nil
}

func mbrSignature(seed []byte) uint32 {
	h := SeedHash(seed, "mbr signature")
	return binary.LittleEndian.Uint32(h[:4])
}

// CopyData fills a partition with data, zeros after it.
func CopyData(data []byte) func(f *os.File, offset, size int64) error {
	return func(f *os.File, offset, size int64) error {
		if int64(len(data)) > size {
			return fmt.Errorf("%d bytes for a partition of %d", len(data), size)
		}
		_, err := f.WriteAt(data, offset)
		return err
	}
}

// CopyImage fills a partition with a file system image (such as the
// ext4 one), leaving its all-zero blocks unwritten.
func CopyImage(image string) func(f *os.File, offset, size int64) error {
	return func(f *os.File, offset, size int64) error {
		in, err := os.Open(image)
		if err != nil {
			return err
		}
		defer in.Close()
		st, err := in.Stat()
		if err != nil {
			return err
		}
		if st.Size() > size {
			return fmt.Errorf("%s is %d bytes, the partition %d", image, st.Size(), size)
		}
		_, err = sparse.Copy(f, offset, in)
		return err
	}
}

// VolumeID is the ESP's FAT volume ID for a seed: what /etc/fstab names
// it by (UUID=XXXX-XXXX).
func VolumeID(seed []byte) uint32 {
	h := SeedHash(seed, "esp volume id")
	return binary.LittleEndian.Uint32(h[:4])
}

// ESP fills a partition with a FAT32 file system (assembler/fat)
// holding files, dated mtime, with a volume ID from the seed.
func ESP(label string, files []fat.File, seed []byte, mtime time.Time) func(f *os.File, offset, size int64) error {
	return func(f *os.File, offset, size int64) error {
		return fat.Write(f, offset, size, files, fat.Options{
			Label: label, VolumeID: VolumeID(seed), Time: mtime, HiddenSectors: uint32(offset / sector),
		})
	}
}

// Firmware is what a disk image can boot with.
type Firmware struct {
	// BIOS: boot code in the MBR and a partition it boots (active in an
	// MBR, legacy-BIOS-bootable in a GPT).
	BIOS bool
	// UEFI: an EFI system partition.
	UEFI bool
}

// Detect reads a disk's partition table (r is the raw disk: a file, or a
// qcow2.Reader) for the firmware it boots with.
func Detect(r io.ReaderAt) (Firmware, error) {
	var fw Firmware
	lba0 := make([]byte, sector)
	if _, err := r.ReadAt(lba0, 0); err != nil {
		return fw, fmt.Errorf("disk: reading the MBR: %w", err)
	}
	if lba0[510] != 0x55 || lba0[511] != 0xAA {
		return fw, errors.New("disk: no partition table (no MBR signature)")
	}
	code := !sparse.Zero(lba0[:440])
	gptDisk := false
	for i := range 4 {
		e := lba0[446+16*i : 446+16*(i+1)]
		switch e[4] {
		case 0xEE:
			gptDisk = true
		case 0xEF:
			fw.UEFI = true
		}
		if e[0] == 0x80 && e[4] != 0 && code {
			fw.BIOS = true
		}
	}
	if !gptDisk {
		return fw, nil
	}
	fw.BIOS = false
	hdr := make([]byte, sector)
	if _, err := r.ReadAt(hdr, sector); err != nil {
		return fw, fmt.Errorf("disk: reading the GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return fw, errors.New("disk: a protective MBR without a GPT header")
	}
	le := binary.LittleEndian
	start, count, size := le.Uint64(hdr[72:]), le.Uint32(hdr[80:]), le.Uint32(hdr[84:])
	if size < 128 || size > 4096 || count > 1024 {
		return fw, fmt.Errorf("disk: GPT with %d entries of %d bytes", count, size)
	}
	entries := make([]byte, int(count)*int(size))
	if _, err := r.ReadAt(entries, int64(start)*sector); err != nil {
		return fw, fmt.Errorf("disk: reading the GPT entries: %w", err)
	}
	esp := gptGUID(string(TypeESP))
	for i := range int(count) {
		e := entries[i*int(size):]
		if sparse.Zero(e[:16]) {
			continue
		}
		if bytes.Equal(e[:16], esp[:]) {
			fw.UEFI = true
		}
		if le.Uint64(e[48:])&(1<<2) != 0 && code {
			fw.BIOS = true
		}
	}
	return fw, nil
}

// gptGUID is a GUID in its on-disk form (the first three fields little
// endian).
func gptGUID(s string) [16]byte {
	var g [16]byte
	h, _ := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	copy(g[:], h)
	slices.Reverse(g[0:4])
	slices.Reverse(g[4:6])
	slices.Reverse(g[6:8])
	return g
}
