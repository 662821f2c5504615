package pkgdisk

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// filesDir holds the trees of the configuration's copy and content
// entries: files/N is entry N itself, files/N/REL what is below it.
const filesDir = "files/"

func treeName(i int, rel string) string {
	n := filesDir + strconv.Itoa(i)
	if rel != "" && rel != "." {
		n += "/" + rel
	}
	return n
}

func (w *Writer) startTree(i int) error {
	if w.next != len(w.m.Packages) {
		return errors.New("pkgdisk: file trees come after every package")
	}
	if i < w.tree || i >= len(w.m.Config.Files) {
		return fmt.Errorf("pkgdisk: file tree %d out of order", i)
	}
	w.tree = i + 1
	return w.afterPackages()
}

// AddContent writes the content of the configuration's file entry i.
func (w *Writer) AddContent(i int, content string, mode int) error {
	if err := w.startTree(i); err != nil {
		return err
	}
	if mode < 0 {
		mode = 0o644
	}
	return w.entry(&tar.Header{Typeflag: tar.TypeReg, Name: treeName(i, ""), Mode: int64(mode), Size: int64(len(content))}, strings.NewReader(content))
}

// AddTree writes the host file or directory src for the configuration's
// copy entry i, in lexical order, symlinks as symlinks. Modes are set
// here: a file gets mode, or when mode < 0 0755 if its owner may execute
// it on the host and 0644 otherwise (the host's umask never shows); a
// directory gets dirMode, or 0755.
func (w *Writer) AddTree(i int, src string, mode, dirMode int) error {
	if err := w.startTree(i); err != nil {
		return err
	}
	if dirMode < 0 {
		dirMode = 0o755
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("files: %w", err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("files: %w", err)
		}
		h := &tar.Header{Name: treeName(i, filepath.ToSlash(rel))}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Mode = tar.TypeDir, int64(dirMode)
			return w.entry(h, nil)
		case fi.Mode()&fs.ModeSymlink != 0:
			if h.Linkname, err = os.Readlink(p); err != nil {
				return fmt.Errorf("files: %w", err)
			}
			h.Typeflag, h.Mode = tar.TypeSymlink, 0o777
			return w.entry(h, nil)
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size, h.Mode = tar.TypeReg, fi.Size(), int64(mode)
			if mode < 0 {
				h.Mode = 0o644
				if fi.Mode()&0o100 != 0 {
					h.Mode = 0o755
				}
			}
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("files: %w", err)
			}
			defer f.Close()
			return w.entry(h, f)
		}
		return fmt.Errorf("files: %s is a %s; only files, directories and symlinks are copied", p, fi.Mode().Type())
	})
}

// entry writes one entry of the disk (owned by root, dated
// SOURCE_DATE_EPOCH), with exactly h.Size bytes of r for a file.
func (w *Writer) entry(h *tar.Header, r io.Reader) error {
	h.ModTime, h.Format = w.mtime, tar.FormatPAX
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("pkgdisk: %s: %w", h.Name, err)
	}
	if r == nil {
		return nil
	}
	n, err := io.Copy(w.tw, io.LimitReader(r, h.Size+1))
	if err == nil && n != h.Size {
		err = fmt.Errorf("%d bytes, expected %d (did it change while being copied?)", n, h.Size)
	}
	if err != nil {
		return fmt.Errorf("pkgdisk: %s: %w", h.Name, err)
	}
	return nil
}

// NextFile returns the next entry of the file trees, after the packages
// have all been read: the configuration file index, the path below the
// entry ("" for the entry itself), its header and content; io.EOF after
// the last.
func (r *Reader) NextFile() (int, string, *tar.Header, io.Reader, error) {
	if r.next < len(r.Manifest.Packages) {
		return 0, "", nil, nil, errors.New("pkgdisk: file trees are read after the packages")
	}
	h, err := r.tr.Next()
	if err != nil {
		return 0, "", nil, nil, err
	}
	rest, ok := strings.CutPrefix(h.Name, filesDir)
	num, rel, _ := strings.Cut(rest, "/")
	i, err := strconv.Atoi(num)
	if !ok || err != nil || i < r.tree || i >= len(r.Manifest.Config.Files) || strconv.Itoa(i) != num {
		return 0, "", nil, nil, fmt.Errorf("pkgdisk: unexpected entry %q among the file trees", h.Name)
	}
	if rel != "" && (path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") || strings.HasPrefix(rel, "/")) {
		return 0, "", nil, nil, fmt.Errorf("pkgdisk: bad path %q among the file trees", h.Name)
	}
	r.tree = i
	return i, rel, h, r.tr, nil
}
