package apk

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Field is one "X:value" line of an APKINDEX or installed-database stanza.
type Field struct {
	Key   byte
	Value string
	Line  int
}

// MaxLineLength bounds one line of an index or database.
const MaxLineLength = 1 << 20

// StanzaScanner reads blank-line separated stanzas of "X:value" lines, the
// text format shared by APKINDEX and lib/apk/db/installed.
type StanzaScanner struct {
	sc     *bufio.Scanner
	name   string
	line   int
	fields []Field
	err    error
}

// NewStanzaScanner reads stanzas from r; name is used in errors.
func NewStanzaScanner(r io.Reader, name string) *StanzaScanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineLength)
	return &StanzaScanner{sc: sc, name: name}
}

// Scan advances to the next stanza; it returns false at the end or on
// error (see Err).
func (s *StanzaScanner) Scan() bool {
	s.fields = s.fields[:0]
	for s.sc.Scan() {
		s.line++
		l := s.sc.Text()
		if len(l) < 2 {
			if len(s.fields) > 0 {
				return true
			}
			continue
		}
		if l[1] != ':' {
			s.err = fmt.Errorf("%s:%d: expected \"X:value\", got %q", s.name, s.line, truncate(l))
			return false
		}
		s.fields = append(s.fields, Field{Key: l[0], Value: l[2:], Line: s.line})
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", MaxLineLength)
		}
		s.err = fmt.Errorf("%s:%d: %w", s.name, s.line+1, err)
		return false
	}
	return len(s.fields) > 0
}

// Fields are the current stanza's lines, valid until the next Scan.
func (s *StanzaScanner) Fields() []Field { return s.fields }

// Err is the first error met.
func (s *StanzaScanner) Err() error { return s.err }

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// SetField applies one index field to p. It reports false for letters that
// are not package metadata (installed-database entries, unknown fields),
// which callers handle or ignore as apk does.
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
	case 'q':
		var n int64
		n, err = parseUint(value)
		p.ReplacesPriority = int(n)
	// Repeated dependency lines add to the list, as in apk.
	case 'D':
		err = appendDeps(&p.Depends, value)
	case 'p':
		err = appendDeps(&p.Provides, value)
	case 'i':
		err = appendDeps(&p.InstallIf, value)
	case 'r':
		err = appendDeps(&p.Replaces, value)
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
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative number", s)
	}
	return n, nil
}

// ParseIndex reads APKINDEX text (the APKINDEX file inside
// APKINDEX.tar.gz). Fields apk ignores are ignored; every package must
// have a name and a version. (A package without a checksum parses, as in
// apk; fetching it fails, since it cannot be verified.) Errors say "APKINDEX:LINE".
func ParseIndex(r io.Reader) ([]*Package, error) {
	return ParseIndexNamed(r, "APKINDEX")
}

// ParseIndexNamed is ParseIndex with name used in errors.
func ParseIndexNamed(r io.Reader, name string) ([]*Package, error) {
	var pkgs []*Package
	s := NewStanzaScanner(r, name)
	for s.Scan() {
		p := &Package{}
		for _, f := range s.Fields() {
			if _, err := p.SetField(f.Key, f.Value); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, f.Line, err)
			}
		}
		if err := p.checkIndexed(); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, s.Fields()[0].Line, err)
		}
		pkgs = append(pkgs, p)
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return pkgs, nil
}

func (p *Package) checkIndexed() error {
	switch {
	case p.Name == "":
		return errors.New("package without a name (P:)")
	case p.Version == "":
		return fmt.Errorf("package %s without a version (V:)", p.Name)
	}
	return nil
}

// WriteIndexEntry writes p as apk-tools' `apk index` does (the fields and
// their order of apk_pkg_write_index_entry), then r: and q: when set
// (apk 2.14 ignores them in indexes; they keep replaces information), and
// the blank line that ends the stanza.
func WriteIndexEntry(w io.Writer, p *Package) error {
	var b strings.Builder
	p.writeHeader(&b)
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHeader writes the metadata lines shared by APKINDEX and the
// installed database.
func (p *Package) writeHeader(b *strings.Builder) {
	fmt.Fprintf(b, "C:%s\nP:%s\nV:%s\n", EncodeChecksum(p.Checksum), p.Name, p.Version)
	if p.Arch != "" {
		fmt.Fprintf(b, "A:%s\n", p.Arch)
	}
	fmt.Fprintf(b, "S:%d\nI:%d\nT:%s\nU:%s\nL:%s\n", p.Size, p.InstalledSize, p.Description, p.URL, p.License)
	if p.Origin != "" {
		fmt.Fprintf(b, "o:%s\n", p.Origin)
	}
	if p.Maintainer != "" {
		fmt.Fprintf(b, "m:%s\n", p.Maintainer)
	}
	if p.BuildTime != 0 {
		fmt.Fprintf(b, "t:%d\n", p.BuildTime)
	}
	if p.Commit != "" {
		fmt.Fprintf(b, "c:%s\n", p.Commit)
	}
	if p.ProviderPriority != 0 {
		fmt.Fprintf(b, "k:%d\n", p.ProviderPriority)
	}
	for _, l := range []struct {
		key  string
		deps []Dependency
	}{{"D:", p.Depends}, {"p:", p.Provides}, {"i:", p.InstallIf}, {"r:", p.Replaces}} {
		if len(l.deps) > 0 {
			b.WriteString(l.key + joinDeps(l.deps) + "\n")
		}
	}
	if p.ReplacesPriority != 0 {
		fmt.Fprintf(b, "q:%d\n", p.ReplacesPriority)
	}
}

// WriteIndexHeader writes p's metadata lines without the terminating blank
// line, for the installed database, which adds its own entries after r:
// and q: (apk_db_write_fdb writes them in the same place).
func WriteIndexHeader(w io.Writer, p *Package) error {
	var b strings.Builder
	p.writeHeader(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// EncodeChecksum gives the APKINDEX form of a checksum: Q1 + base64 for
// SHA-1, Q2 + base64 for SHA-256; "" for anything else.
func EncodeChecksum(sum []byte) string {
	switch len(sum) {
	case 20:
		return "Q1" + base64.StdEncoding.EncodeToString(sum)
	case 32:
		return "Q2" + base64.StdEncoding.EncodeToString(sum)
	}
	return ""
}

// DecodeChecksum parses a Q1 (SHA-1) or Q2 (SHA-256) checksum.
func DecodeChecksum(s string) ([]byte, error) {
	want := 0
	switch {
	case strings.HasPrefix(s, "Q1"):
		want = 20
	case strings.HasPrefix(s, "Q2"):
		want = 32
	default:
		return nil, fmt.Errorf("checksum %q: want Q1… (SHA-1) or Q2… (SHA-256)", truncate(s))
	}
	b, err := base64.StdEncoding.DecodeString(s[2:])
	if err != nil || len(b) != want {
		return nil, fmt.Errorf("checksum %q: malformed", truncate(s))
	}
	return b, nil
}
