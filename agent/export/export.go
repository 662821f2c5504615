// Package export streams a finished root filesystem as the canonical
// rootfs tar every output is made from: entries sorted by path (parents
// first), numeric owners, permission bits, device nodes, FIFOs, symbolic
// and hard links, extended attributes (security.capability, user.*), all
// times clamped to SOURCE_DATE_EPOCH. The same tree gives the same bytes.
package export

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options control WriteTar.
type Options struct {
	// Epoch clamps every time (SOURCE_DATE_EPOCH).
	Epoch int64
	// Skip lists paths (relative, slash-separated) left out with their
	// contents, e.g. "proc", "sys", "dev" mount points' contents.
	Skip []string
	// Ref, when set, tells where the host already has a regular file's
	// bytes (an offset and size on the package disk, see
	// install.Refs): its entry is then a RefType entry without data,
	// and the host fills them in (Fill).
	Ref func(st *syscall.Stat_t) (off, size int64, ok bool)
}

// RefType is the type of an entry for a regular file whose bytes the
// host has: its link name is "OFFSET:SIZE" on the package disk, its size
// 0. POSIX leaves the types 'A' to 'Z' to vendors; this one is never in
// a canonical tar. (A PAX record said it before: a header block and a
// record block more per file, written and read under emulation.)
const RefType = 'R'

// WriteTar writes the tree under root to w, ending with the tar
// end-of-archive.
func WriteTar(w io.Writer, root string, opts Options) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	clamp := time.Unix(opts.Epoch, 0).UTC()
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		for _, n := range names {
			p := filepath.Join(dir, n)
			r := n
			if rel != "" {
				r = rel + "/" + n
			}
			if slices.Contains(opts.Skip, r) {
				continue
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			h := &tar.Header{
				Name: r, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
				ModTime: minTime(fi.ModTime(), clamp), Format: tar.FormatPAX,
			}
			if xa, err := xattrs(p); err != nil {
				return err
			} else if len(xa) > 0 {
				h.PAXRecords = xa
			}
			m := fi.Mode()
			isDir := false
			switch {
			case m.IsRegular():
				key := inode{uint64(st.Dev), st.Ino}
				if st.Nlink > 1 {
					if first, ok := links[key]; ok {
						h.Typeflag, h.Linkname = tar.TypeLink, first
						break
					}
					links[key] = r
				}
				h.Typeflag, h.Size = tar.TypeReg, fi.Size()
				if opts.Ref == nil {
					break
				}
				if off, size, ok := opts.Ref(st); ok {
					h.Typeflag, h.Size = RefType, 0
					h.Linkname = strconv.FormatInt(off, 10) + ":" + strconv.FormatInt(size, 10)
				}
			case m.IsDir():
				h.Typeflag, h.Name = tar.TypeDir, r+"/"
				isDir = true
			case m&fs.ModeSymlink != 0:
				t, err := os.Readlink(p)
				if err != nil {
					return err
				}
				h.Typeflag, h.Linkname = tar.TypeSymlink, t
			case m&fs.ModeNamedPipe != 0:
				h.Typeflag = tar.TypeFifo
			case m&fs.ModeDevice != 0:
				h.Typeflag = tar.TypeBlock
				if m&fs.ModeCharDevice != 0 {
					h.Typeflag = tar.TypeChar
				}
				h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
			case m&fs.ModeSocket != 0:
				continue // sockets are not files to ship
			default:
				return fmt.Errorf("%s: unsupported file type %v", p, m.Type())
			}
			if err := tw.WriteHeader(h); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if h.Typeflag == tar.TypeReg && h.Size > 0 {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				n, err := io.Copy(tw, f)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				if n != h.Size {
					return fmt.Errorf("%s: changed while exported", p)
				}
			}
			if isDir {
				if err := walk(p, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return tw.Close()
}

func minTime(t, clamp time.Time) time.Time {
	t = t.UTC().Truncate(time.Second)
	if t.After(clamp) {
		return clamp
	}
	return t
}

// xattrs reads a file's extended attributes as PAX records
// (SCHILY.xattr.NAME), skipping security.selinux.
func xattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return nil, nil // no xattrs, or a filesystem without them
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, nil
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		vs, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			continue
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		out["SCHILY.xattr."+name] = string(v[:vs])
	}
	return out, nil
}
