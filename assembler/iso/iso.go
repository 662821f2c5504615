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
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"
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
