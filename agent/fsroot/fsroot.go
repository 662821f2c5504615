// Package fsroot does file system work inside a target root directory the
// way a chrooted process would: every path is resolved inside the root
// (openat2 RESOLVE_IN_ROOT), so a symlink in the target, absolute or
// relative, never leads outside it. The installer and the configuration
// step of the build VM write the target through it.
package fsroot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Root is the target root directory, opened once. Paths given to its
// methods are relative to it ("etc/passwd"; a leading "/" is allowed).
type Root struct {
	fd   int
	path string
}

// Open opens (and makes, when missing) the root directory p.
func Open(p string) (*Root, error) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(p, unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return &Root{fd: fd, path: p}, nil
}

// Close releases the root.
func (r *Root) Close() { unix.Close(r.fd) }

// Path is the root's path.
func (r *Root) Path() string { return r.path }

// Dir opens the directory p (relative to the root, "." for the root) as
// an O_PATH descriptor.
func (r *Root) Dir(p string) (int, error) {
	p = rel(p)
	fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{
		Flags:   unix.O_DIRECTORY | unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("/%s: %w", p, err)
	}
	return fd, nil
}

// Parent opens p's parent directory and returns it with p's base name.
func (r *Root) Parent(p string) (int, string, error) {
	p = rel(p)
	d := path.Dir(p)
	fd, err := r.Dir(d)
	return fd, path.Base(p), err
}

// Mkdir makes directory p (its parent must exist) with mode and owner.
// When p already is a directory (or a symlink to one) it is left as it
// is: the first package to make a directory sets its mode, as with apk.
func (r *Root) Mkdir(p string, mode uint32, uid, gid int) error {
	pfd, name, err := r.Parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	err = unix.Mkdirat(pfd, name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		fd, err := r.Dir(p)
		if err != nil {
			return fmt.Errorf("/%s exists and is not a directory", p)
		}
		unix.Close(fd)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mkdir /%s: %w", p, err)
	}
	return SetAttrs(pfd, name, mode, uid, gid)
}

// SetAttrs sets the owner, then the mode (chown clears setuid and
// setgid), of name in the directory dirfd, not following a symlink.
func SetAttrs(dirfd int, name string, mode uint32, uid, gid int) error {
	if err := unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	// chmod after chown: chown clears setuid/setgid.
	if err := unix.Fchmodat(dirfd, name, mode&0o7777, 0); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	return nil
}

// Remove removes name in dirfd (not a non-empty directory).
func (r *Root) Remove(dirfd int, name string) {
	if err := unix.Unlinkat(dirfd, name, 0); errors.Is(err, unix.EISDIR) {
		unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	}
}

// Range is N bytes of File at Off: a WriteFile source the kernel copies
// (sendfile), never read through the process. Under emulation that is
// one copy, emulated, instead of three.
type Range struct {
	File   *os.File
	Off, N int64
}

// Read reads the range, for a reader that is not WriteFile.
func (rg *Range) Read(p []byte) (int, error) {
	if rg.N <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > rg.N {
		p = p[:rg.N]
	}
	n, err := rg.File.ReadAt(p, rg.Off)
	rg.Off += int64(n)
	rg.N -= int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// sendTo copies the range to fd in the kernel.
func (rg *Range) sendTo(fd int) error {
	off := rg.Off
	for left := rg.N; left > 0; {
		n, err := unix.Sendfile(fd, int(rg.File.Fd()), &off, int(min(left, 1<<30)))
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return fmt.Errorf("copying %d bytes from %s at %d: %w", rg.N, rg.File.Name(), rg.Off, err)
		}
		if n == 0 {
			return fmt.Errorf("copying %d bytes from %s at %d: %w", rg.N, rg.File.Name(), rg.Off, io.ErrUnexpectedEOF)
		}
		left -= int64(n)
	}
	return nil
}

// WriteFile writes a regular file, replacing what was there. A free
// name is created in place, resolved inside the root (openat2 with
// O_EXCL: no parent descriptor, no rename: three system calls fewer per
// file, each emulated under TCG); a taken one is written under a
// temporary name and renamed over it. A *Range source is copied in the
// kernel.
func (r *Root) WriteFile(p string, src io.Reader, mode uint32, uid, gid int, xattrs map[string]string, mtime int64) error {
	return r.WriteFileStat(p, src, mode, uid, gid, xattrs, mtime, nil)
}

// WriteFileStat is WriteFile that also fills st (when not nil) with the
// new file's status, as lstat would give it after the write, from the
// descriptor or the parent directory it has at hand (one system call
// instead of an lstat's three).
func (r *Root) WriteFileStat(p string, src io.Reader, mode uint32, uid, gid int, xattrs map[string]string, mtime int64, st *unix.Stat_t) error {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOFOLLOW
	p = rel(p)
	fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{Flags: flags, Mode: 0o600, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err == nil {
		if err := fill(fd, p, src, mode, uid, gid, xattrs, mtime, st); err != nil {
			if pfd, name, perr := r.Parent(p); perr == nil {
				unix.Unlinkat(pfd, name, 0)
				unix.Close(pfd)
			}
			return fmt.Errorf("/%s: %w", p, err)
		}
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create /%s: %w", p, err)
	}
	pfd, name, err := r.Parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp := ".apk." + name
	if len(tmp) > 250 {
		tmp = tmp[:250]
	}
	fd, err = unix.Openat(pfd, tmp, flags, 0o600)
	if errors.Is(err, unix.EEXIST) {
		// Left by an earlier failure: removed only then.
		unix.Unlinkat(pfd, tmp, 0)
		fd, err = unix.Openat(pfd, tmp, flags, 0o600)
	}
	if err != nil {
		return fmt.Errorf("create /%s: %w", p, err)
	}
	err = fill(fd, p, src, mode, uid, gid, xattrs, mtime, nil)
	if err == nil {
		err = unix.Renameat(pfd, tmp, pfd, name)
	}
	if err == nil && st != nil {
		// The rename changed the inode's ctime.
		err = unix.Fstatat(pfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		return fmt.Errorf("/%s: %w", p, err)
	}
	return nil
}

// fill writes a new file's content, owner, mode, xattrs and times, fills
// st (when not nil) with its status, and closes it.
func fill(fd int, p string, src io.Reader, mode uint32, uid, gid int, xattrs map[string]string, mtime int64, st *unix.Stat_t) error {
	f := os.NewFile(uintptr(fd), p)
	var err error
	if rg, ok := src.(*Range); ok {
		err = rg.sendTo(fd)
	} else {
		_, err = io.Copy(f, src)
	}
	if err == nil {
		err = f.Chown(uid, gid)
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
		var ts []unix.Timespec
		if ts, err = times(mtime); err == nil {
			err = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
		}
	}
	if err == nil && st != nil {
		err = unix.Fstat(fd, st)
	}
	return errors.Join(err, f.Close())
}

// Symlink makes (or replaces) a symbolic link.
func (r *Root) Symlink(p, target string, uid, gid int, mtime int64) error {
	pfd, name, err := r.Parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	r.Remove(pfd, name)
	if err := unix.Symlinkat(target, pfd, name); err != nil {
		return fmt.Errorf("symlink /%s: %w", p, err)
	}
	unix.Fchownat(pfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	if ts, err := times(mtime); err == nil {
		unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// times are utimensat's access and modification times, both mtime
// (TimeToTimespec: Sec is 32 bits on 32-bit arches, an error out of
// their range).
func times(mtime int64) ([]unix.Timespec, error) {
	t, err := unix.TimeToTimespec(time.Unix(mtime, 0))
	if err != nil {
		return nil, fmt.Errorf("mtime %d: %w", mtime, err)
	}
	return []unix.Timespec{t, t}, nil
}

// Link makes p a hard link to the existing file target.
func (r *Root) Link(p, target string) error {
	tfd, tname, err := r.Parent(target)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	pfd, name, err := r.Parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	r.Remove(pfd, name)
	if err := unix.Linkat(tfd, tname, pfd, name, 0); err != nil {
		return fmt.Errorf("link /%s to /%s: %w", p, target, err)
	}
	return nil
}

// Mknod makes a device node or FIFO.
func (r *Root) Mknod(p string, mode uint32, dev int, uid, gid int) error {
	pfd, name, err := r.Parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	r.Remove(pfd, name)
	if err := unix.Mknodat(pfd, name, mode, dev); err != nil {
		return fmt.Errorf("mknod /%s: %w", p, err)
	}
	return SetAttrs(pfd, name, mode, uid, gid)
}

// rel makes p relative to the root.
func rel(p string) string {
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return "."
	}
	return p
}

// Lstat gives what is at p, not following a final symlink.
func (r *Root) Lstat(p string) (*unix.Stat_t, error) {
	pfd, name, err := r.Parent(p)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: "/" + rel(p), Err: err}
	}
	return &st, nil
}

// MkdirAll makes directory p and its missing parents; the directories it
// makes get mode and owner, existing ones are left as they are.
func (r *Root) MkdirAll(p string, mode uint32, uid, gid int) error {
	p = rel(p)
	if p == "." {
		return nil
	}
	if fd, err := r.Dir(p); err == nil {
		unix.Close(fd)
		return nil
	}
	if err := r.MkdirAll(path.Dir(p), mode, uid, gid); err != nil {
		return err
	}
	return r.Mkdir(p, mode, uid, gid)
}

// Chown sets the owner of p (not following a final symlink); -1 keeps
// an id.
func (r *Root) Chown(p string, uid, gid int) error {
	pfd, name, err := r.Parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Fchownat(pfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown /%s: %w", rel(p), err)
	}
	return nil
}

// Chmod sets the permission bits (07777) of p, following a final
// symlink inside the root.
func (r *Root) Chmod(p string, mode uint32) error {
	fd, err := unix.Openat2(r.fd, rel(p), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("chmod /%s: %w", rel(p), err)
	}
	defer unix.Close(fd)
	// fchmod does not take an O_PATH descriptor; its /proc link does.
	if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode&0o7777); err != nil {
		return fmt.Errorf("chmod /%s: %w", rel(p), err)
	}
	return nil
}

// Open opens the file p for reading.
func (r *Root) Open(p string) (*os.File, error) {
	fd, err := unix.Openat2(r.fd, rel(p), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/" + rel(p), Err: err}
	}
	return os.NewFile(uintptr(fd), "/"+rel(p)), nil
}

// ReadFile reads the (configuration-sized: at most 16 MiB) file p.
func (r *Root) ReadFile(p string) ([]byte, error) {
	f, err := r.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 16<<20+1))
	if err == nil && len(data) > 16<<20 {
		err = fmt.Errorf("/%s: larger than 16 MiB", rel(p))
	}
	return data, err
}
