// Package fat writes a FAT32 file system once, deterministically: the
// EFI system partition of a disk image (a boot loader, its config). The
// volume ID and every date come from the caller, entries are written in
// sorted order, and fsck.fat -n finds it clean. Names must fit 8.3, in
// one case per part (GRUB.CFG or grub.cfg; the NT case flags keep the
// lower case), which is all an ESP needs; anything else is an error.
package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

const sectorSize = 512

// File is a file to write (directories are made from the paths).
type File struct {
	Path string // slash-separated, relative: EFI/BOOT/BOOTX64.EFI
	Data []byte
}

// Options describe the file system.
type Options struct {
	Label    string // up to 11 characters
	VolumeID uint32
	Time     time.Time
	// HiddenSectors is the partition's offset in sectors (written in the
	// boot sector, where some loaders look).
	HiddenSectors uint32
}

type dir struct {
	name     string
	cluster  uint32
	parent   *dir
	dirs     []*dir
	files    []*file
	clusters uint32
}

type file struct {
	name    string
	data    []byte
	cluster uint32
}

// Write writes a FAT32 file system of size bytes holding files to w at
// offset.
func Write(w io.WriterAt, offset, size int64, files []File, o Options) error {
	if len(o.Label) > 11 {
		return fmt.Errorf("fat: label %q is longer than 11 characters", o.Label)
	}
	total := uint32(size / sectorSize)
	spc := uint32(1) // sectors per cluster: 512 B up to 260 MiB, as mkfs.fat
	switch {
	case size > 32<<30:
		spc = 64
	case size > 16<<30:
		spc = 32
	case size > 8<<30:
		spc = 16
	case size > 260<<20:
		spc = 8
	}
	const reserved = 32
	// FAT size: enough entries for the clusters left after the FATs.
	var fatSectors, clusters uint32
	for fatSectors = 1; ; fatSectors++ {
		clusters = (total - reserved - 2*fatSectors) / spc
		if (clusters+2)*4 <= fatSectors*sectorSize {
			break
		}
	}
	if clusters < 65525 {
		return fmt.Errorf("fat: %d bytes give %d clusters; FAT32 needs at least 65525 (33 MiB or more)", size, clusters)
	}
	clusterSize := spc * sectorSize
	dataStart := int64(reserved+2*fatSectors) * sectorSize

	// The tree, and cluster allocation in sorted order.
	root := &dir{cluster: 2}
	byPath := map[string]*dir{"": root}
	var mkdir func(p string) (*dir, error)
	mkdir = func(p string) (*dir, error) {
		if d, ok := byPath[p]; ok {
			return d, nil
		}
		parent, err := mkdir(strings.TrimSuffix(path.Dir(p), "."))
		if err != nil {
			return nil, err
		}
		if _, _, err := shortName(path.Base(p)); err != nil {
			return nil, err
		}
		d := &dir{name: path.Base(p), parent: parent}
		parent.dirs = append(parent.dirs, d)
		byPath[p] = d
		return d, nil
	}
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for i, f := range files {
		if i > 0 && files[i-1].Path == f.Path {
			return fmt.Errorf("fat: %s given twice", f.Path)
		}
		p := strings.Trim(f.Path, "/")
		parent, err := mkdir(strings.TrimSuffix(path.Dir(p), "."))
		if err != nil {
			return err
		}
		if _, _, err := shortName(path.Base(p)); err != nil {
			return err
		}
		parent.files = append(parent.files, &file{name: path.Base(p), data: f.Data})
	}
	fat := make([]uint32, clusters+2)
	fat[0], fat[1] = 0x0FFFFFF8, 0x0FFFFFFF
	next := uint32(2)
	alloc := func(n uint32) (uint32, error) {
		if n == 0 {
			return 0, nil
		}
		if next+n > clusters+2 {
			return 0, fmt.Errorf("fat: the files do not fit %d bytes", size)
		}
		first := next
		for i := uint32(0); i < n; i++ {
			fat[next] = next + 1
			next++
		}
		fat[next-1] = 0x0FFFFFFF
		return first, nil
	}
	var place func(d *dir) error
	place = func(d *dir) error {
		entries := 2 + len(d.dirs) + len(d.files) + 1 // ., .. (or the label), the end
		d.clusters = max(1, (uint32(entries)*32+clusterSize-1)/clusterSize)
		c, err := alloc(d.clusters)
		if err != nil {
			return err
		}
		d.cluster = c
		for _, f := range d.files {
			if f.cluster, err = alloc((uint32(len(f.data)) + clusterSize - 1) / clusterSize); err != nil {
				return err
			}
		}
		for _, sub := range d.dirs {
			if err := place(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := place(root); err != nil {
		return err
	}

	at := func(b []byte, off int64) error {
		_, err := w.WriteAt(b, offset+off)
		return err
	}
	clusterOff := func(c uint32) int64 { return dataStart + int64(c-2)*int64(clusterSize) }
	date, tm := dosTime(o.Time)
	entry := func(b []byte, name [11]byte, nt uint8, attr uint8, cluster uint32, size uint32) {
		copy(b[0:11], name[:])
		b[11] = attr
		b[12] = nt
		binary.LittleEndian.PutUint16(b[14:], tm)
		binary.LittleEndian.PutUint16(b[16:], date)
		binary.LittleEndian.PutUint16(b[18:], date)
		binary.LittleEndian.PutUint16(b[20:], uint16(cluster>>16))
		binary.LittleEndian.PutUint16(b[22:], tm)
		binary.LittleEndian.PutUint16(b[24:], date)
		binary.LittleEndian.PutUint16(b[26:], uint16(cluster))
		binary.LittleEndian.PutUint32(b[28:], size)
	}
	var write func(d *dir) error
	write = func(d *dir) error {
		b := make([]byte, d.clusters*clusterSize)
		i := 0
		if d == root {
			if o.Label != "" {
				var n [11]byte
				copy(n[:], fmt.Sprintf("%-11s", strings.ToUpper(o.Label)))
				entry(b[0:], n, 0, 0x08, 0, 0)
				i++
			}
		} else {
			parent := d.parent.cluster
			if d.parent == root {
				parent = 0
			}
			entry(b[0:], [11]byte{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, 0, 0x10, d.cluster, 0)
			entry(b[32:], [11]byte{'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, 0, 0x10, parent, 0)
			i = 2
		}
		for _, sub := range d.dirs {
			n, nt, _ := shortName(sub.name)
			entry(b[i*32:], n, nt, 0x10, sub.cluster, 0)
			i++
		}
		for _, f := range d.files {
			n, nt, _ := shortName(f.name)
			entry(b[i*32:], n, nt, 0x20, f.cluster, uint32(len(f.data)))
			i++
			if len(f.data) > 0 {
				if err := at(f.data, clusterOff(f.cluster)); err != nil {
					return err
				}
			}
		}
		if err := at(b, clusterOff(d.cluster)); err != nil {
			return err
		}
		for _, sub := range d.dirs {
			if err := write(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := write(root); err != nil {
		return err
	}

	// The FATs, the boot sector and FSInfo, and their backups.
	fatBytes := make([]byte, fatSectors*sectorSize)
	for i, e := range fat {
		binary.LittleEndian.PutUint32(fatBytes[i*4:], e)
	}
	for n := int64(0); n < 2; n++ {
		if err := at(fatBytes, (reserved+n*int64(fatSectors))*sectorSize); err != nil {
			return err
		}
	}
	bs := make([]byte, sectorSize)
	copy(bs, []byte{0xEB, 0x58, 0x90})
	copy(bs[3:], "mkfs.fat")
	le := binary.LittleEndian
	le.PutUint16(bs[11:], sectorSize)
	bs[13] = uint8(spc)
	le.PutUint16(bs[14:], reserved)
	bs[16] = 2
	bs[21] = 0xF8
	le.PutUint16(bs[24:], 32) // sectors per track
	le.PutUint16(bs[26:], 64) // heads
	le.PutUint32(bs[28:], o.HiddenSectors)
	le.PutUint32(bs[32:], total)
	le.PutUint32(bs[36:], fatSectors)
	le.PutUint32(bs[44:], 2) // root cluster
	le.PutUint16(bs[48:], 1) // FSInfo sector
	le.PutUint16(bs[50:], 6) // backup boot sector
	bs[64] = 0x80
	bs[66] = 0x29
	le.PutUint32(bs[67:], o.VolumeID)
	label := o.Label
	if label == "" {
		label = "NO NAME"
	}
	copy(bs[71:], fmt.Sprintf("%-11s", strings.ToUpper(label)))
	copy(bs[82:], "FAT32   ")
	bs[510], bs[511] = 0x55, 0xAA
	fsi := make([]byte, sectorSize)
	le.PutUint32(fsi[0:], 0x41615252)
	le.PutUint32(fsi[484:], 0x61417272)
	le.PutUint32(fsi[488:], clusters+2-next) // free clusters
	le.PutUint32(fsi[492:], next)            // next free
	le.PutUint32(fsi[508:], 0xAA550000)
	for _, s := range []int64{0, 6} {
		if err := at(bs, s*sectorSize); err != nil {
			return err
		}
		if err := at(fsi, (s+1)*sectorSize); err != nil {
			return err
		}
	}
	// Sector 2 (and its backup 8) ends with the boot signature too.
	sig := make([]byte, sectorSize)
	sig[510], sig[511] = 0x55, 0xAA
	if err := at(sig, 2*sectorSize); err != nil {
		return err
	}
	return at(sig, 8*sectorSize)
}

// shortName is an 8.3 name, and the NT flags that keep a lower-case
// base (0x08) or extension (0x10).
func shortName(name string) ([11]byte, uint8, error) {
	var out [11]byte
	for i := range out {
		out[i] = ' '
	}
	base, ext, _ := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") {
		return out, 0, fmt.Errorf("fat: %q is not an 8.3 name", name)
	}
	var nt uint8
	for part, flag := range map[string]uint8{base: 0x08, ext: 0x10} {
		lower, upper := strings.ToLower(part), strings.ToUpper(part)
		switch part {
		case upper:
		case lower:
			nt |= flag
		default:
			return out, 0, fmt.Errorf("fat: %q mixes cases in one part of its 8.3 name", name)
		}
		for _, c := range part {
			if c > 0x7e || c < '!' || strings.ContainsRune(`"*+,/:;<=>?[\]|`, c) {
				return out, 0, fmt.Errorf("fat: %q has a character an 8.3 name cannot", name)
			}
		}
	}
	copy(out[:8], strings.ToUpper(base))
	copy(out[8:], strings.ToUpper(ext))
	return out, nt, nil
}

// dosTime is t as FAT's date and time (2-second resolution, from 1980).
func dosTime(t time.Time) (uint16, uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	return uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day()), uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
}
