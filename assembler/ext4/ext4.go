// Package ext4 writes an ext4 file system image from the canonical rootfs
// tar, once, deterministically, without root and without mke2fs: 4 KiB
// blocks, extents, htree-indexed directories, hard links, device nodes,
// fast and slow symlinks, extended attributes (in the inode or in a
// block), a journal, and metadata_csum. The UUID and the directory hash
// seed come from the inputs (or the options), every time from the tar
// or SOURCE_DATE_EPOCH: the same input gives the same bytes. The image is
// sparse: blocks that hold nothing are never written.
//
// The layout is the classic one (no flex_bg, no resize inode, 32-bit
// block numbers: up to 16 TiB): each group of 32768 blocks starts with
// its superblock and descriptor backup (groups 0, 1 and powers of 3, 5
// and 7), then its block bitmap, inode bitmap and inode table. e2fsck
// -fn is the judge in the tests.
package ext4

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
)

const (
	blockSize      = 4096
	blocksPerGroup = 32768
	inodeSize      = 256
	extraIsize     = 32
	firstIno       = 11
	rootIno        = 2
	journalIno     = 8
	lostFoundIno   = 11
	maxExtentLen   = 32768
	descSize       = 32
)

// Options tune the file system.
type Options struct {
	// Size is the image size in bytes (rounded down to whole blocks); 0
	// computes it from the content, with headroom.
	Size int64
	// Headroom is the free space a computed size leaves, as a fraction of
	// the content (default 0.2), plus 16 MiB.
	Headroom float64
	// Label is the volume label (at most 16 bytes).
	Label string
	// UUID is the file system UUID; zero derives one from the tar's bytes.
	UUID [16]byte
	// Time dates the superblock and every inode's change, access and
	// creation times (modification times come from the tar).
	Time time.Time
	// Inodes is the inode count wanted; 0 computes it from the content.
	Inodes int
	// Pin names regular files (tar names: "boot/ldlinux.sys") whose
	// blocks must never move, because a boot sector points at them: they
	// get the immutable flag, and Stats.Pinned says where they are.
	Pin []string
	// Context, when set, stops the build at its next read of the tar
	// once done (Ctrl-C in the middle of a large image).
	Context context.Context
}

// Stats describe a written file system.
type Stats struct {
	Blocks, FreeBlocks, Inodes, FreeInodes uint32
	UUID                                   [16]byte
	// Pinned gives each of Options.Pin's files' blocks, in file order.
	Pinned map[string][]uint32
}

// BuildFile writes the ext4 image dst from the rootfs tar file src; dst
// appears whole or not at all.
func BuildFile(dst, src string, o Options) (Stats, error) {
	in, err := os.Open(src)
	if err != nil {
		return Stats{}, fmt.Errorf("ext4: %w", err)
	}
	defer in.Close()
	var st Stats
	err = atomicfile.WriteFile(dst, 0o644, func(f *os.File) error {
		var err error
		st, err = Build(f, in, o)
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("ext4: %s: %w", dst, err)
	}
	return st, nil
}

// Build writes the file system of the rootfs tar src into the empty file
// f (sparse: it is truncated to the image size and only blocks that hold
// something are written). src is read twice: once for the tree, once
// for the data.
func Build(f *os.File, src io.ReadSeeker, o Options) (Stats, error) {
	if len(o.Label) > 16 {
		return Stats{}, fmt.Errorf("label %q is longer than 16 bytes", o.Label)
	}
	if o.Headroom == 0 {
		o.Headroom = 0.2
	}
	epoch := o.Time
	if epoch.IsZero() {
		epoch = time.Unix(0, 0)
	}
	src = ctxio.ReadSeeker(o.Context, src)
	// First reading: the tree. Without a UUID, the tar's digest gives it,
	// so every byte is read; with one, the tar reader seeks over the data.
	var br *bufio.Reader
	var sum hash.Hash
	var r io.Reader = src
	if o.UUID == ([16]byte{}) {
		sum = sha256.New()
		br = bufio.NewReaderSize(src, 1<<20)
		r = io.TeeReader(br, sum)
	}
	t, err := scan(r, epoch, nil)
	if err != nil {
		return Stats{}, err
	}
	if sum != nil {
		if _, err := io.Copy(sum, br); err != nil {
			return Stats{}, err
		}
		h := sha256.Sum256(append(sum.Sum(nil), "alpinist ext4 uuid"...))
		copy(o.UUID[:], h[:16])
		o.UUID[6] = o.UUID[6]&0x0f | 0x40 // shaped as a version 4 UUID
		o.UUID[8] = o.UUID[8]&0x3f | 0x80
	}
	// The directory hash seed comes from the UUID.
	seed := sha256.Sum256(append(o.UUID[:], "alpinist ext4 hash seed"...))
	fs, err := plan(t, o, seed)
	if err != nil {
		return Stats{}, err
	}
	if err := f.Truncate(int64(fs.blocks) * blockSize); err != nil {
		return Stats{}, err
	}
	// Second reading: the data, in tar order, into the blocks planned.
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return Stats{}, err
	}
	i := 0
	_, err = scan(bufio.NewReaderSize(src, 1<<20), epoch, func(n *node, r io.Reader) error {
		if i >= len(t.files) || t.files[i].size != n.size {
			return errors.New("the tar changed between its two readings")
		}
		err := fs.writeData(f, t.files[i], r)
		i++
		return err
	})
	if err != nil {
		return Stats{}, err
	}
	if err := fs.writeMetadata(f, o, epoch); err != nil {
		return Stats{}, err
	}
	st := Stats{Blocks: fs.blocks, FreeBlocks: fs.freeBlocks, Inodes: fs.inodes, FreeInodes: fs.inodes - fs.usedInodes, UUID: o.UUID}
	if len(o.Pin) > 0 {
		st.Pinned = map[string][]uint32{}
		for _, name := range o.Pin {
			n, _ := t.lookup(name) // plan checked it
			var blocks []uint32
			for _, e := range n.extents {
				for b := range e.length {
					blocks = append(blocks, e.start+b)
				}
			}
			st.Pinned[name] = blocks
		}
	}
	return st, nil
}
