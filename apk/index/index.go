// Package index reads and writes signed APKINDEX.tar.gz files as
// `apk index` and abuild-sign make them: a signature gzip member (see
// package sign) followed by one gzip member holding a tar of DESCRIPTION
// (optional) and APKINDEX, with its end-of-archive. The signature covers
// the compressed bytes of that second member.
package index

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/gzmember"
	"github.com/alpinist/alpinist/apk/sign"
)

// FileName is an index's name in a repository directory.
const FileName = "APKINDEX.tar.gz"

// WriteOptions control Write.
type WriteOptions struct {
	Key *sign.Key // signs the index (required unless Unsigned)
	// Unsigned writes an index without a signature, for an apk told
	// --allow-untrusted: the agent's local repository of packages the
	// host has verified already.
	Unsigned bool
	Alg      sign.Algorithm // RSA (SHA-1) when zero, as abuild-sign
	// Mtime is the time of the tar entries (and the signature's); use
	// SOURCE_DATE_EPOCH or the newest package's build time.
	Mtime time.Time
	// RewriteArch, when set, replaces every package's arch in the index
	// (apk index --rewrite-arch, as abuild uses it): apk fetches a package
	// from REPO/ARCH/, so noarch packages in an arch's directory must be
	// listed with that arch.
	RewriteArch string
}

// Sort orders packages as `apk index` lists them: by name, then version
// as text, for a stable index.
func Sort(pkgs []*apk.Package) {
	slices.SortStableFunc(pkgs, func(a, b *apk.Package) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
}

// Write writes a signed index of pkgs (in the order given) with an
// optional description. Every package needs a checksum (C:).
func Write(w io.Writer, desc string, pkgs []*apk.Package, opts WriteOptions) error {
	if opts.Key == nil && !opts.Unsigned {
		return errors.New("index: no signing key")
	}
	if strings.ContainsAny(desc, "\n\x00") {
		return errors.New("index: the description must be one line")
	}
	var text bytes.Buffer
	for _, p := range pkgs {
		if opts.RewriteArch != "" && p.Arch != opts.RewriteArch {
			c := *p
			c.Arch = opts.RewriteArch
			p = &c
		}
		if err := apk.WriteIndexEntry(&text, p); err != nil {
			return fmt.Errorf("index: %s: %w", p, err)
		}
	}
	mtime := opts.Mtime.UTC().Truncate(time.Second)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	add := func(name string, data []byte) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)),
			ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if desc != "" {
		if err := add("DESCRIPTION", []byte(desc)); err != nil {
			return fmt.Errorf("index: %w", err)
		}
	}
	if err := add("APKINDEX", text.Bytes()); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	var body bytes.Buffer
	if err := sign.GzipMember(&body, tb.Bytes()); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if opts.Key != nil {
		h := opts.Alg.NewHash()
		h.Write(body.Bytes())
		if err := opts.Key.WriteSignature(w, opts.Alg, h.Sum(nil), mtime); err != nil {
			return fmt.Errorf("index: %w", err)
		}
	}
	if _, err := w.Write(body.Bytes()); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// WriteFile writes the index to path through a temporary file and a rename.
func WriteFile(path, desc string, pkgs []*apk.Package, opts WriteOptions) error {
	var b bytes.Buffer
	if err := Write(&b, desc, pkgs, opts); err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("index: %s: %w", path, err)
	}
	return nil
}

// maxIndex caps the uncompressed index (Alpine's largest, community, is
// about 10 MB).
const maxIndex = 256 << 20

// Read reads and verifies a signed index; name (a path or URL) is used in
// errors. keys nil or empty makes every index untrusted. It returns the
// DESCRIPTION and the packages in index order.
func Read(r io.Reader, keys *sign.Keyring, name string) (string, []*apk.Package, error) {
	desc, pkgs, err := read(r, keys, name)
	if err != nil {
		return "", nil, fmt.Errorf("index: %s: %w", name, err)
	}
	return desc, pkgs, nil
}

func read(r io.Reader, keys *sign.Keyring, name string) (string, []*apk.Package, error) {
	gz := gzmember.NewReader(r)
	first, err := gz.Next()
	if err == io.EOF {
		return "", nil, errors.New("empty file")
	}
	if err != nil {
		return "", nil, err
	}
	sb, err := io.ReadAll(io.LimitReader(first, 1<<20))
	if err != nil {
		return "", nil, err
	}
	if h, err := tar.NewReader(bytes.NewReader(sb)).Next(); err == nil && (h.Name == "DESCRIPTION" || h.Name == "APKINDEX") {
		// The index itself comes first: nobody signed it.
		return "", nil, fmt.Errorf("%w: not signed (sign it with abuild-sign, or make it with alpinist repo index --key)", sign.ErrUntrusted)
	}
	sigs, err := apkfile.ParseSignatures(sb)
	if err != nil {
		return "", nil, err
	}
	if len(sigs) == 0 {
		return "", nil, fmt.Errorf("%w: not signed", sign.ErrUntrusted)
	}
	hs := map[sign.Algorithm]io.Writer{}
	var ws []io.Writer
	for _, s := range sigs {
		if hs[s.Alg] == nil {
			h := s.Alg.NewHash()
			hs[s.Alg] = h
			ws = append(ws, h)
		}
	}
	body, err := gz.Next(ws...)
	if err == io.EOF {
		return "", nil, errors.New("no index after the signature")
	}
	if err != nil {
		return "", nil, err
	}
	var desc string
	var pkgs []*apk.Package
	tr := tar.NewReader(&capped{r: body, left: maxIndex})
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, err
		}
		switch h.Name {
		case "DESCRIPTION":
			b, err := io.ReadAll(io.LimitReader(tr, 4096))
			if err != nil {
				return "", nil, err
			}
			desc = strings.TrimRight(string(b), "\n")
		case "APKINDEX":
			if pkgs != nil {
				return "", nil, errors.New("two APKINDEX entries")
			}
			pkgs, err = apk.ParseIndex(tr)
			if err != nil {
				return "", nil, err
			}
			if pkgs == nil {
				pkgs = []*apk.Package{}
			}
		}
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return "", nil, err
	}
	if _, err := gz.Next(); err != io.EOF {
		if err == nil {
			return "", nil, errors.New("data after the index")
		}
		return "", nil, err
	}
	if pkgs == nil {
		return "", nil, errors.New("no APKINDEX in the archive")
	}
	if _, err := keys.Check(sigs, func(a sign.Algorithm) []byte {
		if h, ok := hs[a].(interface{ Sum([]byte) []byte }); ok {
			return h.Sum(nil)
		}
		return nil
	}); err != nil {
		return "", nil, err
	}
	return desc, pkgs, nil
}

type capped struct {
	r    io.Reader
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, fmt.Errorf("index inflates beyond %d bytes", maxIndex)
	}
	return n, err
}
