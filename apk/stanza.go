package apk

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Field is one "X:value" line of an APKINDEX or installed-database stanza.
type Field struct {
	Key   byte   // the letter before the colon
	Value string // everything after the colon, up to the newline
	Line  int    // 1-based line number
}

// MaxLineLength bounds one line of an index or database; longer lines are
// an error (apk-tools fails on lines longer than its stream buffer, too).
const MaxLineLength = 1 << 20

// StanzaReader reads the text format shared by APKINDEX and
// lib/apk/db/installed, as apk-tools' apk_db_index_read does: stanzas of
// "X:value" lines separated by lines shorter than two bytes (normally empty
// lines); the end of input ends the last stanza. Lines are split at '\n'
// only: a '\r' is part of the value. A line of two or more bytes whose
// second byte is not ':' is an error. It streams: only the current line is
// held in memory.
//
//	sr := apk.NewStanzaReader(r, "APKINDEX")
//	for sr.NextStanza() {
//		for sr.Next() {
//			f := sr.Field()
//			...
//		}
//	}
//	if err := sr.Err(); err != nil { ... }
type StanzaReader struct {
	br       *bufio.Reader
	name     string
	line     int
	long     []byte // accumulates a line longer than br's buffer
	field    Field
	pending  bool // field is the first line of a stanza, not yet returned by Next
	inStanza bool
	eof      bool
	err      error
}

// NewStanzaReader reads stanzas from r; name (a file name) is used in
// errors.
func NewStanzaReader(r io.Reader, name string) *StanzaReader {
	return &StanzaReader{br: bufio.NewReaderSize(r, 64<<10), name: name}
}

// readLine returns the next line without its '\n', or false at the end of
// input or on error. The slice is valid until the next call.
func (s *StanzaReader) readLine() ([]byte, bool) {
	if s.eof || s.err != nil {
		return nil, false
	}
	s.long = s.long[:0]
	for {
		frag, err := s.br.ReadSlice('\n')
		switch {
		case err == nil:
			if len(s.long)+len(frag) > MaxLineLength+1 {
				s.err = s.Errorf(s.line+1, "line longer than %d bytes", MaxLineLength)
				return nil, false
			}
			s.line++
			if len(s.long) == 0 {
				return frag[:len(frag)-1], true
			}
			s.long = append(s.long, frag[:len(frag)-1]...)
			return s.long, true
		case errors.Is(err, bufio.ErrBufferFull):
			if len(s.long)+len(frag) > MaxLineLength {
				s.err = s.Errorf(s.line+1, "line longer than %d bytes", MaxLineLength)
				return nil, false
			}
			s.long = append(s.long, frag...)
		case err == io.EOF:
			s.eof = true
			if len(s.long)+len(frag) > MaxLineLength {
				s.err = s.Errorf(s.line+1, "line longer than %d bytes", MaxLineLength)
				return nil, false
			}
			s.long = append(s.long, frag...)
			if len(s.long) == 0 {
				return nil, false
			}
			s.line++
			return s.long, true
		default:
			s.err = fmt.Errorf("apk: %s: line %d: %w", s.name, s.line+1, err)
			return nil, false
		}
	}
}

// setField parses l into s.field; false (with Err set) if l is not X:value.
func (s *StanzaReader) setField(l []byte) bool {
	if l[1] != ':' {
		s.err = s.Errorf(s.line, "expected \"X:value\", got %q", truncate(string(l)))
		return false
	}
	s.field = Field{Key: l[0], Value: string(l[2:]), Line: s.line}
	return true
}

// NextStanza advances to the next stanza, skipping what is left of the
// current one and any blank lines. It returns false at the end of input or
// on error (see Err).
func (s *StanzaReader) NextStanza() bool {
	for s.inStanza {
		s.Next()
	}
	for {
		l, ok := s.readLine()
		if !ok {
			return false
		}
		if len(l) < 2 {
			continue
		}
		if !s.setField(l) {
			return false
		}
		s.pending, s.inStanza = true, true
		return true
	}
}

// Next advances to the next line of the current stanza, which Field then
// returns. It returns false at the end of the stanza or on error.
func (s *StanzaReader) Next() bool {
	if !s.inStanza {
		return false
	}
	if s.pending {
		s.pending = false
		return true
	}
	l, ok := s.readLine()
	if !ok || len(l) < 2 || !s.setField(l) {
		s.inStanza = false
		return false
	}
	return true
}

// Field is the line Next advanced to.
func (s *StanzaReader) Field() Field { return s.field }

// Err is the first error met, if any.
func (s *StanzaReader) Err() error { return s.err }

// Errorf makes an error about a line of the input:
// "apk: NAME: line N: message".
func (s *StanzaReader) Errorf(line int, format string, args ...any) error {
	return fmt.Errorf("apk: %s: line %d: %w", s.name, line, fmt.Errorf(format, args...))
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// SetField applies one package metadata field to p, as apk_pkg_add_info
// does, and reports whether key is such a field: P V T U L A C S I t k o m
// c, and D p i, which add to the lists when repeated. It reports false for
// every other letter: the installed database's own (F M R a Z r q s f,
// handled by apk/db) and unknown ones, which an index reader ignores as
// apk does. (apk-tools also marks a package with an unknown upper-case
// field uninstallable, as written by a newer apk; Package cannot say so.)
// Numbers must be non-negative decimals; dependencies follow
// ParseDependencies; C: follows DecodeChecksum.
func (p *Package) SetField(key byte, value string) (bool, error) {
	var err error
	switch key {
	case 'P':
		p.Name = value
	case 'V':
		p.Version = value
	case 'T':
		p.Description = value
	case 'U':
		p.URL = value
	case 'L':
		p.License = value
	case 'A':
		p.Arch = value
	case 'o':
		p.Origin = value
	case 'm':
		p.Maintainer = value
	case 'c':
		p.Commit = value
	case 'C':
		p.Checksum, err = DecodeChecksum(value)
	case 'S':
		p.Size, err = parseUint(value)
	case 'I':
		p.InstalledSize, err = parseUint(value)
	case 't':
		p.BuildTime, err = parseUint(value)
	case 'k':
		var n int64
		n, err = parseUint(value)
		p.ProviderPriority, p.HasProviderPriority = int(n), true
	case 'D':
		err = appendDeps(&p.Depends, value)
	case 'p':
		err = appendDeps(&p.Provides, value)
	case 'i':
		err = appendDeps(&p.InstallIf, value)
	default:
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%c: %w", key, err)
	}
	return true, nil
}

func appendDeps(list *[]Dependency, value string) error {
	deps, err := ParseDependencies(value)
	*list = append(*list, deps...)
	return err
}

func parseUint(s string) (int64, error) {
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%q is not a non-negative decimal number", truncate(s))
	}
	return int64(n), nil
}

// ParseIndex reads APKINDEX text (the APKINDEX file inside
// APKINDEX.tar.gz). See ReadIndex.
func ParseIndex(r io.Reader) ([]*Package, error) {
	var pkgs []*Package
	err := ReadIndex(r, "APKINDEX", func(p *Package) error {
		pkgs = append(pkgs, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pkgs, nil
}

// ReadIndex reads APKINDEX text and calls fn with each package in order,
// stopping at fn's first error. Fields are read by Package.SetField, plus
// r: (replaces) and q: (replaces_priority), which WriteIndexEntry writes
// for packages that have them and apk-tools skips in an index (it keeps
// them only for installed packages); other letters are ignored, as apk
// does. Every package
// must have P: and V: (apk rejects the whole index otherwise); one without
// C: parses, but cannot be verified or written. Errors say
// "apk: NAME: line N: ...".
func ReadIndex(r io.Reader, name string, fn func(*Package) error) error {
	sr := NewStanzaReader(r, name)
	for sr.NextStanza() {
		p := &Package{}
		first := sr.Field().Line
		for sr.Next() {
			f := sr.Field()
			known, err := p.SetField(f.Key, f.Value)
			if err == nil && !known {
				err = p.setReplaces(f.Key, f.Value)
			}
			if err != nil {
				return sr.Errorf(f.Line, "%w", err)
			}
		}
		if sr.Err() != nil {
			break
		}
		if err := p.checkNamed(); err != nil {
			return sr.Errorf(first, "%w", err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return sr.Err()
}

// setReplaces reads r: and q: lines.
func (p *Package) setReplaces(key byte, value string) error {
	switch key {
	case 'r':
		if err := appendDeps(&p.Replaces, value); err != nil {
			return fmt.Errorf("r: %w", err)
		}
	case 'q':
		n, err := parseUint(value)
		if err != nil || n > 1<<31-1 {
			return fmt.Errorf("q: %q is not a replaces priority", truncate(value))
		}
		p.ReplacesPriority = int(n)
	}
	return nil
}

func (p *Package) checkNamed() error {
	switch {
	case p.Name == "":
		return errors.New("package without a name (P:)")
	case p.Version == "":
		return fmt.Errorf("package %s without a version (V:)", p.Name)
	}
	return nil
}

// WriteIndexEntry writes p as apk-tools' apk_pkg_write_index_entry does
// (`apk index`): the lines of WriteIndexHeader, r: and q: when p replaces
// packages, and a blank line. Parsing an index apk wrote and writing its
// packages back gives the same bytes.
func WriteIndexEntry(w io.Writer, p *Package) error {
	b, err := p.appendIndexHeader(nil)
	if err != nil {
		return err
	}
	// r: and q: follow the header for packages that replace others, so the
	// index carries all of .PKGINFO; apk index never writes them and apk
	// skips them when reading an index, so they change nothing for apk.
	if len(p.Replaces) > 0 {
		b = append(b, "r:"+FormatDependencies(p.Replaces)+"\n"...)
	}
	if p.ReplacesPriority > 0 {
		b = append(b, "q:"+strconv.Itoa(p.ReplacesPriority)+"\n"...)
	}
	if err := checkLines(b); err != nil {
		return fmt.Errorf("apk: writing index entry: package %s: %w", p, err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteIndexHeader writes p's metadata lines in apk_pkg_write_index_header's
// order: C P V [A] S I T U L [o] [m] [t] [c] [k] [D] [p] [i], the bracketed
// ones only when set (t and k when not zero), T U L always (empty when
// unset). The installed database (apk/db) writes its own lines after these.
// p must have a name, a version and a checksum (apk cannot write a package
// without one either), and no value may contain a newline.
func WriteIndexHeader(w io.Writer, p *Package) error {
	b, err := p.appendIndexHeader(nil)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (p *Package) appendIndexHeader(b []byte) ([]byte, error) {
	if err := p.checkNamed(); err != nil {
		return nil, fmt.Errorf("apk: writing index entry: %w", err)
	}
	sum := EncodeChecksum(p.Checksum)
	if sum == "" {
		return nil, fmt.Errorf("apk: writing index entry: package %s: no SHA-1, SHA-256 or MD5 checksum (C:)", p)
	}
	field := func(key byte, v string) {
		b = append(b, key, ':')
		b = append(b, v...)
		b = append(b, '\n')
	}
	num := func(key byte, n int64) {
		b = append(b, key, ':')
		b = strconv.AppendInt(b, n, 10)
		b = append(b, '\n')
	}
	field('C', sum)
	field('P', p.Name)
	field('V', p.Version)
	if p.Arch != "" {
		field('A', p.Arch)
	}
	num('S', p.Size)
	num('I', p.InstalledSize)
	field('T', p.Description)
	field('U', p.URL)
	field('L', p.License)
	if p.Origin != "" {
		field('o', p.Origin)
	}
	if p.Maintainer != "" {
		field('m', p.Maintainer)
	}
	if p.BuildTime != 0 {
		num('t', p.BuildTime)
	}
	if p.Commit != "" {
		field('c', p.Commit)
	}
	if p.ProviderPriority != 0 {
		num('k', int64(p.ProviderPriority))
	}
	for _, l := range []struct {
		key  byte
		deps []Dependency
	}{{'D', p.Depends}, {'p', p.Provides}, {'i', p.InstallIf}} {
		if len(l.deps) > 0 {
			field(l.key, FormatDependencies(l.deps))
		}
	}
	if p.Size < 0 || p.InstalledSize < 0 || p.BuildTime < 0 || p.ProviderPriority < 0 {
		return nil, fmt.Errorf("apk: writing index entry: package %s: negative number", p)
	}
	if err := checkLines(b); err != nil {
		return nil, fmt.Errorf("apk: writing index entry: package %s: %w", p, err)
	}
	return b, nil
}

// checkLines verifies that every line of an entry is "X:value": a value
// with a newline would corrupt the stanza.
func checkLines(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 2 || b[1] != ':' {
			return fmt.Errorf("a value contains a newline: %q", truncate(string(b[:i+1])))
		}
		b = b[i+1:]
	}
	return nil
}

// EncodeChecksum gives a package checksum as apk writes it in C: lines,
// triggers and scripts.tar names (apk_blob_push_csum): Q1 and base64 for a
// SHA-1, Q2 and base64 for a SHA-256 (apk-tools 3's form), lower-case hex
// for an MD5 (very old packages); "" for any other length.
func EncodeChecksum(sum []byte) string {
	switch len(sum) {
	case 16:
		return hex.EncodeToString(sum)
	case 20:
		return "Q1" + base64.StdEncoding.EncodeToString(sum)
	case 32:
		return "Q2" + base64.StdEncoding.EncodeToString(sum)
	}
	return ""
}

// DecodeChecksum parses a checksum the way apk_blob_pull_csum does: Q1 and
// base64 or X1 and hex for a SHA-1, 32 hex digits for an MD5, and also Q2
// and base64 for a SHA-256. Unlike apk, which ignores what follows, it
// requires the text to be exactly one checksum.
func DecodeChecksum(s string) ([]byte, error) {
	var (
		b    []byte
		err  error
		want int
	)
	switch {
	case strings.HasPrefix(s, "Q1"):
		b, err = base64.StdEncoding.DecodeString(s[2:])
		want = 20
	case strings.HasPrefix(s, "Q2"):
		b, err = base64.StdEncoding.DecodeString(s[2:])
		want = 32
	case strings.HasPrefix(s, "X1"):
		b, err = hex.DecodeString(s[2:])
		want = 20
	case len(s) == 32:
		b, err = hex.DecodeString(s)
		want = 16
	default:
		return nil, fmt.Errorf("checksum %q: want Q1… (SHA-1), Q2… (SHA-256), X1… (hex SHA-1) or 32 hex digits (MD5)", truncate(s))
	}
	if err != nil || len(b) != want {
		return nil, fmt.Errorf("checksum %q: malformed", truncate(s))
	}
	return b, nil
}
