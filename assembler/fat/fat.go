// Package fat writes a FAT file system once, deterministically: the EFI
// system partition of a disk image (a boot loader, its config), FAT32
// from 33 MiB up, and the small FAT16 image an ISO's El Torito EFI entry
// points at (UEFI reads both on removable media). The
// volume ID and every date come from the caller, entries are written in
// sorted order, and fsck.fat -n finds it clean. A name that fits 8.3 in
// one case per part (GRUB.CFG or grub.cfg; the NT case flags keep the
// lower case) is written as it is; any other gets VFAT long-name entries
// and a short alias (BOOTRISCV64.EFI is BOOTRI~1.EFI).
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
	ents     []dirent // the entries of dirs, then files
}

// entries gives d's directory entries (its subdirectories', then its
// files'), naming them once.
func (d *dir) entries() []dirent {
	if d.ents == nil {
		var names []string
		for _, sub := range d.dirs {
			names = append(names, sub.name)
		}
		for _, f := range d.files {
			names = append(names, f.name)
		}
		d.ents = dirents(names)
	}
	return d.ents
}

type file struct {
	name    string
	data    []byte
	cluster uint32
}

// Reserved sectors before the first FAT, as mkfs.fat has them.
const (
	reserved32 = 32
	reserved16 = 1
)

// rootEntries16 is the size of FAT16's fixed root directory.
const rootEntries16 = 512

// minFAT16Clusters is the fewest clusters of a FAT16 (fewer is FAT12).
const minFAT16Clusters = 4085

// volume is the state Write's phases share: the geometry, the tree and
// its allocation table, and where the file system goes.
type volume struct {
	w           io.WriterAt
	offset      int64
	size        int64
	o           Options
	fat16       bool
	reserved    uint32
	rootStart   int64 // FAT16's root directory (FAT32's is a cluster)
	total       uint32
	spc         uint32
	fatSectors  uint32
	clusters    uint32
	clusterSize uint32
	dataStart   int64
	root        *dir
	byPath      map[string]*dir
	fat         []uint32
	next        uint32
	date, tm    uint16
}

// Write writes a FAT32 file system of size bytes holding files to w at
// offset.
func Write(w io.WriterAt, offset, size int64, files []File, o Options) error {
	if len(o.Label) > 11 {
		return fmt.Errorf("fat: label %q is longer than 11 characters", o.Label)
	}
	v, err := newVolume(w, offset, size, o)
	if err != nil {
		return err
	}

	// The tree, and cluster allocation in sorted order.
	if err := v.addFiles(files); err != nil {
		return err
	}
	if err := v.allocate(); err != nil {
		return err
	}

	v.date, v.tm = dosTime(o.Time)
	if err := v.writeDir(v.root); err != nil {
		return err
	}

	// The FATs, the boot sector and FSInfo, and their backups.
	if err := v.writeFATs(); err != nil {
		return err
	}
	return v.writeBootSectors()
}

// newVolume lays out a file system of size bytes: FAT32 when it can be
// one (33 MiB and up), else FAT16; the cluster size, the FAT size and
// the number of clusters.
func newVolume(w io.WriterAt, offset, size int64, o Options) (*volume, error) {
	total := uint32(size / sectorSize)
	if size < 1<<20 || size >= 1<<40 {
		return nil, fmt.Errorf("fat: %d bytes: not between 1 MiB and 1 TiB", size)
	}
	v := &volume{w: w, offset: offset, size: size, o: o, total: total, reserved: reserved32}
	v.spc = 1 // sectors per cluster: 512 B up to 260 MiB, as mkfs.fat
	switch {
	case size > 32<<30:
		v.spc = 64
	case size > 16<<30:
		v.spc = 32
	case size > 8<<30:
		v.spc = 16
	case size > 260<<20:
		v.spc = 8
	}
	v.layout(4)
	if v.clusters < 65525 {
		// Too small for FAT32: FAT16, with its fixed root directory.
		v.fat16, v.reserved, v.spc = true, reserved16, 1
		for v.layout(2); v.clusters > 65524; v.layout(2) {
			v.spc *= 2
		}
		if v.clusters < minFAT16Clusters {
			return nil, fmt.Errorf("fat: %d bytes give %d clusters; FAT16 needs at least %d (2.2 MiB or more)", size, v.clusters, minFAT16Clusters)
		}
	}
	v.clusterSize = v.spc * sectorSize
	v.dataStart = int64(v.reserved+2*v.fatSectors) * sectorSize
	v.root = &dir{cluster: 2}
	if v.fat16 {
		v.rootStart = v.dataStart
		v.dataStart += rootEntries16 * 32
		v.root.cluster = 0
	}
	v.byPath = map[string]*dir{"": v.root}
	return v, nil
}

// layout sizes the FATs (entry bytes per cluster) for the clusters left
// after them (and after FAT16's root directory).
func (v *volume) layout(entry uint32) {
	rootSectors := uint32(0)
	if v.fat16 {
		rootSectors = rootEntries16 * 32 / sectorSize
	}
	for v.fatSectors = 1; ; v.fatSectors++ {
		v.clusters = (v.total - v.reserved - rootSectors - 2*v.fatSectors) / v.spc
		if (v.clusters+2)*entry <= v.fatSectors*sectorSize {
			return
		}
	}
}

// mkdir is the directory at p, made (with its parents) if need be.
func (v *volume) mkdir(p string) (*dir, error) {
	if d, ok := v.byPath[p]; ok {
		return d, nil
	}
	parent, err := v.mkdir(strings.TrimSuffix(path.Dir(p), "."))
	if err != nil {
		return nil, err
	}
	if err := checkName(path.Base(p)); err != nil {
		return nil, err
	}
	d := &dir{name: path.Base(p), parent: parent}
	parent.dirs = append(parent.dirs, d)
	v.byPath[p] = d
	return d, nil
}

// addFiles puts files, sorted by path, in the tree.
func (v *volume) addFiles(files []File) error {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for i, f := range files {
		if i > 0 && files[i-1].Path == f.Path {
			return fmt.Errorf("fat: %s given twice", f.Path)
		}
		p := strings.Trim(f.Path, "/")
		parent, err := v.mkdir(strings.TrimSuffix(path.Dir(p), "."))
		if err != nil {
			return err
		}
		if err := checkName(path.Base(p)); err != nil {
			return err
		}
		parent.files = append(parent.files, &file{name: path.Base(p), data: f.Data})
	}
	return nil
}

// allocate starts the allocation table and gives every directory and
// file its clusters, from the root down.
func (v *volume) allocate() error {
	v.fat = make([]uint32, v.clusters+2)
	v.fat[0], v.fat[1] = 0x0FFFFFF8, 0x0FFFFFFF
	v.next = uint32(2)
	if v.fat16 {
		// The root is no cluster chain: its files and directories are.
		if n := entryCount(v.root.entries()) + 1; n > rootEntries16 {
			return fmt.Errorf("fat: %d entries in the root directory; FAT16's holds %d", n-1, rootEntries16-1)
		}
		return v.placeContent(v.root)
	}
	return v.place(v.root)
}

// alloc chains n clusters in the allocation table and returns the first
// (0 for none).
func (v *volume) alloc(n uint32) (uint32, error) {
	if n == 0 {
		return 0, nil
	}
	if v.next+n > v.clusters+2 {
		return 0, fmt.Errorf("fat: the files do not fit %d bytes", v.size)
	}
	first := v.next
	for i := uint32(0); i < n; i++ {
		v.fat[v.next] = v.next + 1
		v.next++
	}
	v.fat[v.next-1] = 0x0FFFFFFF
	return first, nil
}

// place allocates the clusters of d, its files, and its subdirectories.
func (v *volume) place(d *dir) error {
	entries := 2 + entryCount(d.entries()) + 1 // ., .. (or the label), the end
	d.clusters = max(1, (uint32(entries)*32+v.clusterSize-1)/v.clusterSize)
	c, err := v.alloc(d.clusters)
	if err != nil {
		return err
	}
	d.cluster = c
	return v.placeContent(d)
}

// placeContent allocates the clusters of d's files and subdirectories.
func (v *volume) placeContent(d *dir) error {
	var err error
	for _, f := range d.files {
		if f.cluster, err = v.alloc((uint32(len(f.data)) + v.clusterSize - 1) / v.clusterSize); err != nil {
			return err
		}
	}
	for _, sub := range d.dirs {
		if err := v.place(sub); err != nil {
			return err
		}
	}
	return nil
}

// at writes b at off in the file system.
func (v *volume) at(b []byte, off int64) error {
	_, err := v.w.WriteAt(b, v.offset+off)
	return err
}

// clusterOff is where cluster c starts in the file system.
func (v *volume) clusterOff(c uint32) int64 {
	return v.dataStart + int64(c-2)*int64(v.clusterSize)
}

// entry fills the directory entry b.
func (v *volume) entry(b []byte, name [11]byte, nt uint8, attr uint8, cluster uint32, size uint32) {
	copy(b[0:11], name[:])
	b[11] = attr
	b[12] = nt
	binary.LittleEndian.PutUint16(b[14:], v.tm)
	binary.LittleEndian.PutUint16(b[16:], v.date)
	binary.LittleEndian.PutUint16(b[18:], v.date)
	binary.LittleEndian.PutUint16(b[20:], uint16(cluster>>16))
	binary.LittleEndian.PutUint16(b[22:], v.tm)
	binary.LittleEndian.PutUint16(b[24:], v.date)
	binary.LittleEndian.PutUint16(b[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(b[28:], size)
}

// writeDir writes d's entries, its files' data, and its subdirectories.
func (v *volume) writeDir(d *dir) error {
	b := make([]byte, d.clusters*v.clusterSize)
	at := v.clusterOff(d.cluster)
	if v.fat16 && d == v.root {
		b, at = make([]byte, rootEntries16*32), v.rootStart
	}
	i := 0
	if d == v.root {
		if v.o.Label != "" {
			var n [11]byte
			copy(n[:], fmt.Sprintf("%-11s", strings.ToUpper(v.o.Label)))
			v.entry(b[0:], n, 0, 0x08, 0, 0)
			i++
		}
	} else {
		parent := d.parent.cluster
		if d.parent == v.root {
			parent = 0
		}
		v.entry(b[0:], [11]byte{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, 0, 0x10, d.cluster, 0)
		v.entry(b[32:], [11]byte{'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, 0, 0x10, parent, 0)
		i = 2
	}
	ents := d.entries()
	put := func(e dirent, attr uint8, cluster, size uint32) {
		for _, l := range e.lfn {
			copy(b[i*32:], l[:])
			i++
		}
		v.entry(b[i*32:], e.short, e.nt, attr, cluster, size)
		i++
	}
	for k, sub := range d.dirs {
		put(ents[k], 0x10, sub.cluster, 0)
	}
	for k, f := range d.files {
		put(ents[len(d.dirs)+k], 0x20, f.cluster, uint32(len(f.data)))
		if len(f.data) > 0 {
			if err := v.at(f.data, v.clusterOff(f.cluster)); err != nil {
				return err
			}
		}
	}
	if err := v.at(b, at); err != nil {
		return err
	}
	for _, sub := range d.dirs {
		if err := v.writeDir(sub); err != nil {
			return err
		}
	}
	return nil
}

// writeFATs writes the allocation table twice.
func (v *volume) writeFATs() error {
	fatBytes := make([]byte, v.fatSectors*sectorSize)
	for i, e := range v.fat {
		if v.fat16 {
			binary.LittleEndian.PutUint16(fatBytes[i*2:], uint16(e))
		} else {
			binary.LittleEndian.PutUint32(fatBytes[i*4:], e)
		}
	}
	for n := int64(0); n < 2; n++ {
		if err := v.at(fatBytes, (int64(v.reserved)+n*int64(v.fatSectors))*sectorSize); err != nil {
			return err
		}
	}
	return nil
}

// writeBootSectors writes the boot sector, FSInfo and sector 2, and
// their backups.
func (v *volume) writeBootSectors() error {
	bs := v.bootSector()
	if v.fat16 {
		return v.at(bs, 0)
	}
	le := binary.LittleEndian
	fsi := make([]byte, sectorSize)
	le.PutUint32(fsi[0:], 0x41615252)
	le.PutUint32(fsi[484:], 0x61417272)
	le.PutUint32(fsi[488:], v.clusters+2-v.next) // free clusters
	le.PutUint32(fsi[492:], v.next)              // next free
	le.PutUint32(fsi[508:], 0xAA550000)
	for _, s := range []int64{0, 6} {
		if err := v.at(bs, s*sectorSize); err != nil {
			return err
		}
		if err := v.at(fsi, (s+1)*sectorSize); err != nil {
			return err
		}
	}
	// Sector 2 (and its backup 8) ends with the boot signature too.
	sig := make([]byte, sectorSize)
	sig[510], sig[511] = 0x55, 0xAA
	if err := v.at(sig, 2*sectorSize); err != nil {
		return err
	}
	return v.at(sig, 8*sectorSize)
}

// bootSector is the boot sector: the BIOS parameter block both FATs
// share, then FAT32's or FAT16's extended one.
func (v *volume) bootSector() []byte {
	bs := make([]byte, sectorSize)
	le := binary.LittleEndian
	jump, ext := []byte{0xEB, 0x58, 0x90}, 64 // FAT32: its fields first
	if v.fat16 {
		jump, ext = []byte{0xEB, 0x3C, 0x90}, 36
	}
	copy(bs, jump)
	copy(bs[3:], "mkfs.fat")
	le.PutUint16(bs[11:], sectorSize)
	bs[13] = uint8(v.spc)
	le.PutUint16(bs[14:], uint16(v.reserved))
	bs[16] = 2
	bs[21] = 0xF8
	le.PutUint16(bs[24:], 32) // sectors per track
	le.PutUint16(bs[26:], 64) // heads
	le.PutUint32(bs[28:], v.o.HiddenSectors)
	if v.fat16 {
		le.PutUint16(bs[17:], rootEntries16)
		if v.total < 1<<16 {
			le.PutUint16(bs[19:], uint16(v.total))
		} else {
			le.PutUint32(bs[32:], v.total)
		}
		le.PutUint16(bs[22:], uint16(v.fatSectors))
	} else {
		le.PutUint32(bs[32:], v.total)
		le.PutUint32(bs[36:], v.fatSectors)
		le.PutUint32(bs[44:], 2) // root cluster
		le.PutUint16(bs[48:], 1) // FSInfo sector
		le.PutUint16(bs[50:], 6) // backup boot sector
	}
	bs[ext] = 0x80 // drive number
	bs[ext+2] = 0x29
	le.PutUint32(bs[ext+3:], v.o.VolumeID)
	copy(bs[ext+7:], v.label())
	copy(bs[ext+18:], map[bool]string{true: "FAT16   ", false: "FAT32   "}[v.fat16])
	bs[510], bs[511] = 0x55, 0xAA
	return bs
}

// label is the boot sector's volume label, 11 bytes.
func (v *volume) label() string {
	label := v.o.Label
	if label == "" {
		label = "NO NAME"
	}
	return fmt.Sprintf("%-11s", strings.ToUpper(label))
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
