// Package extlinux installs EXTLINUX, syslinux's BIOS boot loader for
// ext2/3/4, into an ext4 image alpinist wrote, on the host: without
// mounting the image and without running extlinux (which needs root and
// x86 code). It does what `extlinux --install` does, byte for byte:
//
//   - the boot sector, ldlinux.sys and ldlinux.c32 come from the target's
//     own extlinux program, which embeds them (Extract);
//   - ldlinux.sys goes into the file system as a fully allocated file whose
//     blocks never move (immutable), and is patched with the list of its
//     sectors, the install directory and its checksum (Loader.Patch);
//   - the boot sector (the partition's first 512 bytes, which ext4 leaves
//     free) points at ldlinux.sys's first sector (Install.BootSector).
//
// docs/design/extlinux.md describes the formats, checked against
// syslinux's sources and Debian's extlinux 6.04.
package extlinux

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

const (
	sectorSize = 512
	// ldlinuxMagic starts ldlinux.sys's patch area and ends the boot sector.
	ldlinuxMagic = 0x3EB202FE
	// advSectors is the size of the ADV (two copies of one sector) that
	// follows the loader in ldlinux.sys.
	advSectors = 2
)

var le = binary.LittleEndian

// Loader is one syslinux build's EXTLINUX: its boot sector, ldlinux.sys
// and ldlinux.c32, which must come from the same build.
type Loader struct {
	// Version is the loader's banner version, such as "6.04".
	Version string
	// C32 is ldlinux.c32, the loader's second half, installed next to
	// ldlinux.sys.
	C32 []byte

	bootSector []byte // 512 bytes
	image      []byte // ldlinux.sys without its ADV, padded to whole sectors
	patchArea  int    // offset of the patch area in image
}

// Extract takes the boot sector, ldlinux.sys and ldlinux.c32 out of an
// extlinux executable (ELF, any libc), where syslinux's build embeds
// them as arrays in the data section, with their lengths as constants.
func Extract(exe []byte) (*Loader, error) {
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		return nil, fmt.Errorf("extlinux: not an ELF program: %w", err)
	}
	// The arrays are in a writable data section, their lengths in a
	// read-only one; search every section that has bytes in the file.
	var data []byte
	var sections [][]byte
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 {
			continue
		}
		if s.Offset+s.Size > uint64(len(exe)) {
			return nil, fmt.Errorf("extlinux: section %s is beyond the end of the file", s.Name)
		}
		b := exe[s.Offset : s.Offset+s.Size]
		sections = append(sections, b)
		if bs := findBootSector(b); bs >= 0 && data == nil {
			data = b
		}
	}
	if data == nil {
		return nil, errors.New("extlinux: no EXTLINUX boot sector in this program (is it syslinux's extlinux?)")
	}
	l := &Loader{}
	bs := findBootSector(data)
	l.bootSector = bytes.Clone(data[bs : bs+sectorSize])

	// ldlinux.sys: the banner "\r\nSYSLINUX <version> \0", then the patch
	// area (magic first) on a 4-byte boundary.
	start, pa := -1, -1
	for off := bs + sectorSize; ; {
		i := bytes.Index(data[off:], []byte("\r\nSYSLINUX "))
		if i < 0 {
			break
		}
		s := off + i
		for p := s; p+4 <= len(data) && p < s+64; p += 4 {
			if le.Uint32(data[p:]) == ldlinuxMagic {
				start, pa = s, p-s
				break
			}
		}
		if start >= 0 {
			break
		}
		off = s + 1
	}
	if start < 0 {
		return nil, errors.New("extlinux: no ldlinux.sys image in this program")
	}
	l.patchArea = pa
	banner := data[start+2:]
	if end := bytes.IndexByte(banner, 0); end > 0 && end < 40 {
		l.Version = string(bytes.TrimSpace(bytes.TrimPrefix(banner[:end], []byte("SYSLINUX"))))
	}
	// Its length: the constant syslinux_ldlinux_len, a whole number of
	// sectors whose last one holds the image's end (zero padding
	// follows). Guessing from trailing zeros alone could fall a sector
	// short, so the length must also be one of the program's constants.
	words := constants(sections)
	n, err := imageLength(data[start:], words)
	if err != nil {
		return nil, err
	}
	l.image = bytes.Clone(data[start : start+n])
	// The boot sector checks the instance word that follows the magic.
	if !bytes.Contains(l.bootSector, l.image[pa+4:pa+8]) {
		return nil, errors.New("extlinux: the boot sector and ldlinux.sys are not from the same build")
	}

	// ldlinux.c32: the ELF object between the two, its length also a
	// constant of the program.
	c := bytes.Index(data[bs+sectorSize:start], []byte("\x7fELF"))
	if c < 0 {
		return nil, errors.New("extlinux: no ldlinux.c32 in this program")
	}
	c += bs + sectorSize
	cn, err := elfLength(data[c:start])
	if err != nil {
		return nil, fmt.Errorf("extlinux: ldlinux.c32: %w", err)
	}
	if !words[uint32(cn)] {
		return nil, fmt.Errorf("extlinux: ldlinux.c32's length %d is not among the program's constants", cn)
	}
	l.C32 = bytes.Clone(data[c : c+cn])
	return l, nil
}

// findBootSector finds the boot sector in b: "SYSLINUX" as its OEM name,
// the loader's magic at 0x1F8 and the 55 AA signature; -1 if none.
func findBootSector(b []byte) int {
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte("SYSLINUX"))
		if i < 0 {
			return -1
		}
		s := off + i - 3
		if s >= 0 && s+sectorSize <= len(b) && le.Uint32(b[s+0x1F8:]) == ldlinuxMagic && b[s+0x1FE] == 0x55 && b[s+0x1FF] == 0xAA {
			return s
		}
		off += i + 1
	}
}

// constants are the aligned 32-bit words of the program's data sections:
// among them are the embedded arrays' lengths.
func constants(sections [][]byte) map[uint32]bool {
	out := map[uint32]bool{}
	for _, c := range sections {
		for i := 0; i+4 <= len(c); i += 4 {
			out[le.Uint32(c[i:])] = true
		}
	}
	return out
}

// imageLength finds ldlinux.sys's padded length in b (which starts with
// it): a multiple of the sector size, among the program's constants,
// whose last sector holds the image's end marker.
func imageLength(b []byte, consts map[uint32]bool) (int, error) {
	var found []int
	for v := range consts {
		if v < 8*sectorSize || v%sectorSize != 0 || int64(v) > int64(len(b)) {
			continue
		}
		// The image (prepcore's output) ends in LZO's end marker
		// 11 00 00, then zero padding to the sector.
		body := bytes.TrimRight(b[:v], "\x00")
		if zeros := int(v) - len(body); len(body) > 0 && body[len(body)-1] == 0x11 && zeros >= 2 && zeros < sectorSize+2 {
			found = append(found, int(v))
		}
	}
	slices.Sort(found)
	switch len(found) {
	case 0:
		return 0, errors.New("extlinux: cannot tell ldlinux.sys's length: no constant of the program fits")
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("extlinux: cannot tell ldlinux.sys's length: %v all fit", found)
}

// elfLength is the length of the ELF file at the start of b: the end of
// its furthest header table or section.
func elfLength(b []byte) (int, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	var end uint64
	switch f.Class {
	case elf.ELFCLASS32:
		end = max(uint64(le.Uint32(b[0x20:]))+uint64(le.Uint16(b[0x2E:]))*uint64(le.Uint16(b[0x30:])),
			uint64(le.Uint32(b[0x1C:]))+uint64(le.Uint16(b[0x2A:]))*uint64(le.Uint16(b[0x2C:])))
	case elf.ELFCLASS64:
		end = max(le.Uint64(b[0x28:])+uint64(le.Uint16(b[0x3A:]))*uint64(le.Uint16(b[0x3C:])),
			le.Uint64(b[0x20:])+uint64(le.Uint16(b[0x36:]))*uint64(le.Uint16(b[0x38:])))
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, s.Offset+s.Size)
		}
	}
	for _, p := range f.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	if end == 0 || end > uint64(len(b)) {
		return 0, fmt.Errorf("ELF length %d outside the %d bytes available", end, len(b))
	}
	return int(end), nil
}
