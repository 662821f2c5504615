package ext4

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
)

// The image's digest (Options.Digest) is computed from what the plan
// says each block holds, not by reading the image back whole: the
// metadata, written first, is read back from the image; each file's
// data is read from the tar, at the offset the first reading noted; a
// block nothing was allocated is zeros, hashed from memory. So the
// digest is made on another core while the data is written, and the
// holes of a sparse image are never read. Without offsets (a tar that is
// no io.ReaderAt) the data is read back from the image once written.

// region is a run of blocks of one file's data.
type region struct {
	start, blocks uint32
	tar           int64 // where its data is in the tar (-1: read the image)
	size          int64 // the bytes of data in it; the rest of its last block is zeros
}

// digester computes the digest beside the data's writing.
type digester struct {
	stop chan struct{}
	done chan struct{}
	sum  [32]byte
	err  error
}

// startDigest starts the digest of the image f, with the files' data
// read from tar at offs (tar nil: from f, which must then be written
// whole before the digester reaches the data).
func (fs *fsys) startDigest(ctx context.Context, f, tar io.ReaderAt, offs []int64) *digester {
	d := &digester{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.sum, d.err = fs.digest(ctx, d.stop, f, tar, offs)
	}()
	return d
}

// wait is the digest, once done.
func (d *digester) wait() ([32]byte, error) {
	<-d.done
	return d.sum, d.err
}

// cancel stops the digester and waits for it to be gone.
func (d *digester) cancel() {
	close(d.stop)
	<-d.done
}

var errStopped = errors.New("ext4: digest stopped")

// digest is the sha256 of the image f as planned (see above).
func (fs *fsys) digest(ctx context.Context, stop <-chan struct{}, f, tar io.ReaderAt, offs []int64) ([32]byte, error) {
	var regions []region
	for i, n := range fs.t.files {
		for _, e := range n.extents {
			r := region{start: e.start, blocks: e.length, tar: -1, size: min(int64(e.length)*blockSize, n.size-int64(e.logical)*blockSize)}
			if tar != nil {
				r.tar = offs[i] + int64(e.logical)*blockSize
			}
			regions = append(regions, r)
		}
	}
	slices.SortFunc(regions, func(a, b region) int { return int(a.start) - int(b.start) })
	h := &imageHash{fs: fs, f: f, tar: tar, stop: stop, ctx: ctx, h: sha256.New(), buf: make([]byte, 1<<20)}
	next := uint32(0)
	for _, r := range regions {
		if r.start < next {
			return [32]byte{}, fmt.Errorf("ext4: digest: blocks %d and on are in two files", r.start)
		}
		if err := h.blocks(next, r.start); err != nil {
			return [32]byte{}, err
		}
		if err := h.data(r); err != nil {
			return [32]byte{}, err
		}
		next = r.start + r.blocks
	}
	if err := h.blocks(next, fs.blocks); err != nil {
		return [32]byte{}, err
	}
	var sum [32]byte
	h.h.Sum(sum[:0])
	return sum, nil
}

// imageHash hashes the image in order.
type imageHash struct {
	fs     *fsys
	f, tar io.ReaderAt
	stop   <-chan struct{}
	ctx    context.Context
	h      hash.Hash
	buf    []byte
}

// zeros is what an unwritten block holds.
var zeros = make([]byte, 1<<20)

// check stops the digest when asked to or when the context is done.
func (ih *imageHash) check() error {
	select {
	case <-ih.stop:
		return errStopped
	default:
	}
	if ih.ctx != nil {
		return ih.ctx.Err()
	}
	return nil
}

// blocks hashes blocks [from, to), which hold no file's data: the
// allocated ones (metadata, directories, the journal) read back from
// the image, the others zeros.
func (ih *imageHash) blocks(from, to uint32) error {
	for b := from; b < to; {
		used := ih.fs.isUsed(b)
		end := b + 1
		for end < to && ih.fs.isUsed(end) == used && end-b < uint32(len(ih.buf)/blockSize) {
			end++
		}
		if !used {
			// Whole 64-block words of the bitmap at once.
			for end < to && end%64 == 0 && end+64 <= to && ih.fs.used[end/64] == 0 {
				end += 64
			}
		}
		if err := ih.check(); err != nil {
			return err
		}
		if used {
			if err := ih.read(ih.f, int64(b)*blockSize, int64(end-b)*blockSize); err != nil {
				return err
			}
		} else if err := ih.zeros(int64(end-b) * blockSize); err != nil {
			return err
		}
		b = end
	}
	return nil
}

// data hashes a file's region: its data, then zeros to the block's end.
func (ih *imageHash) data(r region) error {
	src, off := ih.tar, r.tar
	if src == nil {
		src, off = ih.f, int64(r.start)*blockSize
	}
	if err := ih.read(src, off, r.size); err != nil {
		return err
	}
	return ih.zeros(int64(r.blocks)*blockSize - r.size)
}

// read hashes n bytes of r at off.
func (ih *imageHash) read(r io.ReaderAt, off, n int64) error {
	for n > 0 {
		if err := ih.check(); err != nil {
			return err
		}
		k := min(n, int64(len(ih.buf)))
		got, err := r.ReadAt(ih.buf[:k], off)
		if int64(got) < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("ext4: digest: %w", err)
		}
		ih.h.Write(ih.buf[:k])
		off, n = off+k, n-k
	}
	return nil
}

// zeros hashes n zero bytes.
func (ih *imageHash) zeros(n int64) error {
	for n > 0 {
		if err := ih.check(); err != nil {
			return err
		}
		k := min(n, int64(len(zeros)))
		ih.h.Write(zeros[:k])
		n -= k
	}
	return nil
}
