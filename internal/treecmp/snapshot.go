package treecmp

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Entry is everything about one path of a tree that an installer decides:
// type, permission bits (with setuid, setgid, sticky), owner, symlink
// target, content, extended attributes, device numbers and the other
// names of its hard-link set. Times are not in it.
type Entry struct {
	Type     byte // a tar type flag: tar.TypeReg, TypeDir, TypeSymlink, TypeChar, TypeBlock, TypeFifo
	Mode     int64
	UID, GID int
	Link     string // symlink target
	Size     int64
	SHA256   string
	Xattrs   map[string]string
	Major    int64
	Minor    int64
	Links    []string // every name of the file's hard-link set, sorted (nil when it has one name)
}

// Snapshot is a tree: its entries by slash-separated relative path
// ("etc/passwd"), without the root itself.
type Snapshot map[string]*Entry

// ReadDir snapshots the tree under dir. It must be run by a user who can
// read every file (root, for a rootfs).
func ReadDir(dir string) (Snapshot, error) {
	s := Snapshot{}
	type inode struct{ dev, ino uint64 }
	groups := map[inode][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := &Entry{Mode: int64(st.Mode & 0o7777), UID: int(st.Uid), GID: int(st.Gid)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.Type = tar.TypeDir
		case unix.S_IFREG:
			e.Type = tar.TypeReg
			e.Size = st.Size
			if e.SHA256, err = fileSum(p); err != nil {
				return err
			}
			if st.Nlink > 1 {
				k := inode{st.Dev, st.Ino}
				groups[k] = append(groups[k], rel)
			}
		case unix.S_IFLNK:
			e.Type = tar.TypeSymlink
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			e.Type = tar.TypeChar
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				e.Type = tar.TypeBlock
			}
			e.Major, e.Minor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFIFO:
			e.Type = tar.TypeFifo
		default:
			return fmt.Errorf("%s: unsupported file type %o", rel, st.Mode&unix.S_IFMT)
		}
		if e.Xattrs, err = xattrs(p); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		s[rel] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, names := range groups {
		slices.Sort(names)
		for _, n := range names {
			s[n].Links = names
		}
	}
	return s, nil
}

func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func xattrs(p string) (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ENOTSUP || n == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 65536)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		m[name] = string(v[:vn])
	}
	return m, nil
}

// ReadTar snapshots the tree of a tar stream, as it would unpack: a later
// entry of the same name replaces an earlier one, a hard link joins its
// target's set.
func ReadTar(r io.Reader) (Snapshot, error) {
	s := Snapshot{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" || name == "." {
			continue
		}
		e := &Entry{Type: h.Typeflag, Mode: h.Mode & 0o7777, UID: h.Uid, GID: h.Gid}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[x] = v
			}
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.Type = tar.TypeReg
			e.Size = h.Size
			hs := sha256.New()
			if _, err := io.Copy(hs, tr); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			e.SHA256 = hex.EncodeToString(hs.Sum(nil))
		case tar.TypeSymlink:
			e.Link = h.Linkname
		case tar.TypeLink:
			target := strings.TrimSuffix(strings.TrimPrefix(h.Linkname, "./"), "/")
			t, ok := s[target]
			if !ok || t.Type != tar.TypeReg {
				return nil, fmt.Errorf("%s: hard link to %q, which is not an earlier file", name, h.Linkname)
			}
			if t.Links == nil {
				t.Links = []string{target}
			}
			t.Links = append(t.Links, name)
			slices.Sort(t.Links)
			for _, n := range t.Links {
				s[n] = t
			}
			continue
		case tar.TypeChar, tar.TypeBlock:
			e.Major, e.Minor = h.Devmajor, h.Devminor
		case tar.TypeDir, tar.TypeFifo:
		default:
			return nil, fmt.Errorf("%s: unsupported tar type %q", name, h.Typeflag)
		}
		s[name] = e
	}
	// Hard-linked names share one Entry above; give each its own copy so
	// that a comparison reads them as separate paths.
	for n, e := range s {
		if e.Links != nil {
			c := *e
			s[n] = &c
		}
	}
	return s, nil
}

// Diff names every difference between want and got, one line each, sorted
// by path: a path only in one, or each field that differs. ignore, when
// set, leaves out the paths it returns true for (in both trees).
func Diff(want, got Snapshot, ignore func(rel string) bool) []string {
	var diffs []string
	add := func(format string, a ...any) { diffs = append(diffs, fmt.Sprintf(format, a...)) }
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if ignore != nil && ignore(n) {
			continue
		}
		w, g := want[n], got[n]
		switch {
		case g == nil:
			add("%s: missing (want %s)", n, w.describe())
			continue
		case w == nil:
			add("%s: extra (%s)", n, g.describe())
			continue
		case w.Type != g.Type:
			add("%s: %s, want %s", n, g.describe(), w.describe())
			continue
		}
		if w.Mode != g.Mode {
			add("%s: mode %04o, want %04o", n, g.Mode, w.Mode)
		}
		if w.UID != g.UID || w.GID != g.GID {
			add("%s: owner %d:%d, want %d:%d", n, g.UID, g.GID, w.UID, w.GID)
		}
		if w.Link != g.Link {
			add("%s: symlink to %q, want %q", n, g.Link, w.Link)
		}
		if w.SHA256 != g.SHA256 {
			add("%s: content differs (%d bytes, want %d)", n, g.Size, w.Size)
		}
		if w.Major != g.Major || w.Minor != g.Minor {
			add("%s: device %d,%d, want %d,%d", n, g.Major, g.Minor, w.Major, w.Minor)
		}
		if !slices.Equal(w.Links, g.Links) {
			add("%s: hard links %v, want %v", n, g.Links, w.Links)
		}
		if !xattrsEqual(w.Xattrs, g.Xattrs) {
			add("%s: xattrs %v, want %v", n, keys(g.Xattrs), keys(w.Xattrs))
		}
	}
	return diffs
}

func xattrsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var k []string
	for n, v := range m {
		k = append(k, fmt.Sprintf("%s=%q", n, v))
	}
	slices.Sort(k)
	return k
}

func (e *Entry) describe() string {
	kind := map[byte]string{tar.TypeReg: "file", tar.TypeDir: "directory", tar.TypeSymlink: "symlink", tar.TypeChar: "char device",
		tar.TypeBlock: "block device", tar.TypeFifo: "fifo"}[e.Type]
	s := fmt.Sprintf("%s %04o %d:%d", kind, e.Mode, e.UID, e.GID)
	if e.Type == tar.TypeSymlink {
		s += " -> " + e.Link
	}
	return s
}
