// Package db reads and writes the installed-package database of
// apk-tools 2.14 byte for byte as apk writes it (src/database.c):
//
//   - lib/apk/db/installed: one stanza per package, the APKINDEX fields of
//     apk_pkg_write_index_header followed by the installed-only entries
//     r: q: s: f: and the package's directories (F:, with M: when the
//     directory's owner or mode is not the default root:root 0755) and files
//     (R:, with a: when not root:root 0644, and Z: the content checksum);
//   - lib/apk/db/scripts.tar: the packages' install scripts, one tar entry
//     NAME-VERSION.Q1CHECKSUM.TYPE each;
//   - lib/apk/db/triggers: "Q1CHECKSUM /dir /dir…" for packages with
//     triggers.
//
// Installed carries everything the three files record about a package.
// apk writes the installed file with packages in SortInstalled's order and
// scripts.tar and triggers in installation order (ScriptsOf, TriggersOf).
package db

import (
	"bufio"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/version"
)

// Installed is one installed package as lib/apk/db/installed,
// scripts.tar and triggers record it.
type Installed struct {
	// Package is the package's metadata. Its Replaces and
	// ReplacesPriority are the r: and q: lines, its Triggers the package's
	// line in lib/apk/db/triggers (see TriggersOf, AttachTriggers).
	// Checksum must be a SHA-1 (Q1), the only package checksum apk 2.14
	// reads.
	Package apk.Package
	// RepositoryTag is the s: line: the repository tag (from NAME@TAG in
	// world) the package was installed from; empty for none.
	RepositoryTag string
	// BrokenFiles, BrokenScript and BrokenXattr are the f: line's f, s and
	// x: apk could not extract some file, a script failed, or extended
	// attributes could not be set.
	BrokenFiles, BrokenScript, BrokenXattr bool
	// Dirs are the directories the package owns with the files it owns in
	// each, in the package's order (the order of its data tar).
	Dirs []Dir
	// Scripts are the package's scripts by type (nil: none), kept in
	// scripts.tar (see ScriptsOf, AttachScripts).
	Scripts [NumScriptTypes][]byte
}

// Dir is a directory owned by an installed package: an F: line, its M:
// line and its files.
type Dir struct {
	// Name is the path relative to the root, without leading or trailing
	// slash ("etc/apk"); "" is the root directory.
	Name string
	// ACL is the directory's owner and mode (M:); nil means the default,
	// root:root 0755, which apk does not write.
	ACL   *ACL
	Files []File
}

// File is a file owned by an installed package: an R: line with its a:
// and Z: lines.
type File struct {
	// Name is the file's name within its Dir, without slashes.
	Name string
	// ACL is the file's owner and mode (a:); nil means the default,
	// root:root 0644, which apk does not write.
	ACL *ACL
	// Checksum is the Z: line: apk 2.14 records the SHA-1 of a regular
	// file's contents and of a symbolic link's target (apk audit reports a
	// symbolic link without one as changed); 16 bytes are an MD5 from old
	// databases. nil writes no Z: line.
	Checksum []byte
}

// ACL is an owner, mode and extended-attribute checksum as apk records
// them ("uid:gid:mode[:xattr-checksum]", mode in octal).
type ACL struct {
	UID, GID int
	// Mode holds the permission bits with setuid, setgid and sticky
	// (st_mode & 07777); other bits are ignored, as in apk.
	Mode uint32
	// XattrChecksum is the checksum of the extended attributes (see
	// XattrChecksum); nil when there are none.
	XattrChecksum []byte
}

// The ACLs apk does not write: directories root:root 0755 and files
// root:root 0644, without extended attributes.
var (
	DefaultDirACL  = ACL{Mode: 0o755}
	DefaultFileACL = ACL{Mode: 0o644}
)

func (a *ACL) equal(b *ACL) bool {
	return a.UID == b.UID && a.GID == b.GID && a.Mode&0o7777 == b.Mode&0o7777 &&
		string(a.XattrChecksum) == string(b.XattrChecksum)
}

func (a *ACL) isDefault(def *ACL) bool { return a == nil || a.equal(def) }

// String gives the ACL as apk writes it after "M:" or "a:".
func (a *ACL) String() string {
	s := strconv.Itoa(a.UID) + ":" + strconv.Itoa(a.GID) + ":" + strconv.FormatUint(uint64(a.Mode&0o7777), 8)
	if a.XattrChecksum != nil {
		c, err := encodeChecksum(a.XattrChecksum)
		if err != nil {
			c = "?"
		}
		s += ":" + c
	}
	return s
}

func (a *ACL) check() error {
	if a.UID < 0 || int64(a.UID) > math.MaxUint32 || a.GID < 0 || int64(a.GID) > math.MaxUint32 {
		return fmt.Errorf("owner %d:%d out of range", a.UID, a.GID)
	}
	if a.XattrChecksum != nil {
		if _, err := encodeChecksum(a.XattrChecksum); err != nil {
			return fmt.Errorf("xattr %w", err)
		}
	}
	return nil
}

func parseACL(s string) (*ACL, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 && len(parts) != 4 {
		return nil, fmt.Errorf("%q: want uid:gid:mode[:xattr-checksum]", short(s))
	}
	uid, err1 := strconv.ParseUint(parts[0], 10, 32)
	gid, err2 := strconv.ParseUint(parts[1], 10, 32)
	mode, err3 := strconv.ParseUint(parts[2], 8, 32)
	if err := errors.Join(err1, err2, err3); err != nil || !digits(parts[0]) || !digits(parts[1]) || !digits(parts[2]) {
		return nil, fmt.Errorf("%q: want uid:gid:mode[:xattr-checksum] (decimal owner, octal mode)", short(s))
	}
	a := &ACL{UID: int(uid), GID: int(gid), Mode: uint32(mode) & 0o7777}
	if len(parts) == 4 {
		if a.XattrChecksum, err1 = decodeChecksum(parts[3]); err1 != nil {
			return nil, fmt.Errorf("xattr %w", err1)
		}
	}
	return a, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// InstalledReader reads lib/apk/db/installed one package at a time.
// Errors name the line: "apk: installed: line N: …".
type InstalledReader struct {
	sr *apk.StanzaReader
}

// NewInstalledReader reads the installed database from r.
func NewInstalledReader(r io.Reader) *InstalledReader {
	return &InstalledReader{sr: apk.NewStanzaReader(r, "installed")}
}

// Next returns the next package, or io.EOF after the last one.
//
// It accepts what apk 2.14 accepts, with these differences: a field apk
// does not know is an error, as in apk (which refuses such a database as
// written by a newer apk); so are an M: before any F:, an R: before any
// F:, an a: or Z: not following an R: of the current directory (apk would
// apply it to an earlier file), a directory or file listed twice in one
// package (apk merges them), a malformed ACL or checksum (apk reads a
// prefix of it), a package without P:, V: or a SHA-1 C:, and file names
// with a slash or directory names with a leading or trailing slash.
func (r *InstalledReader) Next() (*Installed, error) {
	if !r.sr.NextStanza() {
		if err := r.sr.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return r.parseStanza()
}

// ReadInstalled reads a whole installed database.
func ReadInstalled(r io.Reader) ([]*Installed, error) {
	ir := NewInstalledReader(r)
	var pkgs []*Installed
	for {
		p, err := ir.Next()
		if err == io.EOF {
			return pkgs, nil
		}
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
}

func (r *InstalledReader) parseStanza() (*Installed, error) {
	in := &Installed{}
	di, fi := -1, -1
	var dirSeen, fileSeen map[string]bool
	first := r.sr.Field().Line
	for r.sr.Next() {
		f := r.sr.Field()
		fail := func(format string, args ...any) error {
			return r.sr.Errorf(f.Line, "%c: %s", f.Key, fmt.Sprintf(format, args...))
		}
		known, err := in.Package.SetField(f.Key, f.Value)
		if err != nil {
			return nil, r.sr.Errorf(f.Line, "%w", err)
		}
		if known {
			continue
		}
		switch f.Key {
		case 'r':
			deps, err := apk.ParseDependencies(f.Value)
			if err != nil {
				return nil, fail("%v", err)
			}
			in.Package.Replaces = append(in.Package.Replaces, deps...)
		case 'q':
			n, err := strconv.ParseUint(f.Value, 10, 31)
			if err != nil {
				return nil, fail("%q is not a non-negative decimal number", short(f.Value))
			}
			in.Package.ReplacesPriority = int(n)
		case 'F':
			if in.Package.Name == "" {
				return nil, fail("directory before the package name (P:)")
			}
			if err := checkDirName(f.Value); err != nil {
				return nil, fail("%v", err)
			}
			if dirSeen == nil {
				dirSeen = map[string]bool{}
			}
			if dirSeen[f.Value] {
				return nil, fail("directory %q listed twice", f.Value)
			}
			dirSeen[f.Value] = true
			fileSeen = map[string]bool{}
			in.Dirs = append(in.Dirs, Dir{Name: f.Value})
			di, fi = len(in.Dirs)-1, -1
		case 'M', 'a':
			if di < 0 {
				return nil, fail("permissions outside a directory (F:)")
			}
			if f.Key == 'a' && fi < 0 {
				return nil, fail("permissions outside a file (R:)")
			}
			acl, err := parseACL(f.Value)
			if err != nil {
				return nil, fail("%v", err)
			}
			if f.Key == 'M' {
				in.Dirs[di].ACL = acl
			} else {
				in.Dirs[di].Files[fi].ACL = acl
			}
		case 'R':
			if di < 0 {
				return nil, fail("file outside a directory (F:)")
			}
			if err := checkFileName(f.Value); err != nil {
				return nil, fail("%v", err)
			}
			if fileSeen[f.Value] {
				return nil, fail("file %q listed twice in %q", f.Value, in.Dirs[di].Name)
			}
			fileSeen[f.Value] = true
			d := &in.Dirs[di]
			d.Files = append(d.Files, File{Name: f.Value})
			fi = len(d.Files) - 1
		case 'Z':
			if fi < 0 {
				return nil, fail("checksum outside a file (R:)")
			}
			sum, err := decodeChecksum(f.Value)
			if err != nil {
				return nil, fail("%v", err)
			}
			in.Dirs[di].Files[fi].Checksum = sum
		case 's':
			in.RepositoryTag = f.Value
		case 'f':
			for i := 0; i < len(f.Value); i++ {
				switch f.Value[i] {
				case 'f':
					in.BrokenFiles = true
				case 's':
					in.BrokenScript = true
				case 'x':
					in.BrokenXattr = true
				default:
					return nil, fail("unknown flag %q", f.Value[i])
				}
			}
		default:
			return nil, r.sr.Errorf(f.Line, "unknown field %q (apk 2.14 refuses it too)", f.Key)
		}
	}
	if err := r.sr.Err(); err != nil {
		return nil, err
	}
	p := &in.Package
	switch {
	case p.Name == "":
		return nil, r.sr.Errorf(first, "package without a name (P:)")
	case p.Version == "":
		return nil, r.sr.Errorf(first, "package %s without a version (V:)", p.Name)
	case len(p.Checksum) != sha1.Size:
		return nil, r.sr.Errorf(first, "package %s: want a SHA-1 checksum (C:Q1…), the only kind apk 2.14 reads", p)
	}
	return in, nil
}

func checkDirName(s string) error {
	if strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") {
		return fmt.Errorf("directory %q: want a relative path without leading, trailing or double slashes", short(s))
	}
	return nil
}

func checkFileName(s string) error {
	if s == "" || strings.Contains(s, "/") {
		return fmt.Errorf("file name %q: want a non-empty name without slashes", short(s))
	}
	return nil
}

// WriteInstalled writes pkgs as lib/apk/db/installed, in the order given:
// apk writes packages sorted as SortInstalled sorts them.
func WriteInstalled(w io.Writer, pkgs []*Installed) error {
	bw := bufio.NewWriter(w)
	var carry string
	for _, p := range pkgs {
		var err error
		if carry, err = writeEntry(bw, p, carry); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("installed: %w", err)
	}
	return nil
}

// WriteInstalledEntry writes one package's stanza of lib/apk/db/installed,
// with the blank line that ends it, as apk_db_write_fdb does for a
// package written first.
func WriteInstalledEntry(w io.Writer, in *Installed) error {
	_, err := writeEntry(w, in, "")
	return err
}

// writeEntry writes one stanza as apk_db_write_fdb does, quirk included:
// apk gathers a package's r:, q:, s: and f: lines in a buffer that it
// writes out only with the package's first F: line. A package that owns
// no directory (a meta package) leaves them in the buffer, and they come
// out after the next package's index header, as its own; after the last
// package they are lost. carry is what the previous package left; the
// result is what this one leaves.
func writeEntry(w io.Writer, in *Installed, carry string) (string, error) {
	if err := in.check(); err != nil {
		return "", fmt.Errorf("installed: %s: %w", &in.Package, err)
	}
	var b strings.Builder
	if err := apk.WriteIndexHeader(&b, &in.Package); err != nil {
		return "", err
	}
	var pending strings.Builder
	pending.WriteString(carry)
	if len(in.Package.Replaces) > 0 {
		pending.WriteString("r:" + apk.FormatDependencies(in.Package.Replaces) + "\n")
	}
	if in.Package.ReplacesPriority != 0 {
		pending.WriteString("q:" + strconv.Itoa(in.Package.ReplacesPriority) + "\n")
	}
	if in.RepositoryTag != "" {
		pending.WriteString("s:" + in.RepositoryTag + "\n")
	}
	if in.BrokenFiles || in.BrokenScript || in.BrokenXattr {
		pending.WriteString("f:")
		for _, f := range []struct {
			set bool
			c   byte
		}{{in.BrokenFiles, 'f'}, {in.BrokenScript, 's'}, {in.BrokenXattr, 'x'}} {
			if f.set {
				pending.WriteByte(f.c)
			}
		}
		pending.WriteByte('\n')
	}
	if len(in.Dirs) > 0 {
		b.WriteString(pending.String())
		pending.Reset()
	}
	for i := range in.Dirs {
		d := &in.Dirs[i]
		b.WriteString("F:" + d.Name + "\n")
		if !d.ACL.isDefault(&DefaultDirACL) {
			b.WriteString("M:" + d.ACL.String() + "\n")
		}
		for j := range d.Files {
			f := &d.Files[j]
			b.WriteString("R:" + f.Name + "\n")
			if !f.ACL.isDefault(&DefaultFileACL) {
				b.WriteString("a:" + f.ACL.String() + "\n")
			}
			if f.Checksum != nil {
				c, _ := encodeChecksum(f.Checksum) // checked
				b.WriteString("Z:" + c + "\n")
			}
		}
		// Flush per directory: a package may own many files.
		if b.Len() > 32<<10 {
			if _, err := io.WriteString(w, b.String()); err != nil {
				return "", fmt.Errorf("installed: %w", err)
			}
			b.Reset()
		}
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(w, b.String()); err != nil {
		return "", fmt.Errorf("installed: %w", err)
	}
	return pending.String(), nil
}

// check refuses what apk could not read back or what would change meaning.
func (in *Installed) check() error {
	p := &in.Package
	if p.Name == "" || p.Version == "" {
		return errors.New("package without name or version")
	}
	if len(p.Checksum) != sha1.Size {
		return errors.New("package checksum must be SHA-1 (20 bytes), the only kind apk 2.14 reads")
	}
	texts := []string{p.Name, p.Version, p.Arch, p.Description, p.URL, p.License, p.Origin, p.Maintainer, p.Commit, in.RepositoryTag}
	for _, deps := range [][]apk.Dependency{p.Depends, p.Provides, p.InstallIf, p.Replaces} {
		for _, d := range deps {
			texts = append(texts, d.Name, d.Version, d.Tag)
		}
	}
	for _, s := range texts {
		if strings.ContainsAny(s, "\n") {
			return fmt.Errorf("field %q has a newline", short(s))
		}
	}
	if p.Size < 0 || p.InstalledSize < 0 || p.BuildTime < 0 || p.ProviderPriority < 0 || p.ReplacesPriority < 0 {
		return errors.New("negative size, build time or priority")
	}
	seen := make(map[string]bool, len(in.Dirs))
	for i := range in.Dirs {
		d := &in.Dirs[i]
		if err := checkDirName(d.Name); err != nil {
			return err
		}
		if strings.Contains(d.Name, "\n") {
			return fmt.Errorf("directory %q has a newline", short(d.Name))
		}
		if seen[d.Name] {
			return fmt.Errorf("directory %q listed twice", d.Name)
		}
		seen[d.Name] = true
		if d.ACL != nil {
			if err := d.ACL.check(); err != nil {
				return fmt.Errorf("directory %q: %w", d.Name, err)
			}
		}
		files := make(map[string]bool, len(d.Files))
		for j := range d.Files {
			f := &d.Files[j]
			if err := checkFileName(f.Name); err != nil {
				return fmt.Errorf("in %q: %w", d.Name, err)
			}
			if strings.Contains(f.Name, "\n") {
				return fmt.Errorf("file %q has a newline", short(f.Name))
			}
			if files[f.Name] {
				return fmt.Errorf("file %q listed twice in %q", f.Name, d.Name)
			}
			files[f.Name] = true
			if f.ACL != nil {
				if err := f.ACL.check(); err != nil {
					return fmt.Errorf("file %q in %q: %w", f.Name, d.Name, err)
				}
			}
			if f.Checksum != nil {
				if _, err := encodeChecksum(f.Checksum); err != nil {
					return fmt.Errorf("file %q in %q: %w", f.Name, d.Name, err)
				}
			}
		}
	}
	return nil
}

// ComparePackages orders packages as apk_pkg_cmp_display: by name
// case-insensitively (ASCII, as strcasecmp), then byte-wise, then by
// version. It returns -1, 0 or 1.
func ComparePackages(a, b *apk.Package) int {
	if a.Name != b.Name {
		return apk.CompareNames(a.Name, b.Name)
	}
	switch version.Compare(a.Version, b.Version) {
	case version.Less:
		return -1
	case version.Greater:
		return 1
	}
	return 0
}

// SortInstalled sorts pkgs into the order apk writes lib/apk/db/installed
// in (apk_db_sorted_installed_packages, which sorts with
// apk_pkg_cmp_display; see ComparePackages).
func SortInstalled(pkgs []*Installed) {
	sort.SliceStable(pkgs, func(i, j int) bool { return ComparePackages(&pkgs[i].Package, &pkgs[j].Package) < 0 })
}
