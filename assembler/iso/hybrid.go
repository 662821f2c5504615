package iso

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/assembler/disk"
)

// The isohybrid system area.

// gptEntries is how many GPT entries fit the system area after the MBR
// and the header (xorriso's 248), and gptTail the backup's bytes.
const (
	gptEntries = 248
	gptTail    = (gptEntries*128/512 + 1) * 512
)

// basicData is GPT's basic data partition type, as xorriso marks both.
var basicData = guidBytes("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")

// writeSystemArea writes the MBR (and, with an EFI image, its partition
// and the GPT with its backup).
func (img *image) writeSystemArea(f *os.File) error {
	total := int64(img.sectors) * SectorSize / 512
	mbr := make([]byte, 512)
	copy(mbr, img.o.HybridMBR[:min(len(img.o.HybridMBR), 432)])
	if img.o.HybridMBR != nil {
		binary.LittleEndian.PutUint32(mbr[432:], img.byPath[img.o.Boot[0].Path].lba*4)
	}
	sig := disk.SeedHash(img.o.Seed, "iso mbr signature")
	copy(mbr[440:444], sig[:4])
	// Partition 1: the whole image, active, type 0 (isohybrid's).
	part := func(i int, active bool, typ byte, start, count int64) {
		e := mbr[446+16*i : 446+16*(i+1)]
		if active {
			e[0] = 0x80
		}
		copy(e[1:4], chs(start))
		e[4] = typ
		copy(e[5:8], chs(start+count-1))
		binary.LittleEndian.PutUint32(e[8:], uint32(start))
		binary.LittleEndian.PutUint32(e[12:], uint32(count))
	}
	part(0, true, 0, 0, total)
	var efi *node
	for _, b := range img.o.Boot {
		if b.EFI {
			efi = img.byPath[b.Path]
			break
		}
	}
	if efi != nil {
		part(1, false, 0xEF, int64(efi.lba)*4, (efi.size+511)/512)
	}
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	if efi == nil {
		return nil
	}
	return img.writeGPT(f, total, efi)
}

// writeGPT writes xorriso's -isohybrid-gpt-basdat GPT: entry 1 over the
// image's data, entry 2 over the EFI image, both basic data, read-only
// and required; the backup at the end.
func (img *image) writeGPT(f *os.File, total int64, efi *node) error {
	id := func(what string) []byte {
		h := disk.SeedHash(img.o.Seed, what)
		h[7] = h[7]&0x0f | 0x40 // version 4, stored mixed-endian
		h[8] = h[8]&0x3f | 0x80
		return h[:16]
	}
	tailSectors := int64(gptTail / 512)
	lastUsable := total - tailSectors - 1
	entries := make([]byte, gptEntries*128)
	entry := func(i int, start, end int64, name string) {
		e := entries[i*128 : (i+1)*128]
		copy(e[0:16], basicData)
		copy(e[16:32], id(fmt.Sprintf("iso gpt partition %d", i+1)))
		binary.LittleEndian.PutUint64(e[32:], uint64(start))
		binary.LittleEndian.PutUint64(e[40:], uint64(end))
		binary.LittleEndian.PutUint64(e[48:], 1<<60|1)
		for k, r := range name {
			binary.LittleEndian.PutUint16(e[56+2*k:], uint16(r))
		}
	}
	entry(0, 0, lastUsable, "ISOHybrid")
	entry(1, int64(efi.lba)*4, int64(efi.lba)*4+(efi.size+511)/512-1, "ISOHybrid1")
	entriesCRC := crc32.ChecksumIEEE(entries)
	header := func(self, alt, entriesLBA int64) []byte {
		h := make([]byte, 512)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], uint64(self))
		binary.LittleEndian.PutUint64(h[32:], uint64(alt))
		binary.LittleEndian.PutUint64(h[40:], 64)
		binary.LittleEndian.PutUint64(h[48:], uint64(lastUsable))
		copy(h[56:72], id("iso gpt disk"))
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(h[80:], gptEntries)
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	for _, w := range []struct {
		b   []byte
		lba int64
	}{
		{header(1, total-1, 2), 1},
		{entries, 2},
		{entries, total - tailSectors},
		{header(total-1, 1, total-tailSectors), total - 1},
	} {
		if _, err := f.WriteAt(w.b, w.lba*512); err != nil {
			return err
		}
	}
	return nil
}

// chs is an MBR's cylinder-head-sector address of a 512-byte sector
// with 64 heads and 32 sectors per track, or the "beyond" marker.
func chs(lba int64) []byte {
	c, rem := lba/(64*32), lba%(64*32)
	h, s := rem/32, rem%32+1
	if c > 1023 {
		return []byte{0xFE, 0xFF, 0xFF}
	}
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// guidBytes is a GUID in its on-disk (mixed-endian) form.
func guidBytes(s string) []byte {
	var raw []byte
	for _, part := range strings.Split(s, "-") {
		for i := 0; i < len(part); i += 2 {
			var v byte
			fmt.Sscanf(part[i:i+2], "%02X", &v)
			raw = append(raw, v)
		}
	}
	slices.Reverse(raw[0:4])
	slices.Reverse(raw[4:6])
	slices.Reverse(raw[6:8])
	return raw
}
