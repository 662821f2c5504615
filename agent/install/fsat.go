package install

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// root is the target root directory, opened once. Every path is resolved
// inside it (openat2 RESOLVE_IN_ROOT): a symlink in the target, absolute
// or relative, never leads outside, as if the installer ran chrooted.
type root struct {
	fd   int
	path string
}

func openRoot(p string) (*root, error) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(p, unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return &root{fd: fd, path: p}, nil
}

func (r *root) close() { unix.Close(r.fd) }

// dir opens the directory p (relative to the root, "." for the root).
func (r *root) dir(p string) (int, error) {
	fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{
		Flags:   unix.O_DIRECTORY | unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("/%s: %w", p, err)
	}
	return fd, nil
}

// parent opens p's parent directory and returns it with p's base name.
func (r *root) parent(p string) (int, string, error) {
	d := path.Dir(p)
	fd, err := r.dir(d)
	return fd, path.Base(p), err
}

// mkdir makes directory p (its parent must exist) with mode and owner.
// When p already is a directory (or a symlink to one) it is left as it
// is: the first package to make a directory sets its mode, as with apk.
func (r *root) mkdir(p string, mode uint32, uid, gid int) error {
	pfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	err = unix.Mkdirat(pfd, name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		fd, err := r.dir(p)
		if err != nil {
			return fmt.Errorf("/%s exists and is not a directory", p)
		}
		unix.Close(fd)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mkdir /%s: %w", p, err)
	}
	return setAttrs(pfd, name, mode, uid, gid)
}

func setAttrs(dirfd int, name string, mode uint32, uid, gid int) error {
	if err := unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	// chmod after chown: chown clears setuid/setgid.
	if err := unix.Fchmodat(dirfd, name, mode&0o7777, 0); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	return nil
}

// remove removes whatever is at p (not a non-empty directory).
func (r *root) remove(dirfd int, name string) {
	if err := unix.Unlinkat(dirfd, name, 0); errors.Is(err, unix.EISDIR) {
		unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	}
}

// writeFile writes a regular file through a temporary name and a rename,
// replacing what was there.
func (r *root) writeFile(p string, src io.Reader, mode uint32, uid, gid int, xattrs map[string]string, mtime int64) error {
	pfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp := ".apk." + name
	if len(tmp) > 250 {
		tmp = tmp[:250]
	}
	unix.Unlinkat(pfd, tmp, 0)
	fd, err := unix.Openat(pfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create /%s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	_, err = io.Copy(f, src)
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Chmod(os.FileMode(mode & 0o777))
	}
	if err == nil {
		err = unix.Fchmod(fd, mode&0o7777)
	}
	for k, v := range xattrs {
		if err == nil {
			if e := unix.Fsetxattr(fd, k, []byte(v), 0); e != nil {
				err = fmt.Errorf("xattr %s: %w", k, e)
			}
		}
	}
	if err == nil {
		ts := []unix.Timespec{{Sec: mtime}, {Sec: mtime}}
		err = unix.UtimesNanoAt(pfd, tmp, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = unix.Renameat(pfd, tmp, pfd, name)
	}
	if err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		return fmt.Errorf("/%s: %w", p, err)
	}
	return nil
}

// symlink makes (or replaces) a symbolic link.
func (r *root) symlink(p, target string, uid, gid int, mtime int64) error {
	pfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	r.remove(pfd, name)
	if err := unix.Symlinkat(target, pfd, name); err != nil {
		return fmt.Errorf("symlink /%s: %w", p, err)
	}
	unix.Fchownat(pfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	unix.UtimesNanoAt(pfd, name, []unix.Timespec{{Sec: mtime}, {Sec: mtime}}, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

// link makes p a hard link to the existing file target.
func (r *root) link(p, target string) error {
	tfd, tname, err := r.parent(target)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	pfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	r.remove(pfd, name)
	if err := unix.Linkat(tfd, tname, pfd, name, 0); err != nil {
		return fmt.Errorf("link /%s to /%s: %w", p, target, err)
	}
	return nil
}

// mknod makes a device node or FIFO.
func (r *root) mknod(p string, mode uint32, dev int, uid, gid int) error {
	pfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	r.remove(pfd, name)
	if err := unix.Mknodat(pfd, name, mode, dev); err != nil {
		return fmt.Errorf("mknod /%s: %w", p, err)
	}
	return setAttrs(pfd, name, mode, uid, gid)
}
