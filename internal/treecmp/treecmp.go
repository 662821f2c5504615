// Package treecmp compares a directory tree with the tar it was unpacked
// from (by umoci, podman, an OCI runtime...): the same entries, types,
// permission bits, file contents, symlink targets and hard links. Owners
// and times are not compared: unpackers run rootless here.
package treecmp

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Compare reads the tar stream r and returns "" when dir holds exactly
// its tree, else a description of the first differences. Device nodes,
// which a rootless unpacker cannot make, may be absent or empty files.
func Compare(r io.Reader, dir string) string {
	var diffs []string
	add := func(format string, a ...any) {
		if len(diffs) < 20 {
			diffs = append(diffs, fmt.Sprintf(format, a...))
		}
	}
	seen := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Sprintf("tar: %v", err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" || name == "." {
			continue
		}
		seen[name] = true
		p := filepath.Join(dir, name)
		st, err := os.Lstat(p)
		if err != nil {
			if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
				continue
			}
			add("%s: missing (%v)", name, err)
			continue
		}
		want := map[byte]fs.FileMode{tar.TypeDir: fs.ModeDir, tar.TypeReg: 0, tar.TypeSymlink: fs.ModeSymlink, tar.TypeLink: 0,
			tar.TypeChar: fs.ModeDevice | fs.ModeCharDevice, tar.TypeBlock: fs.ModeDevice, tar.TypeFifo: fs.ModeNamedPipe}[h.Typeflag]
		if st.Mode().Type() != want {
			// A rootless unpacker (umoci) makes a device node an empty
			// file, as it cannot mknod.
			if (h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock) && st.Mode().IsRegular() && st.Size() == 0 {
				continue
			}
			add("%s: type %v, want %v", name, st.Mode().Type(), want)
			continue
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			if t, _ := os.Readlink(p); t != h.Linkname {
				add("%s: symlink to %q, want %q", name, t, h.Linkname)
			}
			continue
		case tar.TypeLink:
			other, err := os.Lstat(filepath.Join(dir, strings.TrimPrefix(h.Linkname, "./")))
			if err != nil || !os.SameFile(st, other) {
				add("%s: not a hard link of %s", name, h.Linkname)
			}
			continue
		case tar.TypeReg:
			if d := sameContent(tr, p); d != "" {
				add("%s: %s", name, d)
			}
		}
		if got := unixPerm(st.Mode()); got != h.Mode&0o7777 {
			add("%s: mode %04o, want %04o", name, got, h.Mode&0o7777)
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "." && !seen[filepath.ToSlash(rel)] {
			add("%s: not in the tar", rel)
		}
		return nil
	})
	if err != nil {
		add("walk: %v", err)
	}
	slices.Sort(diffs)
	return strings.Join(diffs, "\n")
}

func sameContent(r io.Reader, p string) string {
	f, err := os.Open(p)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	a, b := sha256.New(), sha256.New()
	na, _ := io.Copy(a, r)
	nb, _ := io.Copy(b, f)
	if na != nb || !bytes.Equal(a.Sum(nil), b.Sum(nil)) {
		return fmt.Sprintf("content differs (%d bytes, want %d)", nb, na)
	}
	return ""
}

func unixPerm(m fs.FileMode) int64 {
	p := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		p |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		p |= syscall.S_ISVTX
	}
	return p
}

// Sums is the sha256 of every regular file under dir, by slash-separated
// relative path, but those skip says to leave out: to compare two
// builds' outputs.
func Sums(dir string, skip func(rel string) bool) (map[string]string, error) {
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel) {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		sums[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	return sums, err
}
