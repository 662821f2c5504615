package iso

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alpinist/alpinist/internal/ctxio"
)

// write writes the whole image to f.
func (img *image) write(ctx context.Context, f *os.File) error {
	if err := f.Truncate(int64(img.sectors) * SectorSize); err != nil {
		return err
	}
	at := func(b []byte, lba uint32) error {
		_, err := f.WriteAt(b, int64(lba)*SectorSize)
		return err
	}
	bootData := img.bootImages()
	type block struct {
		b   []byte
		lba uint32
	}
	head := []block{{img.pvd(), 16}}
	next := uint32(17)
	if len(img.o.Boot) > 0 {
		head = append(head, block{img.bootRecord(), next})
		next++
	}
	head = append(head, block{terminator(), next},
		block{img.pathTable(binary.LittleEndian), img.pathLBA[0]},
		block{img.pathTable(binary.BigEndian), img.pathLBA[1]},
		block{erEntry(), img.ceLBA})
	if img.catalog != nil {
		head = append(head, block{img.bootCatalog(), img.catalog.lba})
	}
	for _, d := range img.dirs {
		head = append(head, block{img.dirExtent(d), d.lba})
	}
	for _, h := range head {
		if err := at(h.b, h.lba); err != nil {
			return err
		}
	}
	for _, n := range img.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if data, ok := bootData[n]; ok {
			if err := at(data, n.lba); err != nil {
				return err
			}
			continue
		}
		if n.file.Source == "" {
			if err := at(n.file.Data, n.lba); err != nil {
				return err
			}
			continue
		}
		if err := img.copyFile(ctx, f, n); err != nil {
			return err
		}
	}
	if img.o.Hybrid {
		return img.writeSystemArea(f)
	}
	return nil
}

// copyFile streams a host file into its extent.
func (img *image) copyFile(ctx context.Context, f *os.File, n *node) error {
	src, err := os.Open(n.file.Source)
	if err != nil {
		return fmt.Errorf("iso: %s: %w", n.file.Path, err)
	}
	defer src.Close()
	if _, err := f.Seek(int64(n.lba)*SectorSize, io.SeekStart); err != nil {
		return err
	}
	copied, err := io.Copy(f, ctxio.Reader(ctx, io.LimitReader(src, n.size+1)))
	if err != nil {
		return fmt.Errorf("iso: %s: %w", n.file.Path, err)
	}
	if copied != n.size {
		return fmt.Errorf("iso: %s: %s changed size while the image was written (%d bytes, then %d)", n.file.Path, n.file.Source, n.size, copied)
	}
	return nil
}

// bootImages are the boot images with their boot info tables patched.
func (img *image) bootImages() map[*node][]byte {
	out := map[*node][]byte{}
	for _, b := range img.o.Boot {
		if !b.InfoTable {
			continue
		}
		n := img.byPath[b.Path]
		data := bytes.Clone(n.file.Data)
		clear(data[8:64])
		binary.LittleEndian.PutUint32(data[8:], 16)
		binary.LittleEndian.PutUint32(data[12:], n.lba)
		binary.LittleEndian.PutUint32(data[16:], uint32(len(data)))
		var sum uint32
		padded := append(bytes.Clone(data[64:]), 0, 0, 0)
		for i := 0; i+4 <= len(padded); i += 4 {
			sum += binary.LittleEndian.Uint32(padded[i:])
		}
		binary.LittleEndian.PutUint32(data[20:], sum)
		out[n] = data
	}
	return out
}

// pvd is the primary volume descriptor.
func (img *image) pvd() []byte {
	b := make([]byte, SectorSize)
	b[0] = 1
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[8:40], pad(img.o.SystemID, 32))
	copy(b[40:72], pad(img.o.VolumeID, 32))
	both32(b[80:], img.sectors)
	both16(b[120:], 1)
	both16(b[124:], 1)
	both16(b[128:], SectorSize)
	both32(b[132:], uint32(img.ptSize))
	binary.LittleEndian.PutUint32(b[140:], img.pathLBA[0])
	binary.BigEndian.PutUint32(b[148:], img.pathLBA[1])
	root := img.record(img.root, "\x00", false)
	copy(b[156:156+34], root[:34])
	b[156] = 34
	for _, f := range [][2]int{{190, 128}, {318, 128}, {574, 128}, {702, 37}, {739, 37}, {776, 37}} {
		copy(b[f[0]:f[0]+f[1]], pad("", f[1]))
	}
	copy(b[446:574], pad(img.o.Preparer, 128))
	copy(b[813:], volDate(img.o.Time))
	copy(b[830:], volDate(img.o.Time))
	copy(b[847:], volDate(time.Time{}))
	copy(b[864:], volDate(time.Time{}))
	b[881] = 1
	return b
}

// bootRecord is El Torito's boot record volume descriptor.
func (img *image) bootRecord() []byte {
	b := make([]byte, SectorSize)
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(b[71:], img.catalog.lba)
	return b
}

func terminator() []byte {
	b := make([]byte, SectorSize)
	b[0] = 255
	copy(b[1:], "CD001")
	b[6] = 1
	return b
}

// bootCatalog is El Torito's catalog: the validation entry, the default
// entry, then a section per further entry.
func (img *image) bootCatalog() []byte {
	b := make([]byte, SectorSize)
	platform := func(bt Boot) byte {
		if bt.EFI {
			return 0xEF
		}
		return 0
	}
	b[0] = 1
	b[1] = platform(img.o.Boot[0])
	b[30], b[31] = 0x55, 0xAA
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(b[i:])
	}
	binary.LittleEndian.PutUint16(b[28:], -sum)
	entry := func(e []byte, bt Boot) {
		n := img.byPath[bt.Path]
		e[0] = 0x88 // bootable, no emulation
		count := bt.LoadSectors
		if bt.EFI {
			count = uint16((n.size + 511) / 512)
		}
		binary.LittleEndian.PutUint16(e[6:], count)
		binary.LittleEndian.PutUint32(e[8:], n.lba)
	}
	entry(b[32:64], img.o.Boot[0])
	off := 64
	for i, bt := range img.o.Boot[1:] {
		h := b[off : off+32]
		h[0] = 0x90
		if i == len(img.o.Boot)-2 {
			h[0] = 0x91 // the last section
		}
		h[1] = platform(bt)
		binary.LittleEndian.PutUint16(h[2:], 1)
		entry(b[off+32:off+64], bt)
		off += 64
	}
	return b
}
