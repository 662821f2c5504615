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
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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
	// TarSHA256, when set, gives the sha256 of the tar's bytes, which the
	// caller makes as it makes the tar: the UUID comes from it without a
	// reading of the whole tar. It is called once the tree is read.
	TarSHA256 func() ([]byte, error)
	// Entries, when set, reads the tar's entries (from the first, at each
	// call) without parsing its headers: the tar is indexed already (a
	// rootfs.Tar's Entries). Both readings take the entries from there.
	Entries func() Entries
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
	// Digest asks for the image's sha256 (Stats.SHA256), computed as it
	// is written rather than by reading the image back: on another core
	// when the tar is an io.ReaderAt (a file, a rootfs.Tar), and without
	// reading the holes of the sparse image in any case.
	Digest bool
}

// Entries reads a tar's entries as a tar.Reader does: Next is the next
// entry's header, Read reads its data, and DataOffset is where that data
// is in the tar.
type Entries interface {
	entryReader
	DataOffset() int64
}

// ctxEntries are Entries that fail once a context is done.
type ctxEntries struct {
	Entries
	ctx context.Context
}

func (c ctxEntries) Next() (*tar.Header, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	return c.Entries.Next()
}

func (c ctxEntries) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.Entries.Read(p)
}

// entryReader is what scan reads: a tar.Reader, or Entries.
type entryReader interface {
	Next() (*tar.Header, error)
	io.Reader
}

// Stats describe a written file system.
type Stats struct {
	Blocks, FreeBlocks, Inodes, FreeInodes uint32
	UUID                                   [16]byte
	// Pinned gives each of Options.Pin's files' blocks, in file order.
	Pinned map[string][]uint32
	// SHA256 is the image's digest, when Options.Digest asks for it.
	SHA256 [32]byte
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
// for the data. All the metadata is known once the tree is: it is
// written first, then the data.
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
	ra, _ := src.(io.ReaderAt)
	src = ctxio.ReadSeeker(o.Context, src)
	if entries := o.Entries; entries != nil && o.Context != nil {
		o.Entries = func() Entries { return ctxEntries{entries(), o.Context} }
	}
	t, offs, err := firstReading(src, ra, &o, epoch)
	if err != nil {
		return Stats{}, err
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
	if err := fs.writeMetadata(f, o, epoch); err != nil {
		return Stats{}, err
	}
	var dg *digester
	if o.Digest && offs != nil {
		dg = fs.startDigest(o.Context, f, ra, offs)
	}
	err = fs.secondReading(f, src, o.Entries, t, epoch)
	if err == nil && dg != nil {
		// Synced while the digest is finished: the caller's sync of the
		// file (atomicfile's) then has nothing left to wait for.
		err = f.Sync()
	}
	if err != nil {
		if dg != nil {
			dg.cancel()
		}
		return Stats{}, err
	}
	st := Stats{Blocks: fs.blocks, FreeBlocks: fs.freeBlocks, Inodes: fs.inodes, FreeInodes: fs.inodes - fs.usedInodes, UUID: o.UUID}
	switch {
	case dg != nil:
		st.SHA256, err = dg.wait()
	case o.Digest:
		st.SHA256, err = fs.digest(o.Context, nil, f, nil, nil)
	}
	if err != nil {
		return Stats{}, err
	}
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

// firstReading reads the tree of the tar src. Without a UUID, the tar's
// digest gives it: from Options.TarSHA256, else every byte is read (on
// another core when src is the io.ReaderAt ra); with one, or with
// TarSHA256, the tar reader seeks over the data.
// When ra is set and o.Digest asks, it notes where each regular file's
// data starts in src (offs, in tree.files' order).
func firstReading(src io.ReadSeeker, ra io.ReaderAt, o *Options, epoch time.Time) (*tree, []int64, error) {
	var offs []int64
	var dataFn func(*node, io.Reader) error
	var er Entries
	if o.Entries != nil {
		er = o.Entries()
	}
	if o.Digest && ra != nil {
		offs = []int64{}
		dataFn = func(*node, io.Reader) error {
			if er != nil {
				offs = append(offs, er.DataOffset())
				return nil
			}
			pos, err := src.Seek(0, io.SeekCurrent) // the tar reader stops at the data
			offs = append(offs, pos)
			return err
		}
	}
	// The tree, the tar reader seeking over the data.
	readTree := func() (*tree, error) {
		if er != nil {
			return scanEntries(er, epoch, dataFn)
		}
		return scan(src, epoch, dataFn)
	}
	if o.UUID != ([16]byte{}) || o.TarSHA256 != nil {
		t, err := readTree()
		if err != nil || o.UUID != ([16]byte{}) {
			return t, offs, err
		}
		sum, err := o.TarSHA256()
		if err != nil {
			return nil, nil, err
		}
		o.UUID = uuidOf(sum)
		return t, offs, nil
	}
	var t *tree
	var sum []byte
	var err error
	if ra != nil {
		t, sum, err = scanAndSum(o.Context, src, ra, readTree)
	} else {
		h := sha256.New()
		br := bufio.NewReaderSize(src, 1<<20)
		if er != nil {
			if t, err = readTree(); err == nil {
				_, err = io.Copy(h, br)
			}
		} else if t, err = scan(io.TeeReader(br, h), epoch, nil); err == nil {
			_, err = io.Copy(h, br)
		}
		sum = h.Sum(nil)
	}
	if err != nil {
		return nil, nil, err
	}
	o.UUID = uuidOf(sum)
	return t, offs, nil
}

// uuidOf is the UUID of a tar of digest sum.
func uuidOf(sum []byte) [16]byte {
	var uuid [16]byte
	u := sha256.Sum256(append(slices.Clip(sum), "alpinist ext4 uuid"...))
	copy(uuid[:], u[:16])
	uuid[6] = uuid[6]&0x0f | 0x40 // shaped as a version 4 UUID
	uuid[8] = uuid[8]&0x3f | 0x80
	return uuid
}

// scanAndSum reads the tree while another goroutine hashes every byte
// of src from where it is, read at offsets from ra.
func scanAndSum(ctx context.Context, src io.ReadSeeker, ra io.ReaderAt, readTree func() (*tree, error)) (*tree, []byte, error) {
	start, err := src.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, nil, err
	}
	end, err := src.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, nil, err
	}
	if _, err := src.Seek(start, io.SeekStart); err != nil {
		return nil, nil, err
	}
	type result struct {
		sum []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		h := sha256.New()
		_, err := io.CopyBuffer(h, ctxio.Reader(ctx, io.NewSectionReader(ra, start, end-start)), make([]byte, 1<<20))
		done <- result{h.Sum(nil), err}
	}()
	t, err := readTree()
	r := <-done
	if err != nil {
		return nil, nil, err
	}
	return t, r.sum, r.err
}

// secondReading copies the data, in tar order, into the blocks planned.
func (fs *fsys) secondReading(f *os.File, src io.ReadSeeker, entries func() Entries, t *tree, epoch time.Time) error {
	i := 0
	copyData := func(n *node, r io.Reader) error {
		if i >= len(t.files) || t.files[i].size != n.size {
			return errors.New("the tar changed between its two readings")
		}
		err := fs.writeData(f, t.files[i], r)
		i++
		return err
	}
	if entries != nil {
		_, err := scanEntries(entries(), epoch, copyData)
		return err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := scan(bufio.NewReaderSize(src, 1<<20), epoch, copyData)
	return err
}
