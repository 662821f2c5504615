package kcomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// lz4Legacy reads LZ4's legacy frame, as the kernel's build writes it: a
// magic number, then blocks of at most 8 MiB decompressed, each after
// its compressed size (a magic number where a size would be starts a
// concatenated frame). Its two buffers are allocated once: a kernel is
// seven blocks, and fresh memory is what decompressing costs most.
type lz4Legacy struct {
	r        io.Reader
	src, dst []byte
	out      []byte // what dst holds that was not read yet
	started  bool
}

const (
	lz4LegacyMagic = 0x184c2102
	lz4LegacyBlock = 8 << 20
)

func newLZ4Legacy(r io.Reader) *lz4Legacy {
	return &lz4Legacy{r: r}
}

func (l *lz4Legacy) Read(p []byte) (int, error) {
	for len(l.out) == 0 {
		if err := l.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}

// next decompresses the next block into dst.
func (l *lz4Legacy) next() error {
	var word [4]byte
	for {
		if _, err := io.ReadFull(l.r, word[:]); err != nil {
			if err == io.EOF && l.started {
				return io.EOF
			}
			return fmt.Errorf("lz4: %w", noEOF(err))
		}
		size := binary.LittleEndian.Uint32(word[:])
		if size == lz4LegacyMagic {
			l.started = true
			continue
		}
		if !l.started {
			return errors.New("lz4: not a legacy frame")
		}
		if size > uint32(lz4.CompressBlockBound(lz4LegacyBlock)) {
			return fmt.Errorf("lz4: a block of %d bytes", size)
		}
		if l.src == nil {
			l.src = make([]byte, lz4.CompressBlockBound(lz4LegacyBlock))
			l.dst = make([]byte, lz4LegacyBlock)
		}
		if _, err := io.ReadFull(l.r, l.src[:size]); err != nil {
			return fmt.Errorf("lz4: %w", noEOF(err))
		}
		n, err := lz4.UncompressBlock(l.src[:size], l.dst)
		if err != nil {
			return fmt.Errorf("lz4: %w", err)
		}
		l.out = l.dst[:n]
		return nil
	}
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
