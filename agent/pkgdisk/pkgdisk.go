// Package pkgdisk is the build VM's input: one tar stream, attached to
// the VM as a read-only raw virtio disk, holding a manifest (what to
// install, in order, and how the target's apk configuration must look),
// the trusted public keys and the packages in install order: prepared
// for alpinist's own installer (read, verified and decompressed on the
// host, see AddPrepared), the .apk files themselves for apk-tools. The
// agent reads it front to back, so nothing is ever seeked or held whole.
package pkgdisk

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/internal/counting"
	"github.com/alpinist/alpinist/sysconfig"
)

// Manifest is the first entry of the disk.
type Manifest struct {
	Format int    `json:"format"`
	Arch   string `json:"arch"`
	// World is /etc/apk/world's content (the spec's package list).
	World []string `json:"world"`
	// Repositories is /etc/apk/repositories' content.
	Repositories []string `json:"repositories"`
	// Keys are the public key file names that follow the manifest (they
	// go to /etc/apk/keys in the target).
	Keys []string `json:"keys"`
	// Packages are installed in this order.
	Packages []Package `json:"packages"`
	// SourceDateEpoch fixes the time of everything the agent writes.
	SourceDateEpoch int64 `json:"source_date_epoch"`
	// Installer is "" (alpinist's own) or "apk-tools": then Tools is set
	// and a gzip'ed tar of a root holding sbin/apk (an Alpine
	// minirootfs) follows the keys, and the real apk installs.
	Installer string `json:"installer,omitempty"`
	Tools     bool   `json:"tools,omitempty"`
	// Prepared: the packages are prepared (see AddPrepared), not .apk
	// files; only for alpinist's own installer.
	Prepared bool `json:"prepared,omitempty"`
	// Config is applied after the install.
	Config Config `json:"config"`
}

// Config is the system configuration the agent applies in the target
// after the packages are installed.
type Config struct {
	Hostname string `json:"hostname,omitempty"`
	// Timezone names a zone of /usr/share/zoneinfo.
	Timezone string  `json:"timezone,omitempty"`
	Groups   []Group `json:"groups,omitempty"`
	Users    []User  `json:"users,omitempty"`
	// Files are applied in order; the trees of copy and content entries
	// follow the packages on the disk (see Writer.AddTree).
	Files []File `json:"files,omitempty"`
	// Services maps runlevels to the services to add to them.
	Services map[string][]string `json:"services,omitempty"`
	// DefaultServices are added too, each only when the target has it
	// (a bootable system's setup-alpine services).
	DefaultServices map[string][]string `json:"default_services,omitempty"`
	// Network, when set, replaces /etc/network/interfaces (and
	// /etc/resolv.conf when it names DNS servers).
	Network *Network `json:"network,omitempty"`
	// Console is the serial console to start a getty on in /etc/inittab
	// ("": none).
	Console string   `json:"console,omitempty"`
	Run     []string `json:"run,omitempty"`
	// EFI, when set, has the target's grub-mkimage make GRUB's EFI image
	// (for a disk image that boots with UEFI), after the run steps.
	EFI *EFI `json:"efi,omitempty"`
}

// EFI is GRUB's EFI image to make in the target.
type EFI = bootdisk.GRUB

// File is one entry of the spec's files.
type File struct {
	Dst string `json:"dst"`
	// Kind is copy, content, symlink, hardlink, directory or permissions.
	Kind string `json:"kind"`
	// Target is a symlink's or hard link's target.
	Target string `json:"target,omitempty"`
	// Mode is the mode to set (for a directory, content or permissions
	// entry; copied trees carry their modes); -1: none given.
	Mode int `json:"mode"`
	// Owner is "user", "user:group", ":group" or "uid:gid" ("": root).
	Owner string `json:"owner,omitempty"`
}

// Network is the system's network configuration (sysconfig's).
type Network = sysconfig.Network

// Interface is one network interface (sysconfig's).
type Interface = sysconfig.Interface

// Group is a group to create (sysconfig's).
type Group = sysconfig.Group

// User is a user to create (sysconfig's).
type User = sysconfig.User

// Package is one package file on the disk.
type Package struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Checksum string `json:"checksum"` // Q1..., as in the index
	// Repository is the index tag it came from ("" or "@tag"), for the
	// installed database's repository pinning.
	Tag string `json:"tag,omitempty"`
	// Size and Arch are the index's S: and A:, which apk records in its
	// database (the index's arch, not the package's noarch).
	Size int64  `json:"size"`
	Arch string `json:"arch,omitempty"`
}

// Format is the manifest format version.
const Format = 2

const (
	manifestName = "manifest.json"
	keyDir       = "keys/"
	pkgDir       = "packages/"
	toolsName    = "tools.tar.gz"
)

// check tells whether the manifest's installer and packages agree.
func (m *Manifest) check() error {
	if m.Prepared && (m.Installer != "" || m.Tools) {
		return fmt.Errorf("pkgdisk: prepared packages are for alpinist's own installer, not %q", m.Installer)
	}
	return nil
}

// FileName is a package's entry name.
func (p Package) FileName() string { return pkgDir + p.Name + "-" + p.Version + ".apk" }

// Writer writes a package disk.
type Writer struct {
	w     io.Writer
	id    *idWriter // see Identity
	tw    *tar.Writer
	plan  bool // see Plan
	m     Manifest
	next  int
	tools bool
	tree  int // the next file tree index allowed
	mtime time.Time
}

// NewWriter starts a disk: the manifest, then the keys (name -> PEM).
// The packages must follow with Add in the manifest's order.
func NewWriter(w io.Writer, m Manifest, keys map[string][]byte) (*Writer, error) {
	m.Format = Format
	if err := m.check(); err != nil {
		return nil, err
	}
	m.Keys = nil
	for k := range keys {
		if k == "" || strings.ContainsAny(k, "/\x00") {
			return nil, fmt.Errorf("pkgdisk: bad key name %q", k)
		}
		m.Keys = append(m.Keys, k)
	}
	slices.Sort(m.Keys)
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	id := &idWriter{h: sha256.New(), on: true}
	dw := &Writer{w: w, id: id, tw: tar.NewWriter(io.MultiWriter(w, id)), m: m, mtime: time.Unix(m.SourceDateEpoch, 0)}
	if err := dw.file(manifestName, int64(len(data)), strings.NewReader(string(data))); err != nil {
		return nil, err
	}
	for _, k := range m.Keys {
		if err := dw.file(keyDir+k, int64(len(keys[k])), strings.NewReader(string(keys[k]))); err != nil {
			return nil, err
		}
	}
	return dw, nil
}

func (w *Writer) file(name string, size int64, r io.Reader) error {
	return w.entry(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size}, r)
}

// AddTools writes the tools tarball; it must come before the packages,
// and only when the manifest says Tools.
func (w *Writer) AddTools(r io.Reader, size int64) error {
	if !w.m.Tools || w.next > 0 || w.tools {
		return errors.New("pkgdisk: tools only once, before the packages, when the manifest says so")
	}
	w.tools = true
	return w.file(toolsName, size, r)
}

// Add writes the next package's file (size bytes from r).
func (w *Writer) Add(r io.Reader, size int64) error {
	if w.m.Tools && !w.tools {
		return errors.New("pkgdisk: the tools tarball must come first")
	}
	if w.m.Prepared {
		return errors.New("pkgdisk: the manifest says the packages are prepared (AddPrepared)")
	}
	if w.next >= len(w.m.Packages) {
		return errors.New("pkgdisk: more packages than the manifest lists")
	}
	if err := w.packages(); err != nil {
		return err
	}
	p := w.m.Packages[w.next]
	w.next++
	return w.file(p.FileName(), size, r)
}

// Identity is the SHA-256 of everything written but the packages, which
// the manifest's checksums identify: with them, the disk's identity.
// Plan gives it before the packages are even fetched.
func (w *Writer) Identity() []byte { return w.id.h.Sum(nil) }

// idWriter hashes what the Writer writes while on.
type idWriter struct {
	h  hash.Hash
	on bool
}

func (i *idWriter) Write(p []byte) (int, error) {
	if i.on {
		i.h.Write(p)
	}
	return len(p), nil
}

// packages begins a package's entries, which Identity leaves out: the
// padding of the entry before them is flushed, and counted, first.
func (w *Writer) packages() error {
	if w.plan {
		return errors.New("pkgdisk: a plan has no packages (SkipPackages)")
	}
	if w.id.on {
		if err := w.tw.Flush(); err != nil {
			return err
		}
		w.id.on = false
	}
	return nil
}

// afterPackages ends the packages' part of the disk for Identity.
func (w *Writer) afterPackages() error {
	if !w.id.on {
		if err := w.tw.Flush(); err != nil {
			return err
		}
		w.id.on = true
	}
	return nil
}

// Plan starts a disk that is never written, to know its Identity (and
// Size) before its packages are at hand: NewWriter, the tools, then
// SkipPackages instead of the packages, then the file trees and Close,
// as the disk itself will be written.
func Plan(m Manifest, keys map[string][]byte) (*Writer, error) {
	w, err := NewWriter(&counting.Writer{W: io.Discard}, m, keys)
	if err != nil {
		return nil, err
	}
	w.plan = true
	return w, nil
}

// Planning tells whether w is a plan (Plan), never written.
func (w *Writer) Planning() bool { return w.plan }

// SkipPackages takes a plan past its packages.
func (w *Writer) SkipPackages() error {
	if !w.plan || (w.m.Tools && !w.tools) {
		return errors.New("pkgdisk: only a plan skips its packages, after its tools")
	}
	w.next = len(w.m.Packages)
	return nil
}

// Size is the number of bytes written so far (of a plan: what the disk
// holds but its packages).
func (w *Writer) Size() int64 {
	if c, ok := w.w.(*counting.Writer); ok {
		return c.N
	}
	return -1
}

// Close ends the tar stream; every package of the manifest must have
// been added.
func (w *Writer) Close() error {
	if w.next != len(w.m.Packages) {
		return fmt.Errorf("pkgdisk: %d of %d packages written", w.next, len(w.m.Packages))
	}
	if err := w.afterPackages(); err != nil {
		return err
	}
	return w.tw.Close()
}

// Reader reads a package disk front to back.
type Reader struct {
	tr        *tar.Reader
	count     *counting.Reader // its N: where on the disk the tar reader is
	Manifest  Manifest
	Keys      map[string][]byte
	next      int
	toolsRead bool
	tree      int      // the last file tree index read
	disk      *os.File // see Open
	dataBuf   []byte   // NextPrepared's data readers' buffer
}

// NewReader reads the manifest and the keys.
func NewReader(r io.Reader) (*Reader, error) {
	count := &counting.Reader{R: r}
	tr := tar.NewReader(count)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("pkgdisk: no manifest: %w", err)
	}
	if h.Name != manifestName {
		return nil, fmt.Errorf("pkgdisk: first entry is %q, not %s", h.Name, manifestName)
	}
	dr := &Reader{tr: tr, count: count, Keys: map[string][]byte{}}
	if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&dr.Manifest); err != nil {
		return nil, fmt.Errorf("pkgdisk: manifest: %w", err)
	}
	if dr.Manifest.Format != Format {
		return nil, fmt.Errorf("pkgdisk: manifest format %d, this agent reads %d", dr.Manifest.Format, Format)
	}
	if err := dr.Manifest.check(); err != nil {
		return nil, err
	}
	for _, k := range dr.Manifest.Keys {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("pkgdisk: key %s: %w", k, err)
		}
		if h.Name != keyDir+k {
			return nil, fmt.Errorf("pkgdisk: expected %s%s, found %s", keyDir, k, h.Name)
		}
		if dr.Keys[k], err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
			return nil, fmt.Errorf("pkgdisk: key %s: %w", k, err)
		}
	}
	return dr, nil
}

// Tools returns a reader of the tools tarball (when Manifest.Tools); it
// must be read before Next is called.
func (r *Reader) Tools() (io.Reader, error) {
	if !r.Manifest.Tools || r.next > 0 {
		return nil, errors.New("pkgdisk: no tools tarball here")
	}
	h, err := r.tr.Next()
	if err != nil {
		return nil, fmt.Errorf("pkgdisk: %s: %w", toolsName, err)
	}
	if h.Name != toolsName {
		return nil, fmt.Errorf("pkgdisk: expected %s, found %s", toolsName, h.Name)
	}
	r.toolsRead = true
	return r.tr, nil
}

// Next returns the next package and a reader of its file, or io.EOF
// after the last one.
func (r *Reader) Next() (Package, io.Reader, error) {
	if r.Manifest.Tools && !r.toolsRead {
		if _, err := r.Tools(); err != nil {
			return Package{}, nil, err
		}
	}
	if r.Manifest.Prepared {
		return Package{}, nil, errors.New("pkgdisk: the packages are prepared (NextPrepared)")
	}
	if r.next >= len(r.Manifest.Packages) {
		return Package{}, nil, io.EOF
	}
	p := r.Manifest.Packages[r.next]
	r.next++
	h, err := r.tr.Next()
	if err != nil {
		return Package{}, nil, fmt.Errorf("pkgdisk: %s: %w", p.FileName(), err)
	}
	if h.Name != p.FileName() {
		return Package{}, nil, fmt.Errorf("pkgdisk: expected %s, found %s", p.FileName(), h.Name)
	}
	return p, r.tr, nil
}
