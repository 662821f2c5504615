// Package initramfs writes the build VM's initramfs: a newc cpio archive
// (via u-root's pkg/cpio) holding the agent as /init and the kernel
// modules it loads, written reproducibly: entries sorted, parents first,
// owners root, times zero, inode numbers by position.
package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/internal/counting"

	"github.com/u-root/u-root/pkg/cpio"
)

// Archive collects the entries of an initramfs.
type Archive struct {
	recs map[string]cpio.Record
}

// New returns an empty archive.
func New() *Archive { return &Archive{recs: map[string]cpio.Record{}} }

func clean(name string) (string, error) {
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	if n == "" || n == "." || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("initramfs: bad name %q", name)
	}
	return n, nil
}

func (a *Archive) add(r cpio.Record) error {
	n, err := clean(r.Name)
	if err != nil {
		return err
	}
	if _, dup := a.recs[n]; dup {
		return fmt.Errorf("initramfs: %s added twice", n)
	}
	r.Name = n
	a.recs[n] = r
	return nil
}

// File adds a regular file with permission bits perm.
func (a *Archive) File(name string, perm uint64, data []byte) error {
	return a.add(cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm&0o7777}))
}

// Dir adds a directory (parents of other entries are added as 0755
// directories when not added explicitly).
func (a *Archive) Dir(name string, perm uint64) error {
	return a.add(cpio.Directory(name, perm&0o7777))
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(name, target string) error {
	return a.add(cpio.Symlink(name, target))
}

// CharDev adds a character device node (e.g. dev/console 5:1), so the
// kernel can open the console before devtmpfs is mounted.
func (a *Archive) CharDev(name string, perm, major, minor uint64) error {
	return a.add(cpio.CharDev(name, perm&0o7777, major, minor))
}

// Names lists the entries, sorted.
func (a *Archive) Names() []string {
	var n []string
	for k := range a.recs {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// WriteTo writes the newc archive with its trailer. The same entries give
// the same bytes.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	all := map[string]cpio.Record{}
	for n, r := range a.recs {
		all[n] = r
		for d := path.Dir(n); d != "."; d = path.Dir(d) {
			if _, ok := a.recs[d]; !ok {
				all[d] = cpio.Directory(d, 0o755)
			}
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	// Sorting by path puts every directory before its contents.
	slices.Sort(names)
	cw := &counting.Writer{W: w}
	rw := cpio.Newc.Writer(cw)
	for i, n := range names {
		r := cpio.MakeReproducible(all[n])
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		if err := rw.WriteRecord(r); err != nil {
			return cw.N, fmt.Errorf("initramfs: %s: %w", n, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return cw.N, fmt.Errorf("initramfs: %w", err)
	}
	return cw.N, nil
}

// Bytes is the archive in memory.
func (a *Archive) Bytes() ([]byte, error) {
	var b bytes.Buffer
	_, err := a.WriteTo(&b)
	return b.Bytes(), err
}
