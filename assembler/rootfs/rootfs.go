// Package rootfs turns a root filesystem tar from elsewhere (docker
// export, podman export, a flattened OCI image, any tarball of a tree)
// into the canonical rootfs tar alpinist's outputs are made from:
// entries in depth-first order with sorted names (parents first), a hard
// link always after the file it names, numeric owners only, PAX format,
// times clamped to an epoch. The input is spooled to a temporary file
// once (for random access), never held in memory.
package rootfs

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Decompress returns r uncompressed when it starts with a gzip, zstd or
// xz magic number, else r itself (a plain tar).
func Decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(6)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return gzip.NewReader(br)
	case len(magic) >= 4 && string(magic[:4]) == "\x28\xb5\x2f\xfd":
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case len(magic) >= 6 && string(magic) == "\xfd7zXZ\x00":
		return xz.NewReader(br)
	}
	return br, nil
}

type entry struct {
	h    *tar.Header
	data int64 // offset of the data in the spool
}

// Stats describe the canonical tar written.
type Stats struct {
	Entries int
	// Newest is the newest modification time of the input (before
	// clamping): a date for outputs when no SOURCE_DATE_EPOCH is given.
	Newest time.Time
}

// Canonicalize reads the tar stream r and writes the canonical rootfs tar
// to w, spooling r in a temporary file in tmpDir. A zero epoch leaves
// the times as they are.
func Canonicalize(w io.Writer, r io.Reader, epoch time.Time, tmpDir string) (Stats, error) {
	spool, err := os.CreateTemp(tmpDir, ".alpinist-rootfs-*.tar")
	if err != nil {
		return Stats{}, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	if _, err := io.Copy(spool, r); err != nil {
		return Stats{}, fmt.Errorf("rootfs: reading the input: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return Stats{}, err
	}
	// Index the headers; a later entry of the same name replaces an
	// earlier one, as tar extraction does.
	cr := &countingSeeker{f: spool}
	tr := tar.NewReader(cr)
	byName := map[string]*entry{}
	var st Stats
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Stats{}, fmt.Errorf("rootfs: input tar: %w", err)
		}
		name, err := clean(h.Name)
		if err != nil {
			return Stats{}, err
		}
		if name == "" {
			continue // the root itself
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		case tar.TypeXGlobalHeader:
			continue
		default:
			return Stats{}, fmt.Errorf("rootfs: %s: tar entry type %q is not a file system object", h.Name, h.Typeflag)
		}
		if h.ModTime.After(st.Newest) {
			st.Newest = h.ModTime
		}
		h.Name = name
		byName[name] = &entry{h: h, data: cr.pos}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.SortFunc(names, comparePaths)
	// Hard links: the first name of a group in the output order carries
	// the file; the others link to it.
	carrier := map[string]string{} // link target as given -> name that carries the data
	for _, n := range names {
		e := byName[n]
		if e.h.Typeflag != tar.TypeLink {
			continue
		}
		target, err := clean(e.h.Linkname)
		if err != nil {
			return Stats{}, err
		}
		te, ok := byName[target]
		if !ok || te.h.Typeflag == tar.TypeLink || te.h.Typeflag == tar.TypeDir {
			return Stats{}, fmt.Errorf("rootfs: %s: hard link to %s, which is not a file in the tar", n, e.h.Linkname)
		}
		c, ok := carrier[target]
		if !ok {
			c = target
		}
		if comparePaths(n, c) < 0 {
			c = n
		}
		carrier[target] = c
	}
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, n := range names {
		e := byName[n]
		// Parents the input lacks are made (0755, root's).
		for _, d := range parents(n) {
			if !dirs[d] {
				if _, listed := byName[d]; !listed {
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: clampTime(st.Newest, epoch), Format: tar.FormatPAX}); err != nil {
						return Stats{}, err
					}
					st.Entries++
				}
				dirs[d] = true
			}
		}
		h := *e.h
		data := e.data
		switch {
		case h.Typeflag == tar.TypeLink:
			target, _ := clean(h.Linkname)
			if c := carrier[target]; c == n {
				// This name carries the data of the file it linked to.
				te := byName[target]
				h = *te.h
				h.Name = n
				data = te.data
			} else {
				h.Linkname = c
			}
		default:
			if c, ok := carrier[n]; ok && c != n {
				// A link earlier in the order carries this file.
				h = tar.Header{Typeflag: tar.TypeLink, Name: n, Linkname: c, ModTime: e.h.ModTime}
			}
		}
		if err := writeEntry(tw, &h, spool, data, epoch); err != nil {
			return Stats{}, err
		}
		if h.Typeflag == tar.TypeDir {
			dirs[n] = true
		}
		st.Entries++
	}
	return st, tw.Close()
}

func writeEntry(tw *tar.Writer, h *tar.Header, spool *os.File, data int64, epoch time.Time) error {
	out := tar.Header{
		Typeflag: h.Typeflag, Name: h.Name, Linkname: h.Linkname, Mode: h.Mode & 0o7777,
		Uid: h.Uid, Gid: h.Gid, ModTime: clampTime(h.ModTime, epoch).Truncate(time.Second),
		Devmajor: h.Devmajor, Devminor: h.Devminor, Format: tar.FormatPAX,
	}
	if out.Typeflag == tar.TypeRegA {
		out.Typeflag = tar.TypeReg
	}
	if out.Typeflag == tar.TypeDir {
		out.Name += "/"
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if out.PAXRecords == nil {
				out.PAXRecords = map[string]string{}
			}
			out.PAXRecords[k] = v
		}
	}
	if out.Typeflag == tar.TypeReg {
		out.Size = h.Size
	}
	if err := tw.WriteHeader(&out); err != nil {
		return fmt.Errorf("rootfs: %s: %w", h.Name, err)
	}
	if out.Size > 0 {
		if _, err := io.Copy(tw, io.NewSectionReader(spool, data, out.Size)); err != nil {
			return fmt.Errorf("rootfs: %s: %w", h.Name, err)
		}
	}
	return nil
}

func clampTime(t, epoch time.Time) time.Time {
	if !epoch.IsZero() && (t.After(epoch) || t.IsZero()) {
		return epoch.UTC()
	}
	return t.UTC()
}

// clean is a tar name as a clean relative path ("" for the root).
func clean(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimPrefix(n, "/")
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." {
		return "", nil
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("rootfs: %q leaves the root", name)
	}
	return c, nil
}

// parents are a path's parent directories, outermost first.
func parents(p string) []string {
	var out []string
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	return out
}

// comparePaths orders paths depth-first with sorted names: a directory,
// then everything in it, then its next sibling.
func comparePaths(a, b string) int {
	for a != "" && b != "" {
		ca, ra, _ := strings.Cut(a, "/")
		cb, rb, _ := strings.Cut(b, "/")
		if c := strings.Compare(ca, cb); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	return strings.Compare(a, b)
}

// countingSeeker tracks the position in the spool, so the tar reader's
// position after a header is the entry's data offset.
type countingSeeker struct {
	f   *os.File
	pos int64
}

func (c *countingSeeker) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.pos += int64(n)
	return n, err
}

func (c *countingSeeker) Seek(off int64, whence int) (int64, error) {
	p, err := c.f.Seek(off, whence)
	if err == nil {
		c.pos = p
	}
	return p, err
}
