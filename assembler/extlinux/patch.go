package extlinux

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// The ADV (auxiliary data vector): two copies of one sector at the end
// of ldlinux.sys, each magic, checksum, 500 bytes of tagged data, magic.
const (
	advMagic1 = 0x5A2D2FA5
	advMagic2 = 0xA3041767 // what the checksum makes the sum come to
	advMagic3 = 0xDD28BF64
)

// SysSize is the size of ldlinux.sys: the loader and its ADV.
func (l *Loader) SysSize() int { return len(l.image) + advSectors*sectorSize }

// SysFile is ldlinux.sys's content before it is patched: the loader and
// an empty ADV. Give the file system a file of this content, then Patch
// it where its blocks went.
func (l *Loader) SysFile() []byte {
	b := make([]byte, 0, l.SysSize())
	b = append(b, l.image...)
	adv := emptyADV()
	for range advSectors {
		b = append(b, adv...)
	}
	return b
}

// emptyADV is one copy of an ADV with no data.
func emptyADV() []byte {
	b := make([]byte, sectorSize)
	le.PutUint32(b[0:], advMagic1)
	le.PutUint32(b[4:], advMagic2) // the data being zero, the checksum is the magic
	le.PutUint32(b[508:], advMagic3)
	return b
}

// Install is EXTLINUX patched for one place in a file system.
type Install struct {
	// Sys is ldlinux.sys's patched content, to write over the file's
	// sectors (its first len(Sys) bytes).
	Sys []byte

	bootSector []byte
}

// Patch patches the loader for ldlinux.sys at sectors: the 512-byte
// sectors of the file, in order, counted from the start of the file
// system (which is also the partition's start), at least SysSize/512 of
// them. dir is the directory ldlinux.sys is in, from the file system's
// root ("/boot"): the loader looks there first for extlinux.conf and
// ldlinux.c32.
func (l *Loader) Patch(sectors []uint64, dir string) (*Install, error) {
	nsect := l.SysSize() / sectorSize
	if len(sectors) < nsect {
		return nil, fmt.Errorf("extlinux: ldlinux.sys has %d sectors, it needs %d", len(sectors), nsect)
	}
	if !strings.HasPrefix(dir, "/") {
		return nil, fmt.Errorf("extlinux: install directory %q is not absolute", dir)
	}
	img := bytes.Clone(l.image)
	bs := bytes.Clone(l.bootSector)
	pa := l.patchArea
	epa := int(le.Uint16(img[pa+22:]))
	if epa+20 > len(img) {
		return nil, fmt.Errorf("extlinux: extended patch area at %#x is outside ldlinux.sys", epa)
	}
	field := func(i int) int { return int(le.Uint16(img[epa+2*i:])) }
	advPtr, dirOff, dirLen := field(0), field(1), field(2)
	secPtr, secPtrCnt := field(5), field(6)
	sect1Ptr0, sect1Ptr1 := field(7), field(8)
	for _, o := range []int{sect1Ptr0, sect1Ptr1} {
		if o+4 > sectorSize {
			return nil, fmt.Errorf("extlinux: boot sector field at %#x is outside the sector", o)
		}
	}
	if advPtr+16 > len(img) || dirOff+dirLen > len(img) || secPtr+10*secPtrCnt > len(img) {
		return nil, errors.New("extlinux: a patch field is outside ldlinux.sys")
	}

	// The boot sector loads the first sector; the rest follow as extents.
	le.PutUint32(bs[sect1Ptr0:], uint32(sectors[0]))
	le.PutUint32(bs[sect1Ptr1:], uint32(sectors[0]>>32))
	le.PutUint16(img[pa+8:], uint16(nsect-advSectors))
	le.PutUint16(img[pa+10:], advSectors)
	le.PutUint32(img[pa+12:], uint32(len(img)/4))
	ext := extents(sectors[1 : nsect-advSectors])
	if len(ext) > secPtrCnt {
		return nil, fmt.Errorf("extlinux: ldlinux.sys is in %d pieces, the loader takes %d", len(ext), secPtrCnt)
	}
	clear(img[secPtr : secPtr+10*secPtrCnt])
	for i, e := range ext {
		le.PutUint64(img[secPtr+10*i:], e.lba)
		le.PutUint16(img[secPtr+10*i+8:], e.len)
	}
	le.PutUint64(img[advPtr:], sectors[nsect-2])
	le.PutUint64(img[advPtr+8:], sectors[nsect-1])
	if len(dir)+1 > dirLen {
		return nil, fmt.Errorf("extlinux: install directory %q is longer than %d bytes", dir, dirLen-1)
	}
	clear(img[dirOff : dirOff+dirLen])
	copy(img[dirOff:], dir)

	// The checksum makes the image's 32-bit words sum to the magic.
	le.PutUint32(img[pa+16:], 0)
	sum := uint32(ldlinuxMagic)
	for i := 0; i < len(img); i += 4 {
		sum -= le.Uint32(img[i:])
	}
	le.PutUint32(img[pa+16:], sum)

	sys := append(img, l.SysFile()[len(img):]...)
	return &Install{Sys: sys, bootSector: bs}, nil
}

type extent struct {
	lba uint64
	len uint16
}

// extents groups sectors into runs as extlinux's generate_extents does:
// consecutive sectors, at most 127 per run (a run is loaded into one
// 64 KiB segment).
func extents(sectors []uint64) []extent {
	var out []extent
	const base = 0x8000
	addr, start := uint32(base), uint32(base)
	var lba uint64
	n := 0
	for _, s := range sectors {
		if n > 0 {
			xbytes := uint32(n+1) * sectorSize
			if s == lba+uint64(n) && xbytes < 65536 && (addr^(start+xbytes-1))&0xFFFF0000 == 0 {
				n++
				addr += sectorSize
				continue
			}
			out = append(out, extent{lba, uint16(n)})
		}
		start, lba, n = addr, s, 1
		addr += sectorSize
	}
	if n > 0 {
		out = append(out, extent{lba, uint16(n)})
	}
	return out
}

// BootSector is the partition's first sector (the volume boot record)
// for a partition that starts at LBA start of the disk and is sectors
// long. Its BIOS parameter block is a FAT one in form only: the loader
// uses the sector size, the partition's start (when the MBR code does
// not hand it over) and, without EDD, the geometry.
func (in *Install) BootSector(start, sectors uint64) []byte {
	bs := bytes.Clone(in.bootSector)
	le.PutUint16(bs[0x0B:], sectorSize)
	if sectors < 65536 {
		le.PutUint16(bs[0x13:], uint16(sectors))
	} else {
		le.PutUint16(bs[0x13:], 0)
	}
	le.PutUint16(bs[0x18:], 32) // sectors per track, extlinux's default for images
	le.PutUint16(bs[0x1A:], 64) // heads, likewise
	le.PutUint32(bs[0x1C:], uint32(start))
	le.PutUint32(bs[0x20:], uint32(sectors))
	return bs
}
