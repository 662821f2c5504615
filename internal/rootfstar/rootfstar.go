// Package rootfstar unpacks a gzip'ed tar of a root filesystem (an
// Alpine minirootfs) into a directory: for the agent's apk-tools
// installer and for tests that run Alpine's real apk.
package rootfstar

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// LiveTar is the rootfs a live ISO carries, gzip'ed, at its root: the
// iso output writes it, the agent's live boot unpacks it.
const LiveTar = "rootfs.tar.gz"

// Unpack unpacks a gzip'ed tar of a root filesystem (an Alpine
// minirootfs) into dir, keeping modes (setuid, setgid and sticky too),
// links and owners (when permitted), refusing paths that leave dir.
func Unpack(r io.Reader, dir string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.Trim(h.Name, "./") == "" {
			continue // the root itself
		}
		name, err := localPath(h.Name)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode & 0o777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if err = errors.Join(err, f.Close()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.Remove(p)
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			t, err := localPath(h.Linkname)
			if err != nil {
				return err
			}
			os.Remove(p)
			if err := os.Link(filepath.Join(dir, t), p); err != nil {
				return err
			}
		default:
			continue
		}
		// A symlink has no mode of its own, and a hard link shares its
		// file's inode: setting the link entry's mode would clobber it.
		if h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeLink {
			os.Lchown(p, h.Uid, h.Gid)
			os.Chmod(p, mode|setBits(h.Mode))
		}
	}
}

func setBits(m int64) os.FileMode {
	var b os.FileMode
	if m&0o4000 != 0 {
		b |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		b |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		b |= os.ModeSticky
	}
	return b
}

// localPath accepts a clean relative path inside the root ("./" prefix
// and trailing "/" allowed), as tar entries of a root filesystem have.
func localPath(p string) (string, error) {
	q := strings.TrimSuffix(strings.TrimPrefix(p, "./"), "/")
	if q == "" || path.Clean(q) != q || !filepath.IsLocal(q) {
		return "", fmt.Errorf("unsafe path %q", p)
	}
	return q, nil
}
