package ext4

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"time"

	"github.com/alpinist/alpinist/internal/sparse"
)

const (
	leafExtents = (blockSize - 12 - 4) / 12 // extents in a leaf block (340)

	flagExtents   = 0x80000
	flagIndex     = 0x1000
	flagImmutable = 0x10

	xattrMagic = 0xEA020000
)

var le = binary.LittleEndian

// writeData copies a regular file's data into its extents, leaving
// all-zero blocks unwritten (the image is sparse).
func (fs *fsys) writeData(f *os.File, n *node, r io.Reader) error {
	left := n.size
	if fs.buf == nil {
		fs.buf = make([]byte, 256*blockSize)
	}
	buf := fs.buf
	for _, e := range n.extents {
		off := int64(e.start) * blockSize
		span := min(int64(e.length)*blockSize, left)
		for span > 0 {
			k := min(span, int64(len(buf)))
			if _, err := io.ReadFull(r, buf[:k]); err != nil {
				return fmt.Errorf("reading the data: %w", err)
			}
			if err := sparse.WriteAt(f, buf[:k], off); err != nil {
				return err
			}
			off += k
			span -= k
			left -= k
		}
	}
	return nil
}

// inodeSeed is an inode's checksum seed (generation 0).
func (fs *fsys) inodeSeed(ino uint32) uint32 {
	return crcU32(crcU32(fs.csumSeed, ino), 0)
}

// writeMetadata writes everything but the file data: directories,
// symlinks, extent and attribute blocks, the journal, the inode tables,
// bitmaps, group descriptors and superblocks.
func (fs *fsys) writeMetadata(f *os.File, o Options, epoch time.Time) error {
	w := func(b []byte, block uint32) error {
		_, err := f.WriteAt(b, int64(block)*blockSize)
		return err
	}
	tables := make(map[uint32][]byte) // group -> its inode table, up to the last used inode
	for _, ino := range fs.inos {
		n := fs.byIno[ino]
		seed := fs.inodeSeed(ino)
		switch {
		case n.isDir():
			nodes := 0
			if n.htree && n.dirData[0][24+6] == 1 {
				nodes = int(le.Uint16(n.dirData[0][34:])) // the root lists the index nodes
			}
			finishDirBlocks(n.dirData, n.htree, nodes, seed)
			if err := fs.writeBlocks(w, n, n.dirData); err != nil {
				return err
			}
			fs.dirCount[(ino-1)/fs.ipg]++
		case n.isLnk() && !n.fastSymlink():
			b := make([]byte, blockSize)
			copy(b, n.target)
			if err := fs.writeBlocks(w, n, [][]byte{b}); err != nil {
				return err
			}
		}
		if len(n.meta) > 0 {
			for i, blk := range n.meta {
				part := n.extents[i*leafExtents : min((i+1)*leafExtents, len(n.extents))]
				b := make([]byte, blockSize)
				putExtentHeader(b, len(part), leafExtents, 0)
				for j, e := range part {
					putExtent(b[12+j*12:], e)
				}
				le.PutUint32(b[blockSize-4:], crc(seed, b[:blockSize-4]))
				if err := w(b, blk); err != nil {
					return err
				}
			}
		}
		if n.xblock != 0 {
			if err := w(fs.xattrBlock(n), n.xblock); err != nil {
				return err
			}
		}
		g, idx := (ino-1)/fs.ipg, (ino-1)%fs.ipg
		t := tables[g]
		if need := int(idx+1) * inodeSize; len(t) < need {
			t = append(t, make([]byte, need-len(t))...)
			tables[g] = t
		}
		fs.encodeInode(t[idx*inodeSize:(idx+1)*inodeSize], n, epoch)
	}
	// The reserved inodes, zero but for their checksums.
	for ino := uint32(1); ino < firstIno; ino++ {
		if _, ok := fs.byIno[ino]; ok {
			continue
		}
		t := tables[0]
		if need := int(ino) * inodeSize; len(t) < need {
			t = append(t, make([]byte, need-len(t))...)
			tables[0] = t
		}
		b := t[(ino-1)*inodeSize : ino*inodeSize]
		le.PutUint16(b[0x80:], extraIsize)
		fs.inodeChecksum(b, ino)
	}
	for g, t := range tables {
		if err := sparse.WriteAt(f, t, int64(fs.inodeTable(g))*blockSize); err != nil {
			return err
		}
	}
	// The journal's superblock.
	js := make([]byte, blockSize)
	be := binary.BigEndian
	be.PutUint32(js[0:], 0xC03B3998)
	be.PutUint32(js[4:], 4) // superblock v2
	be.PutUint32(js[0xC:], blockSize)
	be.PutUint32(js[0x10:], uint32(fs.journal.size/blockSize))
	be.PutUint32(js[0x14:], 1)
	be.PutUint32(js[0x18:], 1)
	copy(js[0x30:], fs.uuid[:])
	be.PutUint32(js[0x40:], 1)
	if err := w(js, fs.journal.extents[0].start); err != nil {
		return err
	}
	return fs.writeGroups(w, o, epoch)
}

// writeBlocks writes a node's data blocks (directory or symlink) into
// its extents.
func (fs *fsys) writeBlocks(w func([]byte, uint32) error, n *node, blocks [][]byte) error {
	i := 0
	for _, e := range n.extents {
		for k := uint32(0); k < e.length; k++ {
			if err := w(blocks[i], e.start+k); err != nil {
				return err
			}
			i++
		}
	}
	return nil
}

func putExtentHeader(b []byte, entries, max, depth int) {
	le.PutUint16(b[0:], 0xF30A)
	le.PutUint16(b[2:], uint16(entries))
	le.PutUint16(b[4:], uint16(max))
	le.PutUint16(b[6:], uint16(depth))
}

func putExtent(b []byte, e extent) {
	le.PutUint32(b[0:], e.logical)
	le.PutUint16(b[4:], uint16(e.length))
	le.PutUint16(b[6:], 0) // start_hi
	le.PutUint32(b[8:], e.start)
}

// encodeInode fills b (inodeSize bytes) with n's inode.
func (fs *fsys) encodeInode(b []byte, n *node, epoch time.Time) {
	clear(b)
	le.PutUint16(b[0x00:], n.mode)
	le.PutUint16(b[0x02:], uint16(n.uid))
	le.PutUint16(b[0x78:], uint16(n.uid>>16))
	le.PutUint16(b[0x18:], uint16(n.gid))
	le.PutUint16(b[0x7A:], uint16(n.gid>>16))
	size := n.size
	le.PutUint32(b[0x04:], uint32(size))
	le.PutUint32(b[0x6C:], uint32(size>>32))
	mt := n.mtime
	if mt.IsZero() {
		mt = epoch
	}
	es, ex := inodeTime(epoch)
	ms, mx := inodeTime(mt)
	le.PutUint32(b[0x08:], es) // atime
	le.PutUint32(b[0x0C:], es) // ctime
	le.PutUint32(b[0x10:], ms) // mtime
	le.PutUint32(b[0x90:], es) // crtime
	le.PutUint32(b[0x8C:], ex)
	le.PutUint32(b[0x84:], ex)
	le.PutUint32(b[0x88:], mx)
	le.PutUint32(b[0x94:], ex)
	links := n.links
	if n.isDir() {
		l := 2 + n.isDirCnt
		if l >= 65000 {
			l = 1 // dir_nlink: too many to count
		}
		links = uint32(l)
	}
	le.PutUint16(b[0x1A:], uint16(links)) // files: at most maxLinks
	var nblocks uint64
	for _, e := range n.extents {
		nblocks += uint64(e.length)
	}
	nblocks += uint64(len(n.meta))
	if n.xblock != 0 {
		nblocks++
		le.PutUint32(b[0x68:], n.xblock)
	}
	le.PutUint32(b[0x1C:], uint32(nblocks*blockSize/512))
	ib := b[0x28 : 0x28+60]
	switch {
	case n.fastSymlink():
		copy(ib, n.target)
	case n.mode&0xF000 == sIFCHR || n.mode&0xF000 == sIFBLK:
		if n.devMajor < 256 && n.devMinor < 256 {
			le.PutUint32(ib[0:], n.devMajor<<8|n.devMinor)
		} else {
			le.PutUint32(ib[4:], n.devMinor&0xff|n.devMajor<<8|(n.devMinor&^0xff)<<12)
		}
	case n.isReg() || n.isDir() || n.isLnk():
		flags := uint32(flagExtents)
		if n.htree {
			flags |= flagIndex
		}
		if n.immutable {
			flags |= flagImmutable
		}
		le.PutUint32(b[0x20:], flags)
		if len(n.meta) == 0 {
			putExtentHeader(ib, len(n.extents), 4, 0)
			for i, e := range n.extents {
				putExtent(ib[12+i*12:], e)
			}
		} else {
			putExtentHeader(ib, len(n.meta), 4, 1)
			for i, blk := range n.meta {
				x := ib[12+i*12:]
				le.PutUint32(x[0:], n.extents[i*leafExtents].logical)
				le.PutUint32(x[4:], blk)
			}
		}
	}
	le.PutUint16(b[0x80:], extraIsize)
	if len(n.xattrs) > 0 && n.xblock == 0 {
		putInodeXattrs(b[128+extraIsize:], n.xattrs)
	}
	fs.inodeChecksum(b, n.ino)
}

func (fs *fsys) inodeChecksum(b []byte, ino uint32) {
	le.PutUint16(b[0x7C:], 0)
	le.PutUint16(b[0x82:], 0)
	c := crc(fs.inodeSeed(ino), b[:inodeSize])
	le.PutUint16(b[0x7C:], uint16(c))
	le.PutUint16(b[0x82:], uint16(c>>16))
}

func xattrEntrySize(x xattr) int { return 16 + (len(x.name)+3)&^3 }
func xattrValueSize(x xattr) int { return (len(x.value) + 3) &^ 3 }
func sortXattrs(xs []xattr) []xattr {
	xs = slices.Clone(xs)
	slices.SortFunc(xs, func(a, b xattr) int {
		if a.index != b.index {
			return int(a.index) - int(b.index)
		}
		if len(a.name) != len(b.name) {
			return len(a.name) - len(b.name)
		}
		return bytes.Compare([]byte(a.name), []byte(b.name))
	})
	return xs
}

// inodeXattrSpace is the room after the inode's extra fields.
const inodeXattrSpace = inodeSize - 128 - extraIsize

func fitsInInode(xs []xattr) bool {
	need := 4 + 4 // magic, end marker
	for _, x := range xs {
		need += xattrEntrySize(x) + xattrValueSize(x)
	}
	return need <= inodeXattrSpace
}

func xattrBlockSize(xs []xattr) int {
	need := 32 + 4
	for _, x := range xs {
		need += xattrEntrySize(x) + xattrValueSize(x)
	}
	return need
}

// putXattrEntries writes the entries at b[0:] and their values backwards
// from b[end:], value offsets counted from base (b's start is base+0).
func putXattrEntries(b []byte, xs []xattr, end, base int) []uint32 {
	off := 0
	vend := end
	var hashes []uint32
	for _, x := range xs {
		vend -= xattrValueSize(x)
		copy(b[vend:], x.value)
		b[off] = uint8(len(x.name))
		b[off+1] = x.index
		le.PutUint16(b[off+2:], uint16(vend+base))
		le.PutUint32(b[off+8:], uint32(len(x.value)))
		h := xattrHash([]byte(x.name), x.value)
		le.PutUint32(b[off+12:], h)
		hashes = append(hashes, h)
		copy(b[off+16:], x.name)
		off += xattrEntrySize(x)
	}
	return hashes
}

func putInodeXattrs(b []byte, xs []xattr) {
	le.PutUint32(b[0:], xattrMagic)
	putXattrEntries(b[4:], sortXattrs(xs), len(b)-4, 0)
}

func (fs *fsys) xattrBlock(n *node) []byte {
	b := make([]byte, blockSize)
	le.PutUint32(b[0:], xattrMagic)
	le.PutUint32(b[4:], 1) // refcount
	le.PutUint32(b[8:], 1) // blocks
	hashes := putXattrEntries(b[32:], sortXattrs(n.xattrs), blockSize-32, 32)
	var h uint32
	for _, e := range hashes {
		h = h<<16 ^ h>>16 ^ e
	}
	le.PutUint32(b[12:], h)
	var num [8]byte
	le.PutUint64(num[:], uint64(n.xblock))
	le.PutUint32(b[16:], crc(crc(fs.csumSeed, num[:]), b))
	return b
}

// Superblock features.
const (
	compatHasJournal = 0x4
	compatExtAttr    = 0x8
	compatDirIndex   = 0x20

	incompatFiletype = 0x2
	incompatExtents  = 0x40

	roCompatSparseSuper  = 0x1
	roCompatLargeFile    = 0x2
	roCompatDirNlink     = 0x20
	roCompatExtraIsize   = 0x40
	roCompatMetadataCsum = 0x400
)

// writeGroups writes the bitmaps, the group descriptors and the
// superblock with its backups.
func (fs *fsys) writeGroups(w func([]byte, uint32) error, o Options, epoch time.Time) error {
	gdt := make([]byte, fs.gdtBlocks*blockSize)
	for g := uint32(0); g < fs.groups; g++ {
		// Block bitmap: the group's blocks, and past the end of a short
		// last group, ones.
		bb := make([]byte, blockSize)
		start, n := fs.groupStart(g), fs.groupBlocks(g)
		var free uint32
		for i := uint32(0); i < blocksPerGroup; i++ {
			if i >= n || fs.isUsed(start+i) {
				bb[i/8] |= 1 << (i % 8)
			} else {
				free++
			}
		}
		// Inode bitmap: the used inodes, and ones past ipg.
		ib := make([]byte, blockSize)
		var freeInodes uint32
		for i := uint32(0); i < blockSize*8; i++ {
			ino := g*fs.ipg + i + 1
			_, used := fs.byIno[ino]
			if i >= fs.ipg || used || ino < firstIno {
				ib[i/8] |= 1 << (i % 8)
			} else {
				freeInodes++
			}
		}
		if err := w(bb, fs.blockBitmap(g)); err != nil {
			return err
		}
		if err := w(ib, fs.inodeBitmap(g)); err != nil {
			return err
		}
		d := gdt[g*descSize : (g+1)*descSize]
		le.PutUint32(d[0x00:], fs.blockBitmap(g))
		le.PutUint32(d[0x04:], fs.inodeBitmap(g))
		le.PutUint32(d[0x08:], fs.inodeTable(g))
		le.PutUint16(d[0x0C:], uint16(free))
		le.PutUint16(d[0x0E:], uint16(freeInodes))
		le.PutUint16(d[0x10:], uint16(fs.dirCount[g]))
		le.PutUint16(d[0x12:], 0x4) // EXT4_BG_INODE_ZEROED
		le.PutUint16(d[0x18:], uint16(crc(fs.csumSeed, bb)))
		le.PutUint16(d[0x1A:], uint16(crc(fs.csumSeed, ib[:fs.ipg/8])))
		c := crcU32(fs.csumSeed, g)
		c = crc(c, d[:0x1E])
		c = crc(c, []byte{0, 0})
		le.PutUint16(d[0x1E:], uint16(c))
	}
	sb := make([]byte, 1024)
	le.PutUint32(sb[0x00:], fs.inodes)
	le.PutUint32(sb[0x04:], fs.blocks)
	le.PutUint32(sb[0x0C:], fs.freeBlocks)
	le.PutUint32(sb[0x10:], fs.inodes-fs.usedInodes)
	le.PutUint32(sb[0x14:], 0) // first data block
	le.PutUint32(sb[0x18:], 2) // log block size: 4 KiB
	le.PutUint32(sb[0x1C:], 2)
	le.PutUint32(sb[0x20:], blocksPerGroup)
	le.PutUint32(sb[0x24:], blocksPerGroup)
	le.PutUint32(sb[0x28:], fs.ipg)
	es, _ := inodeTime(epoch)
	le.PutUint32(sb[0x30:], es)     // write time
	le.PutUint16(sb[0x36:], 0xFFFF) // max mount count: none
	le.PutUint16(sb[0x38:], 0xEF53)
	le.PutUint16(sb[0x3A:], 1) // clean
	le.PutUint16(sb[0x3C:], 1) // errors: continue
	le.PutUint32(sb[0x40:], es)
	le.PutUint32(sb[0x4C:], 1) // dynamic revision
	le.PutUint32(sb[0x54:], firstIno)
	le.PutUint16(sb[0x58:], inodeSize)
	le.PutUint32(sb[0x5C:], compatHasJournal|compatExtAttr|compatDirIndex)
	le.PutUint32(sb[0x60:], incompatFiletype|incompatExtents)
	le.PutUint32(sb[0x64:], roCompatSparseSuper|roCompatLargeFile|roCompatDirNlink|roCompatExtraIsize|roCompatMetadataCsum)
	copy(sb[0x68:], fs.uuid[:])
	copy(sb[0x78:], o.Label)
	le.PutUint32(sb[0xE0:], journalIno)
	for i, v := range fs.hashSeed {
		le.PutUint32(sb[0xEC+i*4:], v)
	}
	sb[0xFC] = dirHashMD4
	sb[0xFD] = 1                   // jnl backup type: blocks
	le.PutUint32(sb[0x100:], 0x0C) // default mount options: user_xattr, acl
	le.PutUint32(sb[0x108:], es)   // mkfs time
	// The journal inode's i_block and size, as a backup.
	ji := make([]byte, inodeSize)
	fs.encodeInode(ji, fs.journal, epoch)
	copy(sb[0x10C:0x10C+60], ji[0x28:0x28+60])
	le.PutUint32(sb[0x10C+60:], uint32(fs.journal.size>>32))
	le.PutUint32(sb[0x10C+64:], uint32(fs.journal.size))
	le.PutUint16(sb[0x15C:], extraIsize) // min extra isize
	le.PutUint16(sb[0x15E:], extraIsize) // want extra isize
	le.PutUint32(sb[0x160:], 0x2)        // flags: unsigned directory hash
	sb[0x175] = 1                        // checksum type: crc32c
	for g := uint32(0); g < fs.groups; g++ {
		if !hasSuper(g) {
			continue
		}
		le.PutUint16(sb[0x5A:], uint16(g)) // block group number of this copy
		le.PutUint32(sb[0x3FC:], crc(math.MaxUint32, sb[:0x3FC]))
		blk := make([]byte, blockSize)
		off := 0
		if g == 0 {
			off = 1024
		}
		copy(blk[off:], sb)
		if err := w(blk, fs.groupStart(g)); err != nil {
			return err
		}
		if err := w(gdt, fs.groupStart(g)+1); err != nil {
			return err
		}
	}
	return nil
}
