package ext4

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

const (
	tailSize     = 12 // the checksum tail of a directory leaf block
	rootLimit    = (blockSize - 32 - 8) / 8
	nodeLimit    = (blockSize - 8 - 8) / 8
	dirHashMD4   = 1
	maxDirLeaves = rootLimit * nodeLimit
)

func direntSize(name string) int { return 8 + (len(name)+3)&^3 }

// putDirent writes a directory entry at b[0:].
func putDirent(b []byte, ino uint32, recLen int, name string, ft uint8) {
	binary.LittleEndian.PutUint32(b[0:], ino)
	binary.LittleEndian.PutUint16(b[4:], uint16(recLen))
	b[6] = uint8(len(name))
	b[7] = ft
	copy(b[8:], name)
}

// dirEntry is a directory entry to lay out.
type dirEntry struct {
	name         string
	ino          uint32
	ft           uint8
	major, minor uint32
}

// dirBlocks lays out a directory: one linear block when everything
// fits, else an htree (a root block, index nodes when the leaves are
// more than the root can list, and leaves sorted by hash). Checksums
// are filled in later (finishDirBlocks), when the inode's seed is known.
func dirBlocks(self, parent uint32, ents []dirEntry, seed [4]uint32) ([][]byte, bool, error) {
	total := 24
	for _, e := range ents {
		total += direntSize(e.name)
	}
	if total <= blockSize-tailSize {
		b := make([]byte, blockSize)
		putDirent(b, self, 12, ".", 2)
		off := 12
		rest := ents
		recLen := blockSize - tailSize - off
		if len(rest) > 0 {
			recLen = 12
		}
		putDirent(b[off:], parent, recLen, "..", 2)
		off += 12
		for i, e := range rest {
			rl := direntSize(e.name)
			if i == len(rest)-1 {
				rl = blockSize - tailSize - off
			}
			putDirent(b[off:], e.ino, rl, e.name, e.ft)
			off += direntSize(e.name)
		}
		putTail(b)
		return [][]byte{b}, false, nil
	}
	for i := range ents {
		ents[i].major, ents[i].minor = dirHash([]byte(ents[i].name), seed)
	}
	slices.SortFunc(ents, func(a, b dirEntry) int {
		if a.major != b.major {
			return cmpU32(a.major, b.major)
		}
		if a.minor != b.minor {
			return cmpU32(a.minor, b.minor)
		}
		return strings.Compare(a.name, b.name)
	})
	// Leaves, filled in hash order.
	var leaves [][]dirEntry
	used := blockSize
	for _, e := range ents {
		if used+direntSize(e.name) > blockSize-tailSize {
			leaves = append(leaves, nil)
			used = 0
		}
		leaves[len(leaves)-1] = append(leaves[len(leaves)-1], e)
		used += direntSize(e.name)
	}
	if len(leaves) > maxDirLeaves {
		return nil, false, fmt.Errorf("a directory of %d entries is beyond a two-level htree", len(ents))
	}
	// Each leaf's lowest hash, with the low bit set when it continues
	// the previous leaf's last hash.
	type dx struct{ hash, block uint32 }
	nodes := 0
	if len(leaves) > rootLimit {
		nodes = (len(leaves) + nodeLimit - 1) / nodeLimit
	}
	first := uint32(1 + nodes)
	leafIdx := make([]dx, len(leaves))
	for i, l := range leaves {
		h := l[0].major
		if i > 0 && leaves[i-1][len(leaves[i-1])-1].major == h {
			h |= 1
		}
		leafIdx[i] = dx{h, first + uint32(i)}
	}
	blocks := make([][]byte, 1+nodes+len(leaves))
	// The root.
	root := make([]byte, blockSize)
	putDirent(root, self, 12, ".", 2)
	putDirent(root[12:], parent, blockSize-12, "..", 2)
	root[24+4] = dirHashMD4
	root[24+5] = 8
	writeIndex := func(b []byte, countOff int, limit int, entries []dx) {
		binary.LittleEndian.PutUint16(b[countOff:], uint16(limit))
		binary.LittleEndian.PutUint16(b[countOff+2:], uint16(len(entries)))
		binary.LittleEndian.PutUint32(b[countOff+4:], entries[0].block)
		for j, e := range entries[1:] {
			binary.LittleEndian.PutUint32(b[countOff+8+j*8:], e.hash)
			binary.LittleEndian.PutUint32(b[countOff+12+j*8:], e.block)
		}
	}
	if nodes == 0 {
		writeIndex(root, 32, rootLimit, leafIdx)
	} else {
		root[24+6] = 1 // indirect levels
		var top []dx
		for n := 0; n < nodes; n++ {
			part := leafIdx[n*nodeLimit : min((n+1)*nodeLimit, len(leafIdx))]
			b := make([]byte, blockSize)
			binary.LittleEndian.PutUint16(b[4:], blockSize) // a fake empty dirent over the block
			writeIndex(b, 8, nodeLimit, part)
			blocks[1+n] = b
			top = append(top, dx{part[0].hash, uint32(1 + n)})
		}
		writeIndex(root, 32, rootLimit, top)
	}
	blocks[0] = root
	for i, l := range leaves {
		b := make([]byte, blockSize)
		off := 0
		for j, e := range l {
			rl := direntSize(e.name)
			if j == len(l)-1 {
				rl = blockSize - tailSize - off
			}
			putDirent(b[off:], e.ino, rl, e.name, e.ft)
			off += direntSize(e.name)
		}
		putTail(b)
		blocks[int(first)+i] = b
	}
	return blocks, true, nil
}

// emptyDirBlock is a leaf holding no entry.
func emptyDirBlock() []byte {
	b := make([]byte, blockSize)
	putDirent(b, 0, blockSize-tailSize, "", 0)
	putTail(b)
	return b
}

func putTail(b []byte) {
	t := b[blockSize-tailSize:]
	binary.LittleEndian.PutUint16(t[4:], tailSize)
	t[7] = 0xDE
}

// finishDirBlocks writes the checksums of a directory's blocks with the
// inode's checksum seed.
func finishDirBlocks(blocks [][]byte, htree bool, nodes int, seed uint32) {
	for i, b := range blocks {
		switch {
		case htree && i == 0:
			dxChecksum(b, 32, seed)
		case htree && i <= nodes:
			dxChecksum(b, 8, seed)
		default:
			binary.LittleEndian.PutUint32(b[blockSize-4:], crc(seed, b[:blockSize-tailSize]))
		}
	}
}

func dxChecksum(b []byte, countOff int, seed uint32) {
	limit := int(binary.LittleEndian.Uint16(b[countOff:]))
	count := int(binary.LittleEndian.Uint16(b[countOff+2:]))
	tail := countOff + limit*8
	c := crc(seed, b[:countOff+count*8])
	binary.LittleEndian.PutUint32(b[tail+4:], 0)
	c = crc(c, b[tail:tail+8])
	binary.LittleEndian.PutUint32(b[tail+4:], c)
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
