// Package tarread reads tar archives as archive/tar reads them, for the
// formats packages use (USTAR, PAX extended headers, GNU long names, V7),
// with far fewer instructions per header: archive/tar checks every
// header block rune by rune for non-ASCII bytes only to guess its
// format, which under emulation was a fifth of the build VM's install
// work. Global PAX headers and sparse files are refused (ErrUnsupported)
// rather than read differently.
//
// FuzzReader holds it to archive/tar: whatever it reads, archive/tar
// reads the same.
package tarread

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
)

// ErrUnsupported is returned for what archive/tar reads and this package
// does not: global PAX headers and sparse files.
var ErrUnsupported = errors.New("tarread: unsupported entry (global PAX header or sparse file)")

const (
	blockSize = 512
	// maxSpecial is archive/tar's limit for a PAX or GNU long-name entry.
	maxSpecial = 1 << 20
)

// Reader reads a tar archive's entries in order.
type Reader struct {
	r    io.Reader
	left int64 // unread bytes of the current entry
	pad  int64 // padding after them
	blk  [blockSize]byte
	err  error // sticky
}

// NewReader reads a tar archive from r. When r is an io.Seeker, what
// is not read of an entry is skipped by seeking.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next advances to the next entry, as archive/tar's Next does; io.EOF at
// the end of the archive.
func (tr *Reader) Next() (*tar.Header, error) {
	if tr.err != nil {
		return nil, tr.err
	}
	h, err := tr.next()
	tr.err = err
	return h, err
}

// Read reads the current entry's data.
func (tr *Reader) Read(p []byte) (int, error) {
	if tr.err != nil {
		return 0, tr.err
	}
	if tr.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > tr.left {
		p = p[:tr.left]
	}
	n, err := tr.r.Read(p)
	tr.left -= int64(n)
	switch {
	case err == io.EOF && tr.left > 0:
		err = io.ErrUnexpectedEOF
	case err == io.EOF:
		err = nil
	}
	if err != nil {
		tr.err = err
	}
	return n, err
}

func (tr *Reader) next() (*tar.Header, error) {
	var pax map[string]string
	var longName, longLink string
	for {
		if err := tr.skip(tr.left); err != nil {
			return nil, err
		}
		// The padding: the archive may end without it, or in it (both
		// io.EOF, as archive/tar has it).
		if err := readPadding(tr.r, tr.blk[:tr.pad]); err != nil {
			return nil, err
		}
		tr.left, tr.pad = 0, 0
		h, err := tr.readHeader()
		if err != nil {
			return nil, err
		}
		size, err := dataSize(h)
		if err != nil {
			return nil, err
		}
		switch h.Typeflag {
		case tar.TypeXHeader:
			b, err := tr.special(size)
			if err != nil {
				return nil, err
			}
			if pax, err = parsePAX(b); err != nil {
				return nil, err
			}
			continue
		case tar.TypeGNULongName, tar.TypeGNULongLink:
			b, err := tr.special(size)
			if err != nil {
				return nil, err
			}
			if h.Typeflag == tar.TypeGNULongName {
				longName = cstring(b)
			} else {
				longLink = cstring(b)
			}
			continue
		case tar.TypeXGlobalHeader, tar.TypeGNUSparse:
			return nil, ErrUnsupported
		}
		if err := mergePAX(h, pax); err != nil {
			return nil, err
		}
		if longName != "" {
			h.Name = longName
		}
		if longLink != "" {
			h.Linkname = longLink
		}
		if h.Typeflag == tar.TypeRegA {
			if strings.HasSuffix(h.Name, "/") {
				h.Typeflag = tar.TypeDir
			} else {
				h.Typeflag = tar.TypeReg
			}
		}
		// PAX records may have changed the size.
		if size, err = dataSize(h); err != nil {
			return nil, err
		}
		tr.left, tr.pad = size, padding(size)
		return h, nil
	}
}

// readPadding reads len(b) bytes of padding. Unlike io.ReadFull, an
// end within them is io.EOF, not io.ErrUnexpectedEOF: archive/tar's
// tryReadFull.
func readPadding(r io.Reader, b []byte) error {
	n := 0
	var err error
	for n < len(b) && err == nil {
		var k int
		k, err = r.Read(b[n:])
		n += k
	}
	if n == len(b) && err == io.EOF {
		err = nil
	}
	return err
}

// special reads the data of a PAX or GNU long-name entry.
func (tr *Reader) special(size int64) ([]byte, error) {
	if size > maxSpecial {
		return nil, tar.ErrFieldTooLong
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(tr.r, b); err != nil {
		return nil, unexpected(err)
	}
	tr.pad = padding(size)
	return b, nil
}

// skip skips n bytes: by seeking to the last of them and reading it when
// the reader seeks (so that a short archive is still an error), by
// reading otherwise.
func (tr *Reader) skip(n int64) error {
	if n <= 0 {
		return nil
	}
	if s, ok := tr.r.(io.Seeker); ok && n > 1 {
		if _, err := s.Seek(n-1, io.SeekCurrent); err == nil {
			var one [1]byte
			_, err := io.ReadFull(tr.r, one[:])
			return unexpected(err)
		}
	}
	_, err := io.CopyN(io.Discard, tr.r, n)
	return unexpected(err)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

var zero [blockSize]byte

// readHeader reads one header block: io.EOF at the end of the archive
// (no bytes, one zero block and the end, or two zero blocks).
func (tr *Reader) readHeader() (*tar.Header, error) {
	if _, err := io.ReadFull(tr.r, tr.blk[:]); err != nil {
		return nil, err
	}
	if tr.blk == zero {
		if _, err := io.ReadFull(tr.r, tr.blk[:]); err != nil {
			return nil, err
		}
		if tr.blk == zero {
			return nil, io.EOF
		}
		return nil, tar.ErrHeader
	}
	b := tr.blk[:]
	var p parser
	sum := p.octal(b[148:156])
	unsigned, signed := checksums(b)
	if p.err != nil || (sum != unsigned && sum != signed) {
		return nil, tar.ErrHeader
	}
	h := &tar.Header{
		Typeflag: b[156],
		Name:     cstring(b[0:100]),
		Linkname: cstring(b[157:257]),
		Size:     p.numeric(b[124:136]),
		Mode:     p.numeric(b[100:108]),
		Uid:      int(p.numeric(b[108:116])),
		Gid:      int(p.numeric(b[116:124])),
		ModTime:  time.Unix(p.numeric(b[136:148]), 0),
	}
	magic, version := string(b[257:263]), string(b[263:265])
	star := string(b[508:512]) == "tar\x00"
	if magic == "ustar\x00" || (magic == "ustar " && version == " \x00") {
		h.Uname = cstring(b[265:297])
		h.Gname = cstring(b[297:329])
		h.Devmajor = p.numeric(b[329:337])
		h.Devminor = p.numeric(b[337:345])
		var prefix string
		switch {
		case magic == "ustar\x00" && star:
			prefix = cstring(b[345:476])
			h.AccessTime = time.Unix(p.numeric(b[476:488]), 0)
			h.ChangeTime = time.Unix(p.numeric(b[488:500]), 0)
		case magic == "ustar\x00":
			prefix = cstring(b[345:500])
		default: // GNU
			var p2 parser
			if b[345] != 0 {
				h.AccessTime = time.Unix(p2.numeric(b[345:357]), 0)
			}
			if b[357] != 0 {
				h.ChangeTime = time.Unix(p2.numeric(b[357:369]), 0)
			}
			if p2.err != nil {
				// Old Go wrote a USTAR prefix here: archive/tar reads it
				// so when it is ASCII.
				h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
				if s := cstring(b[345:500]); ascii(s) {
					prefix = s
				}
			}
		}
		if len(prefix) > 0 {
			h.Name = prefix + "/" + h.Name
		}
	}
	if p.err != nil {
		return nil, tar.ErrHeader
	}
	return h, nil
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func checksums(b []byte) (unsigned, signed int64) {
	for i, c := range b {
		if 148 <= i && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return unsigned, signed
}

// dataSize is how many bytes of data follow h's header.
func dataSize(h *tar.Header) (int64, error) {
	if headerOnly(h.Typeflag) {
		return 0, nil
	}
	if h.Size < 0 {
		return 0, tar.ErrHeader
	}
	return h.Size, nil
}

// headerOnly are the types whose size says nothing of data that follows.
func headerOnly(t byte) bool {
	switch t {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

func padding(n int64) int64 { return -n & (blockSize - 1) }

// cstring is b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parser parses numeric fields, remembering the first error.
type parser struct{ err error }

// numeric is a base-256 number (the first byte's high bit set) or an
// octal one.
func (p *parser) numeric(b []byte) int64 {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var inv byte
		if b[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range b {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 > 0 {
				p.err = tar.ErrHeader
				return 0
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 > 0 {
			p.err = tar.ErrHeader
			return 0
		}
		if inv == 0xff {
			return ^int64(x)
		}
		return int64(x)
	}
	return p.octal(b)
}

// octal is an octal field, spaces and NULs around it ignored and read
// up to a NUL within, as archive/tar reads it.
func (p *parser) octal(b []byte) int64 {
	b = bytes.Trim(b, " \x00")
	if len(b) == 0 {
		return 0
	}
	x, err := strconv.ParseUint(cstring(b), 8, 64)
	if err != nil {
		p.err = tar.ErrHeader
	}
	return int64(x)
}

// parsePAX reads the records of a PAX extended header.
func parsePAX(b []byte) (map[string]string, error) {
	s := string(b)
	recs := map[string]string{}
	for len(s) > 0 {
		n, rest, ok := strings.Cut(s, " ")
		if !ok {
			return nil, tar.ErrHeader
		}
		size, err := strconv.ParseInt(n, 10, 0)
		if err != nil || size < 5 || size > int64(len(s)) {
			return nil, tar.ErrHeader
		}
		size -= int64(len(n) + 1)
		if size <= 0 {
			return nil, tar.ErrHeader
		}
		rec, nl := rest[:size-1], rest[size-1:size]
		if nl != "\n" {
			return nil, tar.ErrHeader
		}
		k, v, ok := strings.Cut(rec, "=")
		if !ok || !validRecord(k, v) {
			return nil, tar.ErrHeader
		}
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, ErrUnsupported
		}
		recs[k] = v
		s = rest[size:]
	}
	return recs, nil
}

// validRecord is archive/tar's check of a PAX record.
func validRecord(k, v string) bool {
	if k == "" || strings.Contains(k, "=") {
		return false
	}
	switch k {
	case "path", "linkpath", "uname", "gname":
		return !strings.Contains(v, "\x00")
	}
	return !strings.Contains(k, "\x00")
}

// mergePAX applies PAX records to h, as archive/tar does.
func mergePAX(h *tar.Header, recs map[string]string) error {
	for k, v := range recs {
		if v == "" {
			continue
		}
		var err error
		var id int64
		switch k {
		case "path":
			h.Name = v
		case "linkpath":
			h.Linkname = v
		case "uname":
			h.Uname = v
		case "gname":
			h.Gname = v
		case "uid":
			id, err = strconv.ParseInt(v, 10, 64)
			h.Uid = int(id)
		case "gid":
			id, err = strconv.ParseInt(v, 10, 64)
			h.Gid = int(id)
		case "atime":
			h.AccessTime, err = paxTime(v)
		case "mtime":
			h.ModTime, err = paxTime(v)
		case "ctime":
			h.ChangeTime, err = paxTime(v)
		case "size":
			h.Size, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return tar.ErrHeader
		}
	}
	if recs != nil {
		h.PAXRecords = recs
	}
	return nil
}

// paxTime parses a PAX time: seconds, and a fraction of up to nine
// digits that count (more are checked and dropped).
func paxTime(s string) (time.Time, error) {
	ss, sn, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(ss, 10, 64)
	if err != nil {
		return time.Time{}, tar.ErrHeader
	}
	if sn == "" {
		return time.Unix(secs, 0), nil
	}
	digits := []byte("000000000")
	for i := range len(sn) {
		c := sn[i]
		if c < '0' || c > '9' {
			return time.Time{}, tar.ErrHeader
		}
		if i < len(digits) {
			digits[i] = c
		}
	}
	ns, _ := strconv.ParseInt(string(digits), 10, 64)
	if ss[0] == '-' {
		return time.Unix(secs, -ns), nil
	}
	return time.Unix(secs, ns), nil
}
