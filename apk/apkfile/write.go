// Package apkfile reads and writes APK v2 package files (.apk) as abuild
// makes them and apk-tools 2.x installs them: three gzip members, the
// signature (see package sign), the control part (.PKGINFO and the
// install scripts, a tar without its end-of-archive) and the data part
// (the files, a PAX tar whose entries carry APK-TOOLS.checksum.SHA1, with
// its end-of-archive). .PKGINFO's datahash is the SHA-256 of the data
// member, the signature covers the control member, and the package's
// identity (APKINDEX "C:Q1…") is the SHA-1 of the control member.
package apkfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/counting"

	"github.com/alpinist/alpinist/internal/atomicfile"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/sign"
)

// Entry types of a package's data, as tar type flags.
const (
	TypeReg     = tar.TypeReg
	TypeDir     = tar.TypeDir
	TypeSymlink = tar.TypeSymlink
	TypeLink    = tar.TypeLink // hard link to an earlier regular file
	TypeChar    = tar.TypeChar
	TypeBlock   = tar.TypeBlock
	TypeFifo    = tar.TypeFifo
)

// Entry is one file, directory, link or device node of a package.
type Entry struct {
	// Path is relative to the root and slash-separated: "usr/bin/foo".
	Path string
	Type byte
	// Mode holds the permission bits with setuid 04000, setgid 02000 and
	// sticky 01000, as in a tar header.
	Mode         int64
	UID, GID     int
	Uname, Gname string // optional; uid/gid 0 default to "root"
	// Linkname is a symlink's text or a hard link's target path.
	Linkname           string
	Devmajor, Devminor int64
	// Xattrs are extended attributes ("security.capability", "user.x").
	Xattrs map[string]string
	// Size and Open give a regular file's content. Open is called twice
	// (to checksum, then to write), so content is streamed, never held.
	Size int64
	Open func() (io.ReadCloser, error)
}

// ScriptNames are the install scripts of an APK v2 package, in the order
// they are written to the control part.
var ScriptNames = []string{"pre-install", "post-install", "pre-upgrade", "post-upgrade", "pre-deinstall", "post-deinstall", "trigger"}

// WriteOptions control Write.
type WriteOptions struct {
	// Key signs the package (required).
	Key *sign.Key
	// Alg is the signature type; the zero value is RSA (SHA-1), what
	// abuild-sign makes by default.
	Alg sign.Algorithm
	// TempDir holds the data part while the package is written (the
	// system default when empty): the data comes last in the file but its
	// hash goes in .PKGINFO, so it is compressed first.
	TempDir string
}

// Write writes a signed package of meta's metadata, the scripts (by name,
// see ScriptNames) and entries to w. Every time in the file is
// meta.BuildTime, owners are the entries', and the entries are written in
// path order, so the same input gives the same bytes. It returns meta
// with InstalledSize (computed from the entries as abuild does), DataHash,
// Checksum and Size filled in.
func Write(w io.Writer, meta *apk.Package, scripts map[string][]byte, entries []Entry, opts WriteOptions) (*apk.Package, error) {
	if opts.Key == nil {
		return nil, fmt.Errorf("apkfile: %s: no signing key", meta)
	}
	m := *meta
	if err := checkMeta(&m, scripts); err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	ents, isize, err := checkEntries(entries)
	if err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	if isize == 0 && (len(ents) > 0 || len(scripts) > 0) {
		// apk-tools 2 takes a package of size 0 for virtual and neither
		// extracts it nor runs its scripts; abuild says 1 instead.
		isize = 1
	}
	m.InstalledSize = isize
	mtime := time.Unix(m.BuildTime, 0).UTC()

	tmp, err := os.CreateTemp(opts.TempDir, "alpinist-apk-data-*")
	if err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	dataHash := sha256.New()
	if err := writeData(io.MultiWriter(tmp, dataHash), ents, mtime); err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	m.DataHash = hex.EncodeToString(dataHash.Sum(nil))

	control, err := controlMember(&m, scripts, mtime)
	if err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	id := sha1.Sum(control)
	m.Checksum = id[:]
	sigHash := opts.Alg.NewHash()
	sigHash.Write(control)

	cw := &counting.Writer{W: w}
	if err := opts.Key.WriteSignature(cw, opts.Alg, sigHash.Sum(nil), mtime); err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	if _, err := cw.Write(control); err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	if _, err := io.Copy(cw, tmp); err != nil {
		return nil, fmt.Errorf("apkfile: %s: %w", meta, err)
	}
	m.Size = cw.N
	return &m, nil
}

// WriteFile writes the package to OUTDIR/NAME-VERSION.apk through a
// temporary file in OUTDIR and a rename, so a failure leaves nothing
// behind, and returns the metadata and the path.
func WriteFile(outDir string, meta *apk.Package, scripts map[string][]byte, entries []Entry, opts WriteOptions) (*apk.Package, string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, "", fmt.Errorf("apkfile: %w", err)
	}
	dst := filepath.Join(outDir, meta.Filename())
	if opts.TempDir == "" {
		opts.TempDir = outDir
	}
	var m *apk.Package
	err := atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		var err error
		m, err = Write(w, meta, scripts, entries, opts)
		return err
	})
	if err != nil {
		if m == nil {
			return nil, "", err // Write's own errors name the package
		}
		return nil, "", fmt.Errorf("apkfile: %s: %w", dst, err)
	}
	return m, dst, nil
}

func checkMeta(m *apk.Package, scripts map[string][]byte) error {
	if m.Name == "" || m.Version == "" || m.Arch == "" {
		return errors.New("name, version and arch are required")
	}
	if strings.ContainsAny(m.Name, " /\t\n") {
		return fmt.Errorf("bad package name %q", m.Name)
	}
	for name := range scripts {
		if !slices.Contains(ScriptNames, name) {
			return fmt.Errorf("unknown script %q (want one of %s)", name, strings.Join(ScriptNames, ", "))
		}
	}
	_, hasTrigger := scripts["trigger"]
	if hasTrigger != (len(m.Triggers) > 0) {
		return errors.New("a trigger script needs trigger directories and trigger directories need a trigger script")
	}
	for _, t := range m.Triggers {
		if !strings.HasPrefix(t, "/") || strings.ContainsAny(t, " \t\n") {
			return fmt.Errorf("trigger %q is not an absolute path pattern", t)
		}
	}
	return nil
}

// CleanPath checks that p names a path inside a package root and returns
// it without leading "./" or "/" and trailing "/". "..", empty
// components other than a trailing slash, and NUL bytes are rejected.
func CleanPath(p string) (string, error) {
	q := strings.TrimPrefix(p, "./")
	q = strings.TrimSuffix(q, "/")
	if q == "" || q == "." || strings.HasPrefix(q, "/") || strings.Contains(q, "\x00") {
		return "", fmt.Errorf("bad path %q", p)
	}
	if path.Clean(q) != q {
		return "", fmt.Errorf("path %q is not clean", p)
	}
	for c := range strings.SplitSeq(q, "/") {
		if c == ".." {
			return "", fmt.Errorf("path %q leaves the root", p)
		}
	}
	return q, nil
}

// checkEntries validates and sorts entries and computes the installed
// size: regular files' sizes, hard links counted once.
func checkEntries(entries []Entry) ([]Entry, int64, error) {
	ents := slices.Clone(entries)
	for i := range ents {
		p, err := CleanPath(ents[i].Path)
		if err != nil {
			return nil, 0, err
		}
		ents[i].Path = p
	}
	slices.SortFunc(ents, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	types := map[string]byte{}
	var size int64
	for i, e := range ents {
		if i > 0 && ents[i-1].Path == e.Path {
			return nil, 0, fmt.Errorf("%s: given twice", e.Path)
		}
		if e.Mode&^0o7777 != 0 || e.Mode < 0 {
			return nil, 0, fmt.Errorf("%s: mode %o has bits other than permissions", e.Path, e.Mode)
		}
		if e.UID < 0 || e.GID < 0 {
			return nil, 0, fmt.Errorf("%s: negative owner", e.Path)
		}
		switch e.Type {
		case TypeReg:
			if e.Open == nil || e.Size < 0 {
				return nil, 0, fmt.Errorf("%s: regular file without content", e.Path)
			}
			size += e.Size
		case TypeDir, TypeChar, TypeBlock, TypeFifo:
		case TypeSymlink:
			if e.Linkname == "" || strings.Contains(e.Linkname, "\x00") {
				return nil, 0, fmt.Errorf("%s: symlink without a target", e.Path)
			}
		case TypeLink:
			t, err := CleanPath(e.Linkname)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: hard link: %w", e.Path, err)
			}
			if types[t] != TypeReg {
				return nil, 0, fmt.Errorf("%s: hard link to %s, which is not a regular file earlier in the package", e.Path, t)
			}
			ents[i].Linkname = t
		default:
			return nil, 0, fmt.Errorf("%s: unsupported entry type %q", e.Path, e.Type)
		}
		types[e.Path] = e.Type
		if d := path.Dir(e.Path); d != "." && types[d] != 0 && types[d] != TypeDir {
			return nil, 0, fmt.Errorf("%s: parent %s is not a directory", e.Path, d)
		}
	}
	return ents, size, nil
}

func header(e *Entry, mtime time.Time) *tar.Header {
	h := &tar.Header{
		Typeflag: e.Type,
		Name:     e.Path,
		Linkname: e.Linkname,
		Mode:     e.Mode,
		Uid:      e.UID,
		Gid:      e.GID,
		Uname:    e.Uname,
		Gname:    e.Gname,
		ModTime:  mtime,
		Devmajor: e.Devmajor,
		Devminor: e.Devminor,
		Format:   tar.FormatPAX,
	}
	if e.Type == TypeDir {
		h.Name += "/"
	}
	if e.Type == TypeReg {
		h.Size = e.Size
	}
	if h.Uname == "" && e.UID == 0 {
		h.Uname = "root"
	}
	if h.Gname == "" && e.GID == 0 {
		h.Gname = "root"
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		for k, v := range e.Xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return h
}

// writeData writes the data member: a PAX tar with each regular file's
// and symlink's SHA-1 in an APK-TOOLS.checksum.SHA1 record (as
// abuild-tar --hash adds them), ending with the end-of-archive.
func writeData(w io.Writer, ents []Entry, mtime time.Time) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	buf := make([]byte, 64<<10)
	for i := range ents {
		e := &ents[i]
		h := header(e, mtime)
		var sum []byte
		switch e.Type {
		case TypeReg:
			sum, err = fileSHA1(e, buf)
			if err != nil {
				return err
			}
		case TypeSymlink:
			s := sha1.Sum([]byte(e.Linkname))
			sum = s[:]
		}
		if sum != nil {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["APK-TOOLS.checksum.SHA1"] = hex.EncodeToString(sum)
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if e.Type == TypeReg {
			if err := copyFile(tw, e, buf); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func fileSHA1(e *Entry, buf []byte) ([]byte, error) {
	rc, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	defer rc.Close()
	h := sha1.New()
	n, err := io.CopyBuffer(h, rc, buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	if n != e.Size {
		return nil, fmt.Errorf("%s: content is %d bytes, expected %d", e.Path, n, e.Size)
	}
	return h.Sum(nil), nil
}

func copyFile(w io.Writer, e *Entry, buf []byte) error {
	rc, err := e.Open()
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	defer rc.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(rc, e.Size+1), buf)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if n != e.Size {
		return fmt.Errorf("%s: content changed while writing (%d bytes, expected %d)", e.Path, n, e.Size)
	}
	return nil
}

// controlMember is the compressed control part: .PKGINFO (0644) and the
// scripts (0755, named ".pre-install" etc.), root-owned, without the tar
// end-of-archive.
func controlMember(m *apk.Package, scripts map[string][]byte, mtime time.Time) ([]byte, error) {
	info, err := FormatPKGINFO(m)
	if err != nil {
		return nil, err
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	add := func(name string, mode int64, data []byte) error {
		h := &tar.Header{
			Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)),
			ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(".PKGINFO", 0o644, info); err != nil {
		return nil, err
	}
	for _, s := range ScriptNames {
		if data, ok := scripts[s]; ok {
			if err := add("."+s, 0o755, data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Flush(); err != nil { // no Close: the data part follows
		return nil, err
	}
	var zb bytes.Buffer
	if err := sign.GzipMember(&zb, tb.Bytes()); err != nil {
		return nil, err
	}
	return zb.Bytes(), nil
}
