// Package xzbcj reads the first block of an xz stream whose filter
// chain is a branch converter (BCJ: x86 or ARM) before LZMA2, or LZMA2
// alone: how Linux compresses its kernels (scripts/xz_wrap.sh: x86's
// 686 kernels are "xz --x86 --lzma2"). The Go xz decoder alpinist uses
// (github.com/ulikunitz/xz) takes LZMA2 alone; its LZMA2 decoder does
// the work here, and the BCJ filters are xz-embedded's (public domain),
// in Go.
//
// Only the block's data is read: the block's check, the index and the
// footer are not (a kernel comes in a package whose checksum and
// signature were verified).
package xzbcj

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// Filter IDs (xz file format 1.0.4, 5.3.3).
const (
	filterX86   = 0x04
	filterARM   = 0x07
	filterLZMA2 = 0x21
)

// MaxDict bounds the LZMA2 dictionary a stream may ask for.
const MaxDict = 64 << 20

// ErrFormat is returned for what is not an xz stream this package reads.
var ErrFormat = errors.New("xzbcj: not an xz stream of BCJ and LZMA2")

// NewReader reads the data of the first block of the xz stream r.
func NewReader(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	var sh [12]byte
	if _, err := io.ReadFull(br, sh[:]); err != nil {
		return nil, fmt.Errorf("%w: stream header: %v", ErrFormat, err)
	}
	if !bytes.Equal(sh[:6], []byte{0xfd, '7', 'z', 'X', 'Z', 0}) || crc32.ChecksumIEEE(sh[6:8]) != binary.LittleEndian.Uint32(sh[8:]) {
		return nil, fmt.Errorf("%w: bad stream header", ErrFormat)
	}
	size, err := br.ReadByte()
	if err != nil || size == 0 {
		return nil, fmt.Errorf("%w: no block (an empty stream, or the index)", ErrFormat)
	}
	hdr := make([]byte, (int(size)+1)*4)
	hdr[0] = size
	if _, err := io.ReadFull(br, hdr[1:]); err != nil {
		return nil, fmt.Errorf("%w: block header: %v", ErrFormat, err)
	}
	n := len(hdr)
	if crc32.ChecksumIEEE(hdr[:n-4]) != binary.LittleEndian.Uint32(hdr[n-4:]) {
		return nil, fmt.Errorf("%w: block header checksum", ErrFormat)
	}
	filters, err := parseBlockHeader(hdr[1 : n-4])
	if err != nil {
		return nil, err
	}
	last := filters[len(filters)-1]
	if last.id != filterLZMA2 || len(last.props) != 1 {
		return nil, fmt.Errorf("%w: the last filter is %#x, not LZMA2", ErrFormat, last.id)
	}
	dict, err := dictSize(last.props[0])
	if err != nil {
		return nil, err
	}
	lz, err := lzma.Reader2Config{DictCap: dict}.NewReader2(br)
	if err != nil {
		return nil, fmt.Errorf("xzbcj: LZMA2: %w", err)
	}
	var out io.Reader = lz
	switch len(filters) {
	case 1:
	case 2:
		f := filters[0]
		if len(f.props) != 0 && len(f.props) != 4 {
			return nil, fmt.Errorf("%w: BCJ filter properties of %d bytes", ErrFormat, len(f.props))
		}
		var start uint32
		if len(f.props) == 4 {
			start = binary.LittleEndian.Uint32(f.props)
		}
		switch f.id {
		case filterX86:
			out = &bcjReader{r: lz, pos: start, filter: (*bcjReader).x86}
		case filterARM:
			if start%4 != 0 {
				return nil, fmt.Errorf("%w: ARM BCJ start offset %d", ErrFormat, start)
			}
			out = &bcjReader{r: lz, pos: start, filter: (*bcjReader).arm}
		default:
			return nil, fmt.Errorf("%w: filter %#x before LZMA2 (x86 and ARM BCJ are read)", ErrFormat, f.id)
		}
	default:
		return nil, fmt.Errorf("%w: %d filters", ErrFormat, len(filters))
	}
	return out, nil
}

type filter struct {
	id    uint64
	props []byte
}

// parseBlockHeader reads the block flags, the optional sizes and the
// filter flags; the rest must be zero padding.
func parseBlockHeader(b []byte) ([]filter, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: short block header", ErrFormat)
	}
	flags := b[0]
	if flags&0x3c != 0 {
		return nil, fmt.Errorf("%w: reserved block flags %#x", ErrFormat, flags)
	}
	r := bytes.NewReader(b[1:])
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} { // compressed, uncompressed size
		if present {
			if _, err := binary.ReadUvarint(r); err != nil {
				return nil, fmt.Errorf("%w: block sizes: %v", ErrFormat, err)
			}
		}
	}
	filters := make([]filter, int(flags&3)+1)
	for i := range filters {
		id, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: filter id: %v", ErrFormat, err)
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return nil, fmt.Errorf("%w: filter properties", ErrFormat)
		}
		props := make([]byte, n)
		io.ReadFull(r, props)
		filters[i] = filter{id, props}
	}
	for r.Len() > 0 {
		if c, _ := r.ReadByte(); c != 0 {
			return nil, fmt.Errorf("%w: block header padding", ErrFormat)
		}
	}
	return filters, nil
}

// dictSize is the LZMA2 dictionary size of its properties byte.
func dictSize(p byte) (int, error) {
	bits := int(p & 0x3f)
	if p&0xc0 != 0 || bits > 40 {
		return 0, fmt.Errorf("%w: LZMA2 properties %#x", ErrFormat, p)
	}
	if bits == 40 {
		return 0, fmt.Errorf("xzbcj: a 4 GiB LZMA2 dictionary: more than %d bytes", MaxDict)
	}
	size := (2 | bits&1) << (bits/2 + 11)
	if size > MaxDict {
		return 0, fmt.Errorf("xzbcj: an LZMA2 dictionary of %d bytes: more than %d", size, MaxDict)
	}
	return size, nil
}

// bcjReader applies a BCJ decoder to what r gives. The filter converts
// what it can of the unconverted bytes (it needs a few bytes of
// look-ahead) and says how much; the rest waits for more input, and
// passes as it is at the end.
type bcjReader struct {
	r      io.Reader
	filter func(b *bcjReader, buf []byte) int
	pos    uint32 // the stream position of buf[conv]
	mask   uint32 // the x86 filter's state
	buf    []byte
	// buf[read:conv] is converted and not read yet; buf[conv:] is not
	// converted yet.
	read, conv int
	err        error
}

func (b *bcjReader) Read(p []byte) (int, error) {
	for b.read == b.conv {
		if b.err != nil {
			if b.conv == len(b.buf) {
				return 0, b.err
			}
			b.conv = len(b.buf) // the end: the last bytes pass unconverted
			break
		}
		// Keep the unconverted tail, and room for more.
		tail := copy(b.buf[:cap(b.buf)], b.buf[b.conv:])
		b.buf, b.read, b.conv = b.buf[:tail], 0, 0
		if cap(b.buf) < 64<<10 {
			nb := make([]byte, tail, 64<<10)
			copy(nb, b.buf)
			b.buf = nb
		}
		n, err := io.ReadFull(b.r, b.buf[tail:cap(b.buf)])
		b.buf = b.buf[:tail+n]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			b.err = io.EOF
		} else if err != nil {
			return 0, err
		}
		if k := b.filter(b, b.buf); k > 0 {
			b.conv = k
			b.pos += uint32(k)
		}
	}
	n := copy(p, b.buf[b.read:b.conv])
	b.read += n
	return n, nil
}

// x86 is xz-embedded's bcj_x86: CALL (E8) and JMP (E9) targets stored
// as absolute addresses become relative again.
func (b *bcjReader) x86(buf []byte) int {
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	msb := func(c byte) bool { return c == 0x00 || c == 0xff }
	if len(buf) <= 4 {
		return 0
	}
	size := len(buf) - 4
	prevPos := -1
	prevMask := b.mask
	i := 0
	for ; i < size; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		d := i - prevPos
		if d > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << (d - 1)) & 7
			if prevMask != 0 {
				c := buf[i+4-int(bitNum[prevMask])]
				if !allowed[prevMask] || msb(c) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if !msb(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - (b.pos + uint32(i) + 5)
			if prevMask == 0 {
				break
			}
			j := bitNum[prevMask] * 8
			if !msb(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= -(dest & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 4
	}
	if d := i - prevPos; d > 3 {
		b.mask = 0
	} else {
		b.mask = prevMask << (d - 1)
	}
	return i
}

// arm is xz-embedded's bcj_arm: BL instructions' absolute targets become
// relative again.
func (b *bcjReader) arm(buf []byte) int {
	size := len(buf) &^ 3
	for i := 0; i < size; i += 4 {
		if buf[i+3] == 0xeb {
			addr := uint32(buf[i]) | uint32(buf[i+1])<<8 | uint32(buf[i+2])<<16
			addr <<= 2
			addr -= b.pos + uint32(i) + 8
			addr >>= 2
			buf[i], buf[i+1], buf[i+2] = byte(addr), byte(addr>>8), byte(addr>>16)
		}
	}
	return size
}
