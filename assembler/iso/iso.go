// Package iso writes a bootable ISO 9660 image once, deterministically:
// Rock Ridge names and modes, El Torito boot entries (BIOS, with the
// boot info table ISOLINUX needs, and UEFI), and the isohybrid system
// area that makes the same file boot as a disk (a USB stick): an MBR with
// ISOLINUX's isohdpfx.bin code, a partition over the whole image and one
// over the EFI image, and a GPT beside it, laid out as
// `xorriso -as mkisofs -isohybrid-mbr isohdpfx.bin ... -e efi.img
// -isohybrid-gpt-basdat` lays them out (Alpine's and Debian's ISOs).
//
// Every date is Options.Time, every identity comes from Options.Seed,
// and the files are placed in sorted order: the same input gives the
// same bytes. File contents are streamed from their sources; only the
// directories and the boot images patched in place are held in memory.
package iso

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
)

// SectorSize is ISO 9660's logical block size.
const SectorSize = 2048

// maxFile is the largest file one directory record's extent holds.
const maxFile = 1<<32 - SectorSize

// File is a regular file of the image (directories are made from the
// paths, mode 0555).
type File struct {
	// Path is slash-separated and relative: boot/vmlinuz-virt.
	Path string
	// Data is the content, or Source names a host file that has it.
	Data   []byte
	Source string
	// Mode is the Rock Ridge permission bits (0: 0444).
	Mode uint32
}

// Boot is an El Torito boot entry.
type Boot struct {
	// Path is the boot image, one of the image's files.
	Path string
	// EFI makes it a UEFI entry (platform 0xEF, the FAT image the
	// firmware reads); else it is BIOS's (x86).
	EFI bool
	// LoadSectors is how many 512-byte sectors BIOS loads (ISOLINUX: 4).
	// EFI entries load the whole image.
	LoadSectors uint16
	// InfoTable patches the boot info table into the image (ISOLINUX's
	// -boot-info-table).
	InfoTable bool
}

// Options describe the image.
type Options struct {
	// VolumeID is the label (at most 32 bytes); SystemID and Preparer
	// fill the primary volume descriptor.
	VolumeID, SystemID, Preparer string
	// Time dates the volume and every file.
	Time time.Time
	// Boot are the El Torito entries, the first the default; Catalog
	// is the boot catalog's path in the image.
	Boot    []Boot
	Catalog string
	// Hybrid writes the isohybrid system area: HybridMBR is its boot
	// code (isohdpfx.bin, 432 bytes; nil for none, as on machines
	// without BIOS), which starts the first BIOS entry.
	Hybrid    bool
	HybridMBR []byte
	// Seed makes the MBR's disk signature and the GPT's GUIDs.
	Seed []byte
}

// node is a file or directory of the tree.
type node struct {
	name     string // Rock Ridge name
	isoName  string // ISO 9660 identifier
	dir      bool
	children []*node
	parent   *node
	file     *File
	size     int64
	lba      uint32
	number   int // path table number (directories)
	recs     []byte
}

// image is one image being laid out.
type image struct {
	o       Options
	root    *node
	dirs    []*node // breadth first, the path table's order
	files   []*node // in placement order
	byPath  map[string]*node
	catalog *node
	ceLBA   uint32
	pathLBA [2]uint32 // L and M path tables
	ptSize  int
	sectors uint32 // the volume's 2048-byte sectors
}

// WriteFile writes the image to path, whole or not at all; a nil ctx
// is context.Background().
func WriteFile(ctx context.Context, p string, files []File, o Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	img, err := layout(files, o)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(p, 0o644, func(f *os.File) error { return img.write(ctx, f) })
}

// layout builds the tree and gives everything its place.
func layout(files []File, o Options) (*image, error) {
	if len(o.VolumeID) > 32 {
		return nil, fmt.Errorf("iso: volume id %q is longer than 32 bytes", o.VolumeID)
	}
	img := &image{o: o, root: &node{dir: true}, byPath: map[string]*node{}}
	img.byPath[""] = img.root
	files = slices.Clone(files)
	if len(o.Boot) > 0 {
		if o.Catalog == "" {
			return nil, errors.New("iso: boot entries need a boot catalog path")
		}
		files = append(files, File{Path: o.Catalog, Data: make([]byte, SectorSize)})
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for i := range files {
		f := &files[i]
		clean := path.Clean(strings.Trim(f.Path, "/"))
		if clean == "." || strings.HasPrefix(clean, "../") || clean != strings.Trim(f.Path, "/") {
			return nil, fmt.Errorf("iso: %q is not a clean relative path", f.Path)
		}
		if _, ok := img.byPath[clean]; ok {
			return nil, fmt.Errorf("iso: %s given twice", clean)
		}
		parent, err := img.mkdir(path.Dir(clean))
		if err != nil {
			return nil, err
		}
		n := &node{name: path.Base(clean), file: f, parent: parent}
		switch {
		case f.Source != "":
			st, err := os.Stat(f.Source)
			if err != nil {
				return nil, fmt.Errorf("iso: %s: %w", clean, err)
			}
			if !st.Mode().IsRegular() {
				return nil, fmt.Errorf("iso: %s: %s is not a regular file", clean, f.Source)
			}
			n.size = st.Size()
		default:
			n.size = int64(len(f.Data))
		}
		if n.size > maxFile {
			return nil, fmt.Errorf("iso: %s is %d bytes; an ISO 9660 file holds at most %d", clean, n.size, int64(maxFile))
		}
		parent.children = append(parent.children, n)
		img.byPath[clean] = n
		if clean == o.Catalog {
			img.catalog = n
		}
	}
	if err := img.checkBoot(); err != nil {
		return nil, err
	}
	img.name(img.root)
	img.place()
	return img, nil
}

// mkdir is the directory at p, made with its parents if need be.
func (img *image) mkdir(p string) (*node, error) {
	if p == "." {
		p = ""
	}
	if n, ok := img.byPath[p]; ok {
		if !n.dir {
			return nil, fmt.Errorf("iso: %s is a file and a directory", p)
		}
		return n, nil
	}
	parent, err := img.mkdir(path.Dir(p))
	if err != nil {
		return nil, err
	}
	n := &node{name: path.Base(p), dir: true, parent: parent}
	parent.children = append(parent.children, n)
	img.byPath[p] = n
	return n, nil
}

// checkBoot checks the boot entries' images.
func (img *image) checkBoot() error {
	for i, b := range img.o.Boot {
		n, ok := img.byPath[b.Path]
		if !ok || n.dir {
			return fmt.Errorf("iso: boot image %s is not a file of the image", b.Path)
		}
		switch {
		case b.EFI && (n.size+511)/512 > 0xffff:
			return fmt.Errorf("iso: EFI boot image %s is %d bytes; El Torito counts at most 65535 sectors of 512 (32 MiB)", b.Path, n.size)
		case b.InfoTable && n.file.Data == nil:
			return fmt.Errorf("iso: boot image %s: a boot info table is patched into data, not a host file", b.Path)
		case b.InfoTable && n.size < 64:
			return fmt.Errorf("iso: boot image %s is too small for a boot info table", b.Path)
		case b.EFI && i == 0 && img.o.HybridMBR != nil:
			return errors.New("iso: the hybrid MBR starts a BIOS boot image, and the first entry is EFI's")
		}
	}
	if img.o.HybridMBR != nil {
		if len(img.o.HybridMBR) != 432 && len(img.o.HybridMBR) != 512 {
			return fmt.Errorf("iso: hybrid MBR code is %d bytes, not 432 (isohdpfx.bin)", len(img.o.HybridMBR))
		}
		b := img.o.Boot
		if len(b) == 0 || b[0].EFI {
			return errors.New("iso: a hybrid MBR needs a BIOS boot image")
		}
		data := img.byPath[b[0].Path].file.Data
		if len(data) < 0x44 || binary.LittleEndian.Uint32(data[0x40:]) != 0x7078c0fb {
			return fmt.Errorf("iso: %s is no isohybrid-capable ISOLINUX (no signature at 0x40); a hybrid MBR cannot start it", b[0].Path)
		}
	}
	return nil
}

// name sorts every directory's children and gives them ISO 9660
// identifiers: upper case d-characters, one dot for files, unique in
// their directory.
func (img *image) name(d *node) {
	slices.SortFunc(d.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	seen := map[string]bool{}
	for _, c := range d.children {
		id := isoName(c.name, c.dir)
		for k := 1; seen[id]; k++ {
			suffix := fmt.Sprintf("_%d", k)
			base, ext, _ := strings.Cut(isoName(c.name, c.dir), ".")
			base = base[:min(len(base), 30-len(ext)-len(suffix))]
			id = base + suffix
			if !c.dir {
				id += "." + ext
			}
		}
		seen[id] = true
		c.isoName = id
		if c.dir {
			img.name(c)
		}
	}
	// Records are sorted by identifier (ECMA-119 9.3).
	slices.SortFunc(d.children, func(a, b *node) int { return strings.Compare(a.isoName, b.isoName) })
}

// isoName maps a name to an ISO 9660 level 2 identifier (without ";1").
func isoName(name string, dir bool) string {
	m := func(s string) string {
		return strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z':
				return r - 'a' + 'A'
			case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
				return r
			}
			return '_'
		}, s)
	}
	cut := func(s string, n int) string { return s[:min(len(s), n)] }
	if dir {
		return cut(m(name), 31)
	}
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	ext = cut(m(ext), 8)
	base = cut(m(base), 30-len(ext)-1)
	return base + "." + ext
}

// Rock Ridge's extension reference (RRIP 1.09), in the continuation
// area the root's "." record points to.
const (
	rrID  = "RRIP_1991A"
	rrDes = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
	rrSrc = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION."
)

func erEntry() []byte {
	b := []byte{'E', 'R', byte(8 + len(rrID) + len(rrDes) + len(rrSrc)), 1, byte(len(rrID)), byte(len(rrDes)), byte(len(rrSrc)), 1}
	return append(append(append(b, rrID...), rrDes...), rrSrc...)
}

// place gives the path tables, directories, the continuation area, the
// boot catalog and the files their sectors.
func (img *image) place() {
	// Directories, breadth first: the path table's numbering.
	img.dirs = []*node{img.root}
	for i := 0; i < len(img.dirs); i++ {
		d := img.dirs[i]
		d.number = i + 1
		for _, c := range d.children {
			if c.dir {
				img.dirs = append(img.dirs, c)
			}
		}
	}
	for _, d := range img.dirs {
		id := len(d.isoName)
		if d == img.root {
			id = 1
		}
		img.ptSize += 8 + id + id%2
	}
	next := uint32(16 + 2) // the primary volume descriptor, the terminator
	if len(img.o.Boot) > 0 {
		next++ // El Torito's boot record
	}
	ptSectors := uint32((img.ptSize + SectorSize - 1) / SectorSize)
	img.pathLBA[0], img.pathLBA[1] = next, next+ptSectors
	next += 2 * ptSectors
	// Directory sizes do not depend on where things go.
	for _, d := range img.dirs {
		d.lba = next
		d.size = int64(img.dirSize(d))
		next += uint32(d.size / SectorSize)
	}
	img.ceLBA = next
	next++
	if img.catalog != nil {
		img.catalog.lba = next
		next++
	}
	// Boot images first (BIOS loads from the front), then the rest in
	// path order.
	var boots, rest []*node
	for _, d := range img.dirs {
		for _, c := range d.children {
			switch {
			case c.dir || c == img.catalog:
			case slices.ContainsFunc(img.o.Boot, func(b Boot) bool { return img.byPath[b.Path] == c }):
				boots = append(boots, c)
			default:
				rest = append(rest, c)
			}
		}
	}
	img.files = append(boots, rest...)
	for _, f := range img.files {
		f.lba = next
		next += uint32((f.size + SectorSize - 1) / SectorSize)
	}
	img.sectors = next
	if img.o.Hybrid {
		// Whole cylinders of 64 heads × 32 sectors (1 MiB), with room
		// for the backup GPT after the ISO's data.
		size := (int64(next)*SectorSize + gptTail + 1<<20 - 1) &^ (1<<20 - 1)
		img.sectors = uint32(size / SectorSize)
	}
}

// dirSize is the size of d's extent: its records, none across a sector.
func (img *image) dirSize(d *node) int {
	size, used := SectorSize, 0
	add := func(n int) {
		if used+n > SectorSize {
			size += SectorSize
			used = 0
		}
		used += n
	}
	add(img.dotLen(d == img.root))
	add(img.dotLen(false))
	for _, c := range d.children {
		add(len(img.record(c, c.isoName, false)))
	}
	return size
}

// dotLen is the length of a "." or ".." record.
func (img *image) dotLen(rootDot bool) int {
	if rootDot {
		return len(img.rootDot())
	}
	return len(img.record(&node{dir: true}, "\x00", false))
}

// rootDot is the root's "." record: SUSP's SP, and CE pointing to the
// extension reference.
func (img *image) rootDot() []byte {
	return img.record(img.root, "\x00", true)
}

// record is a directory record for n named id (ISO 9660) with Rock
// Ridge's PX, TF and (for named entries) NM; rootDot adds SUSP's SP and
// the CE of the root's ".".
func (img *image) record(n *node, id string, rootDot bool) []byte {
	fileID := id
	if !n.dir {
		fileID += ";1"
	}
	b := make([]byte, 33, 255)
	b = append(b, fileID...)
	if len(fileID)%2 == 0 {
		b = append(b, 0)
	}
	both32(b[2:], n.lba)
	both32(b[10:], uint32(n.size))
	copy(b[18:25], recDate(img.o.Time))
	if n.dir {
		b[25] = 2
	}
	both16(b[28:], 1)
	b[32] = byte(len(fileID))
	if rootDot {
		b = append(b, 'S', 'P', 7, 1, 0xBE, 0xEF, 0)
	}
	mode, links := uint32(0o100000|0o444), uint32(1)
	if n.file != nil && n.file.Mode != 0 {
		mode = 0o100000 | n.file.Mode&0o7777
	}
	if n.dir {
		mode, links = 0o40000|0o555, 2
		for _, c := range n.children {
			if c.dir {
				links++
			}
		}
	}
	px := make([]byte, 36)
	copy(px, []byte{'P', 'X', 36, 1})
	both32(px[4:], mode)
	both32(px[12:], links)
	b = append(b, px...)
	// TF: modification, access and attribute change.
	tf := []byte{'T', 'F', 5 + 3*7, 1, 0x02 | 0x04 | 0x08}
	for range 3 {
		tf = append(tf, recDate(img.o.Time)...)
	}
	b = append(b, tf...)
	if id != "\x00" && id != "\x01" {
		b = append(b, 'N', 'M', byte(5+len(n.name)), 1, 0)
		b = append(b, n.name...)
	}
	if rootDot {
		ce := make([]byte, 28)
		copy(ce, []byte{'C', 'E', 28, 1})
		both32(ce[4:], img.ceLBA)
		both32(ce[12:], 0)
		both32(ce[20:], uint32(len(erEntry())))
		b = append(b, ce...)
	}
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	b[0] = byte(len(b))
	return b
}

// dirExtent is d's directory extent.
func (img *image) dirExtent(d *node) []byte {
	out := make([]byte, 0, d.size)
	used := 0
	add := func(r []byte) {
		if used+len(r) > SectorSize {
			out = append(out, make([]byte, SectorSize-used)...)
			used = 0
		}
		out = append(out, r...)
		used += len(r)
	}
	if d == img.root {
		add(img.rootDot())
	} else {
		add(img.record(d, "\x00", false))
	}
	add(img.record(d.parentOrSelf(), "\x01", false))
	for _, c := range d.children {
		add(img.record(c, c.isoName, false))
	}
	return append(out, make([]byte, int(d.size)-len(out))...)
}

func (n *node) parentOrSelf() *node {
	if n.parent == nil {
		return n
	}
	return n.parent
}

// pathTable is the L (little-endian) or M (big-endian) path table.
func (img *image) pathTable(order binary.ByteOrder) []byte {
	var b []byte
	for _, d := range img.dirs {
		id := d.isoName
		parent := 1
		if d == img.root {
			id = "\x00"
		} else {
			parent = d.parent.number
		}
		r := make([]byte, 8, 8+len(id)+1)
		r[0] = byte(len(id))
		order.PutUint32(r[2:], d.lba)
		order.PutUint16(r[6:], uint16(parent))
		r = append(r, id...)
		if len(id)%2 == 1 {
			r = append(r, 0)
		}
		b = append(b, r...)
	}
	return b
}

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
	seed := sha256.Sum256(append(slices.Clone(img.o.Seed), "iso mbr signature"...))
	copy(mbr[440:444], seed[:4])
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
		h := sha256.Sum256(append(slices.Clone(img.o.Seed), what...))
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

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// pad is s space-padded (or cut) to n bytes.
func pad(s string, n int) string {
	return fmt.Sprintf("%-*s", n, s)[:n]
}

// recDate is a directory record's 7-byte date, in UTC.
func recDate(t time.Time) []byte {
	t = t.UTC()
	if t.Year() < 1900 || t.Year() > 2155 {
		t = time.Unix(0, 0).UTC()
	}
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// volDate is a volume descriptor's 17-byte date (zero time: unset).
func volDate(t time.Time) []byte {
	if t.IsZero() {
		return append([]byte("0000000000000000"), 0)
	}
	t = t.UTC()
	return append([]byte(t.Format("20060102150405")+"00"), 0)
}
