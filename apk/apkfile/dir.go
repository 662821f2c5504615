package apkfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// FromDir lists the tree under dir as package entries, as abuild packs a
// package directory under fakeroot: every entry owned by root (0:0),
// permission bits (setuid, setgid and sticky included) from the files,
// symlinks as they are, files with several links as one regular file and
// hard links to it, device nodes and FIFOs kept. Sockets are an error.
// Extended attributes are not read. Content is opened when the package
// is written, not now.
func FromDir(dir string) ([]Entry, error) {
	var out []Entry
	type inode struct{ dev, ino uint64 }
	inodes := map[string]inode{} // path -> inode, for files with several links
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		m := fi.Mode()
		e := Entry{Path: rel, Mode: unixPerm(m)}
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case m.IsRegular():
			if st != nil && st.Nlink > 1 {
				inodes[rel] = inode{uint64(st.Dev), uint64(st.Ino)}
			}
			e.Type, e.Size = TypeReg, fi.Size()
			e.Open = func() (io.ReadCloser, error) { return os.Open(p) }
		case m.IsDir():
			e.Type = TypeDir
		case m&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.Type, e.Linkname, e.Mode = TypeSymlink, t, 0o777
		case m&fs.ModeNamedPipe != 0:
			e.Type = TypeFifo
		case m&fs.ModeDevice != 0 && st != nil:
			e.Type = TypeBlock
			if m&fs.ModeCharDevice != 0 {
				e.Type = TypeChar
			}
			e.Devmajor, e.Devminor = int64(major(uint64(st.Rdev))), int64(minor(uint64(st.Rdev)))
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, m.Type())
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apkfile: %w", err)
	}
	// The first path of each link group in the written (sorted) order is
	// the regular file; the others link to it.
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	first := map[inode]string{}
	for i := range out {
		key, ok := inodes[out[i].Path]
		if !ok {
			continue
		}
		if orig, seen := first[key]; seen {
			out[i].Type, out[i].Linkname, out[i].Size, out[i].Open = TypeLink, orig, 0, nil
			continue
		}
		first[key] = out[i].Path
	}
	return out, nil
}

func major(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func minor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }

// FromFS lists the tree of fsys as package entries, owned by root:
// regular files, directories and (when fsys implements fs.ReadLinkFS)
// symlinks, with their permission bits. It is for trees built in memory
// or embedded; FromDir also keeps hard links and device nodes.
func FromFS(fsys fs.FS) ([]Entry, error) {
	var out []Entry
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m := fi.Mode()
		e := Entry{Path: p, Mode: unixPerm(m)}
		switch {
		case m.IsRegular():
			e.Type, e.Size = TypeReg, fi.Size()
			e.Open = func() (io.ReadCloser, error) { return fsys.Open(p) }
		case m.IsDir():
			e.Type = TypeDir
		case m&fs.ModeSymlink != 0:
			t, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			e.Type, e.Linkname, e.Mode = TypeSymlink, t, 0o777
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, m.Type())
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apkfile: %w", err)
	}
	return out, nil
}

// unixPerm is a Go file mode's permission bits as a tar header has them,
// setuid 04000, setgid 02000 and sticky 01000 included.
func unixPerm(m fs.FileMode) int64 {
	p := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// ReadScripts reads a package's install scripts from dir: NAME, .NAME or
// PKG.NAME for each of ScriptNames. An empty dir has none.
func ReadScripts(dir, pkg string) (map[string][]byte, error) {
	if dir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, de := range ents {
		name := strings.TrimPrefix(strings.TrimPrefix(de.Name(), pkg+"."), ".")
		if !slices.Contains(ScriptNames, name) {
			return nil, fmt.Errorf("%s: not an install script name (want %s)", filepath.Join(dir, de.Name()), strings.Join(ScriptNames, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s: %s given twice", dir, name)
		}
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			return nil, err
		}
		out[name] = data
	}
	return out, nil
}

// NewestMtime is the newest modification time in a tree (in seconds), a
// package's build date when nothing else gives one.
func NewestMtime(dir string) (int64, error) {
	var newest int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		newest = max(newest, fi.ModTime().Unix())
		return nil
	})
	return newest, err
}
