package iso

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

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
