package ext4

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// fsys is the planned file system: geometry, inodes, allocations.
type fsys struct {
	blocks, groups, ipg, itb, gdtBlocks uint32
	inodes, usedInodes                  uint32
	freeBlocks                          uint32
	used                                []uint64 // the block bitmap
	cursor                              uint32   // the allocator's next candidate block
	hashSeed                            [4]uint32
	uuid                                [16]byte
	csumSeed                            uint32
	byIno                               map[uint32]*node
	inos                                []uint32 // used inode numbers, ascending
	t                                   *tree
	journal, lostFound                  *node
	dirCount                            []uint32 // per group
	buf                                 []byte   // the data copy buffer
}

// hasSuper tells whether group g holds a superblock backup (sparse_super).
func hasSuper(g uint32) bool {
	if g <= 1 {
		return true
	}
	for _, p := range []uint32{3, 5, 7} {
		n := g
		for n%p == 0 {
			n /= p
		}
		if n == 1 {
			return true
		}
	}
	return false
}

func (fs *fsys) groupStart(g uint32) uint32 { return g * blocksPerGroup }

func (fs *fsys) groupBlocks(g uint32) uint32 {
	if g == fs.groups-1 {
		return fs.blocks - g*blocksPerGroup
	}
	return blocksPerGroup
}

// overhead is the number of metadata blocks at the start of group g.
func (fs *fsys) overhead(g uint32) uint32 {
	o := 2 + fs.itb
	if hasSuper(g) {
		o += 1 + fs.gdtBlocks
	}
	return o
}

func (fs *fsys) blockBitmap(g uint32) uint32 {
	b := fs.groupStart(g)
	if hasSuper(g) {
		b += 1 + fs.gdtBlocks
	}
	return b
}
func (fs *fsys) inodeBitmap(g uint32) uint32 { return fs.blockBitmap(g) + 1 }
func (fs *fsys) inodeTable(g uint32) uint32  { return fs.blockBitmap(g) + 2 }

func (fs *fsys) isUsed(b uint32) bool { return fs.used[b/64]&(1<<(b%64)) != 0 }
func (fs *fsys) setUsed(b uint32)     { fs.used[b/64] |= 1 << (b % 64) }

// alloc takes n blocks, as few runs as it can (the next free blocks, in
// order), each run at most maxExtentLen long.
func (fs *fsys) alloc(n uint32, logical uint32) ([]extent, error) {
	var out []extent
	for n > 0 {
		for fs.cursor < fs.blocks && fs.isUsed(fs.cursor) {
			fs.cursor++
		}
		if fs.cursor >= fs.blocks {
			return nil, errFull
		}
		start := fs.cursor
		length := uint32(0)
		for length < n && length < maxExtentLen && fs.cursor < fs.blocks && !fs.isUsed(fs.cursor) {
			fs.setUsed(fs.cursor)
			fs.cursor++
			length++
		}
		if k := len(out) - 1; k >= 0 && out[k].start+out[k].length == start && out[k].length+length <= maxExtentLen {
			out[k].length += length
		} else {
			out = append(out, extent{logical: logical, start: start, length: length})
		}
		logical += length
		n -= length
	}
	return out, nil
}

var errFull = fmt.Errorf("the image is too small for the content")

// journalBlocks is e2fsprogs' default journal size for a file system.
func journalBlocks(blocks uint32) uint32 {
	switch {
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// plan lays the tree out: inode numbers, directory contents, geometry,
// and every block's place.
func plan(t *tree, o Options, seed [32]byte) (*fsys, error) {
	fs := &fsys{t: t, byIno: map[uint32]*node{}, uuid: o.UUID}
	for i := range fs.hashSeed {
		fs.hashSeed[i] = binary.LittleEndian.Uint32(seed[i*4:])
	}
	fs.csumSeed = crc(math.MaxUint32, o.UUID[:])
	fs.numberInodes(o)
	for _, name := range o.Pin {
		n, err := t.lookup(name)
		if err != nil {
			return nil, err
		}
		if !n.isReg() {
			return nil, fmt.Errorf("/%s: only regular files can be pinned", name)
		}
		n.immutable = true
	}
	content, err := fs.directories()
	if err != nil {
		return nil, err
	}
	blocks, err := fs.size(o, content)
	if err != nil {
		return nil, err
	}
	if err := fs.geometry(uint32(blocks), o, uint32(len(fs.inos))+firstIno); err != nil {
		return nil, err
	}
	if err := fs.allocate(o); err != nil {
		return nil, err
	}
	var usedBlocks uint32
	for b := uint32(0); b < fs.blocks; b++ {
		if fs.isUsed(b) {
			usedBlocks++
		}
	}
	fs.freeBlocks = fs.blocks - usedBlocks
	return fs, nil
}

// numberInodes numbers the inodes: the root 2, the journal 8,
// lost+found 11 (unless the tar has one), then the tar's objects in
// order from 12.
func (fs *fsys) numberInodes(o Options) {
	t := fs.t
	t.root.ino = rootIno
	fs.byIno[rootIno] = t.root
	fs.journal = &node{ino: journalIno, mode: sIFREG | 0o600, links: 1}
	fs.byIno[journalIno] = fs.journal
	if _, ok := t.root.childIndex["lost+found"]; !ok {
		lf := &node{ino: lostFoundIno, mode: sIFDIR | 0o700, parent: t.root, childIndex: map[string]int{}, mtime: o.Time}
		t.root.childIndex["lost+found"] = len(t.root.children)
		t.root.children = append(t.root.children, dirent{name: "lost+found", n: lf})
		lf.links = 1
		t.root.isDirCnt++
		fs.lostFound = lf
		fs.byIno[lostFoundIno] = lf
	}
	next := uint32(firstIno + 1)
	for _, n := range t.nodes {
		n.ino = next
		fs.byIno[next] = n
		next++
	}
	for ino := range fs.byIno {
		fs.inos = append(fs.inos, ino)
	}
	slices.Sort(fs.inos)
	fs.usedInodes = next - 1
}

// directories makes the directories' contents (the hash seed orders
// htree leaves) and returns the blocks of content: directories, files
// and slow symlinks.
func (fs *fsys) directories() (uint64, error) {
	var dirBlockCount, dataBlocks uint32
	for _, ino := range fs.inos {
		n := fs.byIno[ino]
		switch {
		case n == fs.lostFound:
			n.dirData = [][]byte{nil, emptyDirBlock(), emptyDirBlock(), emptyDirBlock()}
			first, _, _ := dirBlocks(n.ino, rootIno, nil, fs.hashSeed)
			n.dirData[0] = first[0]
			dirBlockCount += 4
		case n.isDir():
			ents := make([]dirEntry, 0, len(n.children))
			for _, c := range n.children {
				ents = append(ents, dirEntry{name: c.name, ino: c.n.ino, ft: c.n.fileType()})
			}
			slices.SortFunc(ents, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
			blocks, htree, err := dirBlocks(n.ino, n.parent.ino, ents, fs.hashSeed)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", fs.path(n), err)
			}
			n.dirData, n.htree = blocks, htree
			dirBlockCount += uint32(len(blocks))
		case n.isReg():
			dataBlocks += uint32((n.size + blockSize - 1) / blockSize)
		case n.isLnk() && !n.fastSymlink():
			dataBlocks++
		}
	}
	return uint64(dirBlockCount) + uint64(dataBlocks), nil
}

// size gives the file system's blocks: o.Size's, or the content's with
// headroom, a journal, inode tables and enough groups for the inodes.
func (fs *fsys) size(o Options, content uint64) (uint64, error) {
	extra := uint64(len(fs.inos)) / 8 // extent and xattr blocks, at most
	var blocks uint64
	if o.Size > 0 {
		blocks = uint64(o.Size) / blockSize
	} else {
		blocks = uint64(float64(content+extra)*(1+o.Headroom)) + (16<<20)/blockSize
		blocks += uint64(journalBlocks(uint32(min(blocks, math.MaxUint32))))
		// Inode tables and bitmaps: 1/16 of a block per inode (one per 16 KiB).
		blocks += blocks / 64
	}
	if blocks < 2048 {
		if o.Size > 0 {
			return 0, fmt.Errorf("a size of %d bytes is below the 8 MiB an ext4 image with a journal needs", o.Size)
		}
		blocks = 2048
	}
	// Enough groups for the inodes (a group holds at most 32768); the
	// last one may be partial, but big enough to be kept.
	if need := uint64(max(o.Inodes, len(fs.inos)*6/5+firstIno+64)); o.Size == 0 {
		if groups := (need + blockSize*8 - 1) / (blockSize * 8); groups > 1 {
			blocks = max(blocks, (groups-1)*blocksPerGroup+blocksPerGroup/2)
		}
	}
	if blocks > math.MaxUint32 {
		return 0, fmt.Errorf("%d blocks: beyond 16 TiB", blocks)
	}
	return blocks, nil
}

// allocate places the journal, then each inode's blocks in inode order,
// then extent tree blocks and attribute blocks.
func (fs *fsys) allocate(o Options) error {
	jb := journalBlocks(fs.blocks)
	var err error
	if fs.journal.extents, err = fs.alloc(jb, 0); err != nil {
		return fs.full(o)
	}
	fs.journal.size = int64(jb) * blockSize
	for _, ino := range fs.inos {
		n := fs.byIno[ino]
		var nb uint32
		switch {
		case n == fs.journal:
		case n.isDir():
			nb = uint32(len(n.dirData))
			n.size = int64(nb) * blockSize
		case n.isReg():
			nb = uint32((n.size + blockSize - 1) / blockSize)
		case n.isLnk() && !n.fastSymlink():
			nb = 1
		}
		if nb > 0 {
			if n.extents, err = fs.alloc(nb, 0); err != nil {
				return fs.full(o)
			}
		}
	}
	for _, ino := range fs.inos {
		if err := fs.allocateMeta(fs.byIno[ino], o); err != nil {
			return err
		}
	}
	return nil
}

// allocateMeta places a node's extent tree leaves (more than 4 extents)
// and its attribute block (attributes that do not fit in the inode).
func (fs *fsys) allocateMeta(n *node, o Options) error {
	if len(n.extents) > 4 {
		leaves := (len(n.extents) + leafExtents - 1) / leafExtents
		if leaves > 4 {
			return fmt.Errorf("%s: %d extents: too fragmented", fs.path(n), len(n.extents))
		}
		for range leaves {
			e, err := fs.alloc(1, 0)
			if err != nil {
				return fs.full(o)
			}
			n.meta = append(n.meta, e[0].start)
		}
	}
	if len(n.xattrs) > 0 && !fitsInInode(n.xattrs) {
		if xattrBlockSize(n.xattrs) > blockSize {
			return fmt.Errorf("%s: extended attributes of more than one block", fs.path(n))
		}
		e, err := fs.alloc(1, 0)
		if err != nil {
			return fs.full(o)
		}
		n.xblock = e[0].start
	}
	return nil
}

func (fs *fsys) full(o Options) error {
	if o.Size > 0 {
		return fmt.Errorf("%w: %d bytes given; leave --disk-size unset to size it from the content", errFull, o.Size)
	}
	return errFull
}

// geometry sets the groups, inodes per group and metadata places for a
// size of blocks, marking the metadata blocks used.
func (fs *fsys) geometry(blocks uint32, o Options, inodesNeeded uint32) error {
	groups := (blocks + blocksPerGroup - 1) / blocksPerGroup
	want := max(uint32(o.Inodes), inodesNeeded+inodesNeeded/5+64, blocks/4)
	ipg := (want + groups - 1) / groups
	ipg = min(max((ipg+15)&^15, 16), blockSize*8)
	if uint64(ipg)*uint64(groups) < uint64(inodesNeeded) {
		return fmt.Errorf("%d files do not fit the %d inodes of this size", inodesNeeded, ipg*groups)
	}
	fs.ipg, fs.itb = ipg, ipg*inodeSize/blockSize
	fs.gdtBlocks = (groups*descSize + blockSize - 1) / blockSize
	fs.blocks, fs.groups = blocks, groups
	// A last group too small for its own metadata is dropped.
	if last := groups - 1; last > 0 && fs.groupBlocks(last) < fs.overhead(last)+64 {
		fs.blocks = last * blocksPerGroup
		fs.groups = last
		fs.gdtBlocks = (fs.groups*descSize + blockSize - 1) / blockSize
	}
	if fs.groupBlocks(fs.groups-1) <= fs.overhead(fs.groups-1) {
		return fmt.Errorf("%d blocks are too few for the file system's metadata", blocks)
	}
	fs.inodes = fs.ipg * fs.groups
	if fs.usedInodes > fs.inodes {
		return fmt.Errorf("%d files do not fit the %d inodes", fs.usedInodes, fs.inodes)
	}
	fs.used = make([]uint64, (fs.blocks+63)/64)
	for g := uint32(0); g < fs.groups; g++ {
		for b := fs.groupStart(g); b < fs.groupStart(g)+fs.overhead(g); b++ {
			fs.setUsed(b)
		}
	}
	fs.dirCount = make([]uint32, fs.groups)
	return nil
}

// path is a node's path, for messages.
func (fs *fsys) path(n *node) string {
	var parts []string
	for n != fs.t.root && n.parent != nil {
		p := n.parent
		name := "?"
		for _, c := range p.children {
			if c.n == n {
				name = c.name
				break
			}
		}
		parts = append([]string{name}, parts...)
		n = p
	}
	return "/" + strings.Join(parts, "/")
}

// inodeTime splits a time into ext4's 32-bit seconds and the extra field
// (epoch bits and nanoseconds).
func inodeTime(t time.Time) (uint32, uint32) {
	s := t.Unix()
	if s < math.MinInt32 {
		s = math.MinInt32
	}
	if s > 1<<34-1+math.MinInt32 {
		s = 1<<34 - 1 + math.MinInt32
	}
	lo := uint32(int32(s))
	epochBits := uint32((s - int64(int32(s))) >> 32)
	return lo, epochBits&3 | uint32(t.Nanosecond())<<2
}
