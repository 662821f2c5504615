package apkfile

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/gzmember"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/internal/tarread"
)

// Package is what Read found in a package file.
type Package struct {
	// Info is the .PKGINFO metadata with Checksum (SHA-1 of the control
	// member, the APKINDEX C: value) and Size (bytes read) filled in.
	Info *apk.Package
	// Scripts maps a script name ("post-install", "trigger", ...) to its text.
	Scripts map[string][]byte
	// Signatures are all signature entries; Signer is the one that was
	// verified (nil when ReadAllowUntrusted let an unverified package
	// through).
	Signatures []sign.Signature
	Signer     *sign.Signature
	// Files is the number of data entries.
	Files int
	// ControlTar is the decompressed control part (a tar of .PKGINFO
	// and the scripts), as ReadPrepared takes it.
	ControlTar []byte
}

// ReadOptions control Read.
type ReadOptions struct {
	// Keys are the trusted keys. A package without a signature by one of
	// them is an error unless AllowUntrusted is set (which still checks
	// every hash, and still rejects a signature that does not match).
	Keys           *sign.Keyring
	AllowUntrusted bool
	// Entry, when set, is called for every data entry in order with its
	// header (Name cleaned, see CleanPath; directories without the
	// trailing slash) and, for regular files, a reader of its content.
	// The file's APK-TOOLS.checksum.SHA1 is checked after Entry returns,
	// and the data hash at the end: an error from Read means what Entry
	// saw must not be used.
	Entry func(h *tar.Header, r io.Reader) error
	// Control, when set, is called once the control part is read (and,
	// for packages with a datahash, its signature verified), before the
	// first data entry: an installer runs .pre-install here. Info.Size
	// is not known yet.
	Control func(p *Package) error
	// MaxDataSize caps the uncompressed data further (0: only the cap
	// from .PKGINFO's size); a package inflating beyond its cap is
	// rejected as a decompression bomb.
	MaxDataSize int64
	// DataTar, when set, receives the decompressed data part (the data
	// tar, end-of-archive included) as it is read: with ControlTar, what
	// ReadPrepared takes. What it received is verified only once Read
	// returns without error.
	DataTar io.Writer
}

// Errors Read wraps, to tell failures apart.
var (
	ErrFormat   = errors.New("not a valid APK v2 package")
	ErrChecksum = errors.New("checksum mismatch")
)

// Read reads and verifies a package from r: the signature over the
// control member, .PKGINFO and the scripts, the data member's SHA-256
// against .PKGINFO's datahash, and every file's SHA-1 against its
// APK-TOOLS.checksum.SHA1 record. Errors name the package once .PKGINFO
// has been read.
func Read(r io.Reader, opts ReadOptions) (*Package, error) {
	pr := &reader{opts: opts, gz: gzmember.NewReader(r), pkg: &Package{Scripts: map[string][]byte{}}}
	err := pr.read()
	if err != nil {
		if pr.pkg.Info != nil {
			return nil, fmt.Errorf("%s: %w", pr.pkg.Info, err)
		}
		return nil, err
	}
	return pr.pkg, nil
}

// Verify reads a whole package, checking its signature against keys and
// all its hashes, and returns its metadata.
func Verify(r io.Reader, keys *sign.Keyring) (*apk.Package, error) {
	p, err := Read(r, ReadOptions{Keys: keys})
	if err != nil {
		return nil, err
	}
	return p.Info, nil
}

type reader struct {
	opts ReadOptions
	gz   *gzmember.Reader
	pkg  *Package
}

// digests hashes a member with each signature algorithm and SHA-1.
type digests struct {
	id  hash.Hash // SHA-1: the package identity
	sig map[sign.Algorithm]hash.Hash
}

func newDigests(sigs []sign.Signature) *digests {
	d := &digests{id: sha1.New(), sig: map[sign.Algorithm]hash.Hash{}}
	for _, s := range sigs {
		if d.sig[s.Alg] == nil {
			d.sig[s.Alg] = s.Alg.NewHash()
		}
	}
	return d
}

func (d *digests) writers() []io.Writer {
	w := []io.Writer{d.id}
	for _, a := range []sign.Algorithm{sign.RSA, sign.RSA256, sign.RSA512} {
		if h := d.sig[a]; h != nil {
			w = append(w, h)
		}
	}
	return w
}

func (d *digests) sum(a sign.Algorithm) []byte {
	if h := d.sig[a]; h != nil {
		return h.Sum(nil)
	}
	return nil
}

func (pr *reader) read() error {
	// The first member holds the signatures, unless the package is
	// unsigned and it is already the control part.
	firstID := sha1.New()
	first, err := pr.gz.Next(firstID)
	if err == io.EOF {
		return fmt.Errorf("%w: empty file", ErrFormat)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	buf, err := readAllMax(first, 1<<20, "signature or control part")
	if err != nil {
		return err
	}
	var control []byte
	d := &digests{id: sha1.New(), sig: map[sign.Algorithm]hash.Hash{}}
	if isSignaturePart(buf) {
		sigs, err := ParseSignatures(buf)
		if err != nil {
			return err
		}
		pr.pkg.Signatures = sigs
		d = newDigests(sigs)
		cm, err := pr.gz.Next(d.writers()...)
		if err == io.EOF {
			return fmt.Errorf("%w: no control part after the signature", ErrFormat)
		}
		if err != nil {
			return fmt.Errorf("%w: control part: %v", ErrFormat, err)
		}
		if control, err = readAllMax(cm, 16<<20, "control part"); err != nil {
			return err
		}
		pr.pkg.ControlTar = control
	} else {
		return pr.unsigned(buf, firstID.Sum(nil))
	}
	if err := pr.parseControl(control); err != nil {
		return err
	}
	info := pr.pkg.Info
	info.Checksum = d.id.Sum(nil)
	hasDataHash := info.DataHash != ""
	if hasDataHash {
		if err := pr.checkSignature(d); err != nil {
			return err
		}
		if err := pr.control(); err != nil {
			return err
		}
		dh := sha256.New()
		if err := pr.readData(dh); err != nil {
			return err
		}
		if got := hex.EncodeToString(dh.Sum(nil)); got != info.DataHash {
			return fmt.Errorf("%w: data part has sha256 %s, .PKGINFO says %s: the package was modified", ErrChecksum, got, info.DataHash)
		}
	} else {
		// Old packages: the signature and identity cover control and data.
		if err := pr.control(); err != nil {
			return err
		}
		if err := pr.readData(d.writers()...); err != nil {
			return err
		}
		info.Checksum = d.id.Sum(nil)
		if err := pr.checkSignature(d); err != nil {
			return err
		}
	}
	info.Size = pr.gz.Offset()
	return nil
}

// unsigned handles a package whose first member is the control part; it
// is only read with AllowUntrusted.
func (pr *reader) unsigned(control, id []byte) error {
	pr.pkg.ControlTar = control
	if err := pr.parseControl(control); err != nil {
		return err
	}
	pr.pkg.Info.Checksum = id
	if err := pr.control(); err != nil {
		return err
	}
	if !pr.opts.AllowUntrusted {
		return fmt.Errorf("%w: not signed", sign.ErrUntrusted)
	}
	dh := sha256.New()
	if err := pr.readData(dh); err != nil {
		return err
	}
	if pr.pkg.Info.DataHash != "" {
		if got := hex.EncodeToString(dh.Sum(nil)); got != pr.pkg.Info.DataHash {
			return fmt.Errorf("%w: data part has sha256 %s, .PKGINFO says %s", ErrChecksum, got, pr.pkg.Info.DataHash)
		}
	}
	pr.pkg.Info.Size = pr.gz.Offset()
	return nil
}

func (pr *reader) control() error {
	if pr.opts.Control == nil {
		return nil
	}
	return pr.opts.Control(pr.pkg)
}

func (pr *reader) checkSignature(d *digests) error {
	s, err := pr.opts.Keys.Check(pr.pkg.Signatures, d.sum)
	if err != nil {
		if errors.Is(err, sign.ErrUntrusted) && pr.opts.AllowUntrusted {
			return nil
		}
		return err
	}
	pr.pkg.Signer = s
	return nil
}

func readAllMax(r io.Reader, max int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, what, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrFormat, what, max)
	}
	return b, nil
}

// isSignaturePart tells whether a decompressed first member is a tar
// whose first entry is a signature.
func isSignaturePart(b []byte) bool {
	h, err := tar.NewReader(bytes.NewReader(b)).Next()
	return err == nil && strings.HasPrefix(h.Name, ".SIGN.")
}

// ParseSignatures reads the decompressed signature part: a tar of
// ".SIGN.*" entries. Entries apk-tools cannot check (DSA, unknown types)
// are skipped; anything else in the part is an error.
func ParseSignatures(b []byte) ([]sign.Signature, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	var sigs []sign.Signature
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return sigs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: signature part: %v", ErrFormat, err)
		}
		if !strings.HasPrefix(h.Name, ".SIGN.") || h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: signature part holds %q", ErrFormat, h.Name)
		}
		alg, key, ok := sign.ParseEntryName(h.Name)
		if !ok {
			continue
		}
		v, err := io.ReadAll(io.LimitReader(tr, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("%w: signature part: %v", ErrFormat, err)
		}
		sigs = append(sigs, sign.Signature{Alg: alg, KeyName: key, Value: v})
	}
}

// parseControl reads the decompressed control part: .PKGINFO and the
// install scripts. Other dot files are ignored as apk ignores them.
func (pr *reader) parseControl(b []byte) error {
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: control part: %v", ErrFormat, err)
		}
		if !strings.HasPrefix(h.Name, ".") || strings.Contains(h.Name, "/") {
			return fmt.Errorf("%w: control part holds %q (data files belong in the data part)", ErrFormat, h.Name)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("%w: control part: %s: %v", ErrFormat, h.Name, err)
		}
		if h.Name == ".PKGINFO" {
			if pr.pkg.Info != nil {
				return fmt.Errorf("%w: two .PKGINFO files", ErrFormat)
			}
			info, err := ParsePKGINFO(bytes.NewReader(data))
			if err != nil {
				return fmt.Errorf("%w: %v", ErrFormat, err)
			}
			pr.pkg.Info = info
			continue
		}
		name := strings.TrimPrefix(h.Name, ".")
		for _, s := range ScriptNames {
			if s == name {
				pr.pkg.Scripts[name] = data
			}
		}
	}
	if pr.pkg.Info == nil {
		return fmt.Errorf("%w: no .PKGINFO in the control part", ErrFormat)
	}
	return nil
}

// readData reads the data part (all remaining members), hashing its
// compressed bytes into hs, checking entries and per-file checksums.
func (pr *reader) readData(hs ...io.Writer) error {
	dm, err := pr.gz.Rest(hs...)
	if err == io.EOF {
		return fmt.Errorf("%w: no data part", ErrFormat)
	}
	if err != nil {
		return fmt.Errorf("%w: data part: %v", ErrFormat, err)
	}
	// A decompression bomb stops at the size .PKGINFO declares (the
	// files' installed size), with room for the tar's headers.
	limit := dataLimit(pr.pkg.Info.InstalledSize)
	if pr.opts.MaxDataSize > 0 {
		limit = min(limit, pr.opts.MaxDataSize)
	}
	var src io.Reader = &capReader{r: dm, max: limit, left: limit}
	if pr.opts.DataTar != nil {
		src = io.TeeReader(src, pr.opts.DataTar)
	}
	return pr.entries(src, true)
}

// entries reads a data tar from src, checking its entries (and, with
// sums, every file's SHA-1), to its end.
func (pr *reader) entries(src io.Reader, sums bool) error {
	// archive/tar's reader would check each header block rune by rune
	// for its format: a fifth of the build VM's install, emulated.
	tr := tarread.NewReader(src)
	seen := map[string]byte{} // entry -> tar type
	buf := make([]byte, 64<<10)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: data part: %v", ErrFormat, err)
		}
		if err := pr.entry(h, tr, seen, buf, sums); err != nil {
			return err
		}
	}
	// Consume the end-of-archive padding and check the gzip trailer.
	if _, err := io.CopyBuffer(io.Discard, src, buf); err != nil {
		return fmt.Errorf("%w: data part: %v", ErrFormat, err)
	}
	return nil
}

func (pr *reader) entry(h *tar.Header, tr io.Reader, seen map[string]byte, buf []byte, sums bool) error {
	name, err := CleanPath(h.Name)
	if err != nil {
		return fmt.Errorf("%w: data part: %v", ErrFormat, err)
	}
	if _, dup := seen[name]; dup {
		return fmt.Errorf("%w: data part: %s appears twice", ErrFormat, name)
	}
	// Nothing is written through a link of the package itself (tar,
	// which made the package, never lists entries under a symlink).
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if seen[dir] == tar.TypeSymlink {
			return fmt.Errorf("%w: data part: %s is under %s, a symlink of the package", ErrFormat, name, dir)
		}
	}
	seen[name] = h.Typeflag
	h.Name = name
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeLink:
		t, err := CleanPath(h.Linkname)
		if err != nil {
			return fmt.Errorf("%w: data part: %s: hard link: %v", ErrFormat, name, err)
		}
		if _, ok := seen[t]; !ok {
			return fmt.Errorf("%w: data part: %s: hard link to %s, which is not earlier in the package", ErrFormat, name, t)
		}
		h.Linkname = t
	default:
		return fmt.Errorf("%w: data part: %s: unsupported entry type %q", ErrFormat, name, h.Typeflag)
	}
	pr.pkg.Files++
	want := h.PAXRecords["APK-TOOLS.checksum.SHA1"]
	var fh hash.Hash
	var content io.Reader = tr
	switch {
	case !sums:
	case h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA:
		fh = sha1.New()
		content = io.TeeReader(tr, fh)
	case h.Typeflag == tar.TypeSymlink && want != "":
		fh = sha1.New()
		fh.Write([]byte(h.Linkname))
	}
	if pr.opts.Entry != nil {
		if err := pr.opts.Entry(h, content); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// With sums, what Entry did not read is read for its hash; without,
	// the tar reader skips it (by seeking, when src can).
	if sums {
		if _, err := io.CopyBuffer(io.Discard, content, buf); err != nil {
			return fmt.Errorf("%w: data part: %s: %v", ErrFormat, name, err)
		}
	}
	if fh != nil && want != "" {
		if got := hex.EncodeToString(fh.Sum(nil)); got != strings.ToLower(want) {
			return fmt.Errorf("%w: %s has sha1 %s, the package says %s", ErrChecksum, name, got, want)
		}
	}
	return nil
}

// dataLimit is the most a data tar may inflate to for a package whose
// .PKGINFO says size: twice that (tar headers, PAX records and padding
// for many small files), plus 16 MiB.
func dataLimit(size int64) int64 {
	if size < 0 || size > 1<<50 {
		return 1 << 51
	}
	return 2*size + 16<<20
}

// capReader fails once more than left bytes were read.
type capReader struct {
	r         io.Reader
	max, left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, fmt.Errorf("data inflates beyond %d bytes, more than its size allows (a decompression bomb?)", c.max)
	}
	return n, err
}
