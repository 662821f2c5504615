package testrepo

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// EntryType is the kind of a Tree entry.
type EntryType uint8

// The entry kinds a package's file tree holds.
const (
	TypeFile     EntryType = iota // regular file
	TypeDir                       // directory
	TypeSymlink                   // symbolic link; Target is the link text
	TypeHardlink                  // hard link to the regular file at Target (a tree path)
)

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeHardlink:
		return "hardlink"
	}
	return fmt.Sprintf("EntryType(%d)", t)
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string // e.g. "security.capability"
	Value []byte
}

// Entry is one file, directory or link of a package's tree.
type Entry struct {
	// Path is slash-separated, relative to the root, without a leading
	// slash: "bin/busybox".
	Path string
	Type EntryType
	// Mode holds the Unix permission bits as a tar header or stat has
	// them, setuid (04000), setgid (02000) and sticky (01000) included;
	// the type is in Type. (These are not Go's fs.ModeSetuid etc.)
	Mode     fs.FileMode
	UID, GID int
	// Target is a symlink's text or, for a hardlink, the tree path of the
	// regular file it links to.
	Target string
	// Xattrs are sorted by name.
	Xattrs []Xattr
	// Size is a regular file's size in bytes.
	Size int64
	// Open returns a regular file's content; it is called once per read,
	// so large contents are streamed from disk or generated, never held.
	Open func() (io.ReadCloser, error)
}

// Tree is a package's file tree, kept as a set of entries keyed by path.
// Parent directories are added implicitly (0755 root:root) unless added
// explicitly with other attributes. Entries returns them sorted by path,
// so what is built from a Tree is deterministic.
type Tree struct {
	entries map[string]*Entry
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]*Entry{}} }

func cleanPath(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" {
		return "", fmt.Errorf("tree: empty path %q", p)
	}
	return c[1:], nil
}

func (t *Tree) add(e *Entry) error {
	p, err := cleanPath(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("tree: %s: mode %o is not Unix permission bits (07777)", p, uint32(e.Mode))
	}
	if old, ok := t.entries[p]; ok {
		// An explicit directory may redefine an implicit parent.
		if !(old.Type == TypeDir && e.Type == TypeDir) {
			return fmt.Errorf("tree: %s: added twice (%s, then %s)", p, old.Type, e.Type)
		}
	}
	if err := t.mkParents(p); err != nil {
		return err
	}
	slices.SortFunc(e.Xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
	t.entries[p] = e
	return nil
}

func (t *Tree) mkParents(p string) error {
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if e, ok := t.entries[d]; ok {
			if e.Type != TypeDir {
				return fmt.Errorf("tree: %s: parent %s is a %s", p, d, e.Type)
			}
			continue
		}
		t.entries[d] = &Entry{Path: d, Type: TypeDir, Mode: 0o755}
	}
	return nil
}

// Dir adds a directory.
func (t *Tree) Dir(p string, mode fs.FileMode, uid, gid int) error {
	return t.add(&Entry{Path: p, Type: TypeDir, Mode: mode, UID: uid, GID: gid})
}

// File adds a regular file with the given content, owned by root.
func (t *Tree) File(p string, mode fs.FileMode, data []byte) error {
	return t.FileOwned(p, mode, 0, 0, data)
}

// FileOwned adds a regular file with the given content and owner.
func (t *Tree) FileOwned(p string, mode fs.FileMode, uid, gid int, data []byte) error {
	data = bytes.Clone(data)
	return t.add(&Entry{Path: p, Type: TypeFile, Mode: mode, UID: uid, GID: gid,
		Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }})
}

// DiskFile adds a regular file whose content is read, when needed, from
// the file src on the host (which must not change until the tree is used).
func (t *Tree) DiskFile(p string, mode fs.FileMode, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("tree: %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("tree: %s: %s is not a regular file", p, src)
	}
	return t.add(&Entry{Path: p, Type: TypeFile, Mode: mode, Size: fi.Size(),
		Open: func() (io.ReadCloser, error) { return os.Open(src) }})
}

// StreamFile adds a regular file of the given size whose content open
// produces afresh on each call.
func (t *Tree) StreamFile(p string, mode fs.FileMode, size int64, open func() (io.ReadCloser, error)) error {
	return t.add(&Entry{Path: p, Type: TypeFile, Mode: mode, Size: size, Open: open})
}

// Symlink adds a symbolic link p -> target.
func (t *Tree) Symlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("tree: %s: empty symlink target", p)
	}
	return t.add(&Entry{Path: p, Type: TypeSymlink, Mode: 0o777, Target: target})
}

// Hardlink adds p as a hard link to the regular file target, which must
// already be in the tree.
func (t *Tree) Hardlink(p, target string) error {
	tp, err := cleanPath(target)
	if err != nil {
		return err
	}
	te, ok := t.entries[tp]
	if !ok || te.Type != TypeFile {
		return fmt.Errorf("tree: %s: hard link target %s is not a regular file in the tree", p, target)
	}
	return t.add(&Entry{Path: p, Type: TypeHardlink, Mode: te.Mode, UID: te.UID, GID: te.GID,
		Target: tp, Size: te.Size})
}

// SetXattr sets an extended attribute on the entry at p.
func (t *Tree) SetXattr(p, name string, value []byte) error {
	cp, err := cleanPath(p)
	if err != nil {
		return err
	}
	e, ok := t.entries[cp]
	if !ok {
		return fmt.Errorf("tree: %s: no such entry for xattr %s", p, name)
	}
	e.Xattrs = slices.DeleteFunc(e.Xattrs, func(x Xattr) bool { return x.Name == name })
	e.Xattrs = append(e.Xattrs, Xattr{Name: name, Value: bytes.Clone(value)})
	slices.SortFunc(e.Xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
	return nil
}

// Get returns the entry at p, or nil.
func (t *Tree) Get(p string) *Entry {
	cp, err := cleanPath(p)
	if err != nil {
		return nil
	}
	return t.entries[cp]
}

// Len is the number of entries, implicit directories included.
func (t *Tree) Len() int { return len(t.entries) }

// Entries returns copies of all entries sorted by path, so a directory
// comes before its contents. Hard links are normalised so that in each
// group of links to the same file the first path in that order is the
// regular file and the others link to it, as a tar stream needs.
func (t *Tree) Entries() []*Entry {
	out := make([]*Entry, 0, len(t.entries))
	for _, e := range t.entries {
		c := *e
		c.Xattrs = slices.Clone(e.Xattrs)
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *Entry) int { return strings.Compare(a.Path, b.Path) })
	byPath := make(map[string]*Entry, len(out))
	for _, e := range out {
		byPath[e.Path] = e
	}
	first := map[string]*Entry{} // original file path -> first entry of its group
	for _, e := range out {
		var orig string
		switch e.Type {
		case TypeFile:
			orig = e.Path
		case TypeHardlink:
			orig = e.Target
		default:
			continue
		}
		f, seen := first[orig]
		if !seen {
			if e.Type == TypeHardlink {
				// The group's regular file sorts later: this link takes its
				// content and the file becomes a link to it.
				o := byPath[orig]
				e.Type, e.Open, e.Target, e.Xattrs = TypeFile, o.Open, "", slices.Clone(o.Xattrs)
			}
			first[orig] = e
			continue
		}
		e.Type, e.Open, e.Target, e.Xattrs = TypeHardlink, nil, f.Path, nil
	}
	return out
}

// InstalledSize is the sum of the regular files' sizes (hard links
// counted once), as abuild reports a package's installed size before
// rounding.
func (t *Tree) InstalledSize() int64 {
	var n int64
	for _, e := range t.entries {
		if e.Type == TypeFile {
			n += e.Size
		}
	}
	return n
}

// WriteTo writes the tree under dir on the host: directories, files,
// symlinks and hard links with their permission bits; ownership and
// xattrs too when running as root (they need privileges). Mtimes are
// set to BuildTime. It is used to inspect and run what a package holds.
func (t *Tree) WriteTo(dir string) error {
	root := os.Geteuid() == 0
	entries := t.Entries()
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		var err error
		switch e.Type {
		case TypeDir:
			err = os.MkdirAll(p, 0o755)
		case TypeFile:
			err = writeEntry(p, e)
		case TypeSymlink:
			err = os.Symlink(e.Target, p)
		case TypeHardlink:
			err = os.Link(filepath.Join(dir, filepath.FromSlash(e.Target)), p)
		}
		if err != nil {
			return fmt.Errorf("tree: %s: %w", e.Path, err)
		}
		if e.Type == TypeSymlink || e.Type == TypeHardlink {
			continue
		}
		if root {
			if err := os.Lchown(p, e.UID, e.GID); err != nil {
				return fmt.Errorf("tree: %s: %w", e.Path, err)
			}
			for _, x := range e.Xattrs {
				if err := setxattr(p, x.Name, x.Value); err != nil {
					return fmt.Errorf("tree: %s: xattr %s: %w", e.Path, x.Name, err)
				}
			}
		}
		if err := os.Chmod(p, toOSMode(e.Mode)); err != nil {
			return fmt.Errorf("tree: %s: %w", e.Path, err)
		}
	}
	// Directory mtimes last, after their contents were written.
	mt := time.Unix(BuildTime, 0)
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Type == TypeSymlink {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if err := os.Chtimes(p, mt, mt); err != nil {
			return fmt.Errorf("tree: %s: %w", e.Path, err)
		}
	}
	return nil
}

func writeEntry(p string, e *Entry) error {
	r, err := e.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != e.Size {
		err = fmt.Errorf("content is %d bytes, entry says %d", n, e.Size)
	}
	return err
}

// toOSMode converts Unix permission bits (07777) to an fs.FileMode with
// Go's setuid/setgid/sticky flags.
func toOSMode(m fs.FileMode) fs.FileMode {
	out := m & fs.ModePerm
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}
