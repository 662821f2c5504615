package qcow2

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Reader reads the virtual disk of a qcow2 image (version 2 or 3):
// allocated, zero and unallocated clusters, and deflate- or
// zstd-compressed ones. Images with a backing file, encryption, an
// external data file or extended L2 entries are refused.
type Reader struct {
	r           io.ReaderAt
	size        int64
	clusterBits uint
	l1          []uint64
	zstd        bool
	// the last L2 table read, by its offset
	l2Off uint64
	l2    []uint64
}

const (
	l1OffsetMask = 0x00fffffffffffe00
	l2ZeroFlag   = 1
)

// NewReader opens the qcow2 image r.
func NewReader(r io.ReaderAt) (*Reader, error) {
	h := make([]byte, 112)
	if n, err := r.ReadAt(h, 0); n < 72 {
		return nil, fmt.Errorf("qcow2: header: %w", errors.Join(err, io.ErrUnexpectedEOF))
	}
	be := binary.BigEndian
	if be.Uint32(h[0:]) != magic {
		return nil, errors.New("qcow2: not a qcow2 image")
	}
	version := be.Uint32(h[4:])
	if version != 2 && version != 3 {
		return nil, fmt.Errorf("qcow2: version %d", version)
	}
	if be.Uint64(h[8:]) != 0 {
		return nil, errors.New("qcow2: images with a backing file are not read")
	}
	q := &Reader{r: r, clusterBits: uint(be.Uint32(h[20:])), size: int64(be.Uint64(h[24:]))}
	if q.clusterBits < 9 || q.clusterBits > 21 {
		return nil, fmt.Errorf("qcow2: cluster bits %d", q.clusterBits)
	}
	if be.Uint32(h[32:]) != 0 {
		return nil, errors.New("qcow2: encrypted images are not read")
	}
	if q.size < 0 {
		return nil, fmt.Errorf("qcow2: size %d", q.size)
	}
	if version == 3 {
		incompat := be.Uint64(h[72:])
		headerLen := be.Uint32(h[100:])
		switch {
		case incompat&^(1|2|incompatZstd) != 0:
			return nil, fmt.Errorf("qcow2: incompatible features %#x (external data file or extended L2 entries) are not read", incompat)
		case incompat&incompatZstd != 0:
			if headerLen < 105 || h[104] != compressionZstd {
				return nil, errors.New("qcow2: unknown compression type")
			}
			q.zstd = true
		}
	}
	l1Size := int64(be.Uint32(h[36:]))
	cs := int64(1) << q.clusterBits
	perL2 := cs / 8
	span := cs * perL2 // what one L1 entry maps
	need := q.size / span
	if q.size%span != 0 {
		need++
	}
	if l1Size < need || l1Size > 1<<22 {
		return nil, fmt.Errorf("qcow2: L1 table of %d entries for %d bytes", l1Size, q.size)
	}
	raw := make([]byte, l1Size*8)
	if _, err := r.ReadAt(raw, int64(be.Uint64(h[40:]))); err != nil {
		return nil, fmt.Errorf("qcow2: L1 table: %w", err)
	}
	q.l1 = make([]uint64, l1Size)
	for i := range q.l1 {
		q.l1[i] = be.Uint64(raw[i*8:])
	}
	return q, nil
}

// Size is the virtual disk's size.
func (q *Reader) Size() int64 { return q.size }

// ReadAt reads the virtual disk.
func (q *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("qcow2: negative offset")
	}
	n := 0
	cs := int64(1) << q.clusterBits
	for n < len(p) {
		if off >= q.size {
			return n, io.EOF
		}
		in := off % cs
		k := int(min(int64(len(p)-n), cs-in, q.size-off))
		if err := q.readCluster(p[n:n+k], off/cs, in); err != nil {
			return n, err
		}
		n += k
		off += int64(k)
	}
	return n, nil
}

// readCluster fills p from virtual cluster c at offset in.
func (q *Reader) readCluster(p []byte, c, in int64) error {
	cs := int64(1) << q.clusterBits
	perL2 := cs / 8
	l1e := q.l1[c/perL2] & l1OffsetMask
	if l1e == 0 {
		clear(p)
		return nil
	}
	if l1e != q.l2Off || q.l2 == nil {
		raw := make([]byte, cs)
		if _, err := q.r.ReadAt(raw, int64(l1e)); err != nil {
			return fmt.Errorf("qcow2: L2 table at %d: %w", l1e, err)
		}
		q.l2 = make([]uint64, perL2)
		for i := range q.l2 {
			q.l2[i] = binary.BigEndian.Uint64(raw[i*8:])
		}
		q.l2Off = l1e
	}
	e := q.l2[c%perL2]
	switch {
	case e&l2Compressed != 0:
		x := 62 - (q.clusterBits - 8)
		coff := int64(e & (1<<x - 1))
		sectors := int64((e>>x)&(1<<(q.clusterBits-8)-1)) + 1
		comp := make([]byte, sectors*compressedSector-coff%compressedSector)
		if n, err := q.r.ReadAt(comp, coff); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return fmt.Errorf("qcow2: compressed cluster at %d: %w", coff, err)
		} else {
			comp = comp[:n]
		}
		var dec io.Reader
		if q.zstd {
			z, err := zstd.NewReader(bytes.NewReader(comp), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(cs)*4))
			if err != nil {
				return err
			}
			defer z.Close()
			dec = z
		} else {
			dec = flate.NewReader(bytes.NewReader(comp))
		}
		cluster := make([]byte, cs)
		if _, err := io.ReadFull(dec, cluster); err != nil {
			return fmt.Errorf("qcow2: compressed cluster at %d: %w", coff, err)
		}
		copy(p, cluster[in:])
	case e&l2ZeroFlag != 0 || e&l1OffsetMask == 0:
		clear(p)
	default:
		if _, err := q.r.ReadAt(p, int64(e&l1OffsetMask)+in); err != nil {
			return fmt.Errorf("qcow2: cluster at %d: %w", e&l1OffsetMask, err)
		}
	}
	return nil
}
