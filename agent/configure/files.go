package configure

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/fsroot"
	"github.com/alpinist/alpinist/agent/pkgdisk"
)

// Trees gives the file trees of the package disk (pkgdisk.Reader).
type Trees interface {
	NextFile() (int, string, *tar.Header, io.Reader, error)
}

// treeReader reads the trees with one entry of lookahead.
type treeReader struct {
	t    Trees
	i    int
	rel  string
	h    *tar.Header
	body io.Reader
	err  error
	read bool
}

func (tr *treeReader) peek() (int, error) {
	if tr.t == nil {
		return -1, io.EOF
	}
	if !tr.read {
		tr.i, tr.rel, tr.h, tr.body, tr.err = tr.t.NextFile()
		tr.read = true
	}
	return tr.i, tr.err
}

// files applies the spec's files in order. Copied trees and contents come
// from trees; owners are resolved in the target's account files (after
// the users are made). A copied file replaces what is at its path; a
// directory that exists keeps its mode and owner (a directory entry, or
// a mode/owner-only entry, sets them).
func files(r *fsroot.Root, list []pkgdisk.File, trees Trees, epoch int64) error {
	tr := &treeReader{t: trees}
	db, err := readAccounts(r.Path())
	if err != nil {
		return err
	}
	for i, f := range list {
		uid, gid, err := db.owner(f.Owner)
		if err != nil {
			return fmt.Errorf("files: %s: %w", f.Dst, err)
		}
		if err := applyFile(r, tr, i, f, uid, gid, epoch); err != nil {
			return fmt.Errorf("files: %s: %w", f.Dst, err)
		}
	}
	if _, err := tr.peek(); err != io.EOF {
		return fmt.Errorf("files: the package disk has more file trees than the spec (%v)", err)
	}
	return nil
}

func applyFile(r *fsroot.Root, tr *treeReader, i int, f pkgdisk.File, uid, gid int, epoch int64) error {
	dst := strings.TrimPrefix(path.Clean(f.Dst), "/")
	if dst == "" {
		dst = "."
	}
	if dst != "." {
		if err := r.MkdirAll(path.Dir(dst), 0o755, 0, 0); err != nil {
			return err
		}
	}
	switch f.Kind {
	case "copy", "content":
		n := 0
		for {
			j, err := tr.peek()
			if err == io.EOF || (err == nil && j != i) {
				break
			}
			if err != nil {
				return err
			}
			tr.read = false
			if err := treeEntry(r, path.Join(dst, tr.rel), tr.h, tr.body, uid, gid, epoch); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return errors.New("its content is missing from the package disk")
		}
		return nil
	case "symlink":
		return r.Symlink(dst, f.Target, uid, gid, epoch)
	case "hardlink":
		if err := r.Link(dst, strings.TrimPrefix(f.Target, "/")); err != nil {
			return err
		}
	case "directory":
		if err := r.MkdirAll(dst, 0o755, uid, gid); err != nil {
			return err
		}
	case "permissions":
		if _, err := r.Lstat(dst); err != nil {
			return fmt.Errorf("nothing there to change the mode or owner of: %w", err)
		}
	default:
		return fmt.Errorf("unknown kind %q", f.Kind)
	}
	// hardlink, directory, permissions: the owner and mode given.
	if f.Owner != "" || f.Kind == "directory" {
		if err := r.Chown(dst, uid, gid); err != nil {
			return err
		}
	}
	if f.Mode >= 0 {
		return r.Chmod(dst, uint32(f.Mode))
	}
	return nil
}

// treeEntry writes one entry of a copied tree at p.
func treeEntry(r *fsroot.Root, p string, h *tar.Header, body io.Reader, uid, gid int, epoch int64) error {
	mode := uint32(h.Mode) & 0o7777
	switch h.Typeflag {
	case tar.TypeDir:
		if fd, err := r.Dir(p); err == nil {
			unix.Close(fd) // an existing directory is left as it is
			return nil
		}
		return r.Mkdir(p, mode, uid, gid)
	case tar.TypeReg:
		if p == "." {
			return errors.New("a file cannot replace the root directory")
		}
		return r.WriteFile(p, body, mode, uid, gid, nil, epoch)
	case tar.TypeSymlink:
		return r.Symlink(p, h.Linkname, uid, gid, epoch)
	}
	return fmt.Errorf("%s: unexpected entry type %q on the package disk", h.Name, h.Typeflag)
}

// owner resolves "user", "user:group", ":group" or "uid:gid" ("" is
// root); a user alone means its primary group too.
func (db *accountDB) owner(spec string) (int, int, error) {
	if spec == "" {
		return 0, 0, nil
	}
	user, group, hasGroup := strings.Cut(spec, ":")
	uid, gid := 0, 0
	if user != "" {
		if n, err := strconv.Atoi(user); err == nil {
			uid = n
		} else {
			u := db.user(user)
			if u == nil {
				return 0, 0, fmt.Errorf("owner %s: no user %s in the target's /etc/passwd", spec, user)
			}
			uid, _ = strconv.Atoi(u[2])
			gid, _ = strconv.Atoi(u[3])
		}
	}
	if hasGroup {
		if n, err := strconv.Atoi(group); err == nil {
			gid = n
		} else {
			g := db.group(group)
			if g == nil {
				return 0, 0, fmt.Errorf("owner %s: no group %s in the target's /etc/group", spec, group)
			}
			gid, _ = strconv.Atoi(g[2])
		}
	}
	return uid, gid, nil
}
