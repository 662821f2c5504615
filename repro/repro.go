// Package repro compares two builds' outputs, file by file, and says
// where they differ: for a tarball (plain or compressed: rootfs, WSL,
// LXC, docker-archive) the first entry whose header or content differs;
// for a qcow2 image the first differing byte of its virtual disk; for any
// other file the first differing byte range. Release engineers use it to
// check that a build reproduces (alpinist compare, make repro).
package repro

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/assembler/qcow2"
	"github.com/alpinist/alpinist/assembler/rootfs"
	"github.com/alpinist/alpinist/internal/treecmp"
)

// Difference is one output that differs between the two builds.
type Difference struct {
	// Path is the output's path, relative to the output directory.
	Path string
	// Detail says where it differs.
	Detail string
}

func (d Difference) String() string { return d.Path + ": " + d.Detail }

// Skip tells which files of an output directory are not outputs: the
// build logs, which hold timings.
func Skip(rel string) bool { return strings.HasSuffix(rel, ".log") }

// Compare compares the output directories a and b (every file but the
// logs) and returns the differences, in path order, and the number of
// files that are the same.
func Compare(a, b string) ([]Difference, int, error) {
	sa, err := treecmp.Sums(a, Skip)
	if err != nil {
		return nil, 0, err
	}
	sb, err := treecmp.Sums(b, Skip)
	if err != nil {
		return nil, 0, err
	}
	paths := slices.Sorted(maps.Keys(sa))
	for p := range sb {
		if _, ok := sa[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var diffs []Difference
	same := 0
	for _, p := range paths {
		ha, inA := sa[p]
		hb, inB := sb[p]
		switch {
		case !inB:
			diffs = append(diffs, Difference{p, "only in " + a})
		case !inA:
			diffs = append(diffs, Difference{p, "only in " + b})
		case ha == hb:
			same++
		default:
			detail, err := Files(filepath.Join(a, p), filepath.Join(b, p))
			if err != nil {
				return nil, 0, fmt.Errorf("%s: %w", p, err)
			}
			diffs = append(diffs, Difference{p, detail})
		}
	}
	return diffs, same, nil
}

// Files says where two files differ ("" when they do not): the first
// differing bytes, or for a tarball or a qcow2 image the first differing
// entry or virtual disk bytes.
func Files(a, b string) (string, error) {
	byteDiff, err := bothFiles(a, b, func(fa, fb *os.File) (string, error) { return readers(fa, fb) })
	if byteDiff == "" || err != nil {
		return byteDiff, err
	}
	name := filepath.Base(a)
	var inner func(fa, fb *os.File) (string, error)
	var same string // what to say when the contents are the same
	switch {
	case strings.HasSuffix(name, ".tar") || strings.Contains(name, ".tar."):
		// The same entries: the difference is in the compression or
		// the padding.
		inner, same = tarballs, "the same tar entries, but "
	case strings.HasSuffix(name, ".qcow2"):
		inner, same = qcow2Files, "the same virtual disk, but the qcow2 files differ: "
	default:
		return byteDiff, nil
	}
	d, err := bothFiles(a, b, inner)
	if err != nil || d != "" {
		return d, err
	}
	return same + byteDiff, nil
}

// bothFiles opens a and b for fn.
func bothFiles(a, b string, fn func(fa, fb *os.File) (string, error)) (string, error) {
	fa, err := os.Open(a)
	if err != nil {
		return "", err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return "", err
	}
	defer fb.Close()
	return fn(fa, fb)
}

// tarballs walks two tarballs in step to the first entry that differs
// ("" when every entry is the same).
func tarballs(fa, fb *os.File) (string, error) {
	ra, err := rootfs.Decompress(fa)
	if err != nil {
		return "", err
	}
	rb, err := rootfs.Decompress(fb)
	if err != nil {
		return "", err
	}
	ta, tb := tar.NewReader(ra), tar.NewReader(rb)
	for i := 1; ; i++ {
		ha, errA := ta.Next()
		hb, errB := tb.Next()
		switch {
		case errA == io.EOF && errB == io.EOF:
			return "", nil
		case errA == io.EOF:
			return fmt.Sprintf("entry %d: %s is only in the second", i, hb.Name), nil
		case errB == io.EOF:
			return fmt.Sprintf("entry %d: %s is only in the first", i, ha.Name), nil
		case errA != nil || errB != nil:
			return fmt.Sprintf("entry %d: the tar cannot be read: %v", i, errors.Join(errA, errB)), nil
		}
		if d := headers(ha, hb); d != "" {
			return fmt.Sprintf("entry %d: %s", i, d), nil
		}
		ca, cb := sha256.New(), sha256.New()
		if _, err := io.Copy(ca, ta); err != nil {
			return "", err
		}
		if _, err := io.Copy(cb, tb); err != nil {
			return "", err
		}
		if !bytes.Equal(ca.Sum(nil), cb.Sum(nil)) {
			return fmt.Sprintf("entry %d: %s: content differs", i, ha.Name), nil
		}
	}
}

// headers says how two tar headers differ ("" when they do not).
func headers(a, b *tar.Header) string {
	if a.Name != b.Name {
		return fmt.Sprintf("%s vs %s", a.Name, b.Name)
	}
	type field struct {
		name string
		a, b any
	}
	for _, f := range []field{
		{"type", string(a.Typeflag), string(b.Typeflag)},
		{"mode", fmt.Sprintf("%#o", a.Mode), fmt.Sprintf("%#o", b.Mode)},
		{"owner", fmt.Sprintf("%d:%d", a.Uid, a.Gid), fmt.Sprintf("%d:%d", b.Uid, b.Gid)},
		{"owner name", a.Uname + ":" + a.Gname, b.Uname + ":" + b.Gname},
		{"size", a.Size, b.Size},
		{"mtime", a.ModTime.UTC(), b.ModTime.UTC()},
		{"link", a.Linkname, b.Linkname},
		{"device", fmt.Sprintf("%d,%d", a.Devmajor, a.Devminor), fmt.Sprintf("%d,%d", b.Devmajor, b.Devminor)},
		{"PAX records", fmt.Sprint(a.PAXRecords), fmt.Sprint(b.PAXRecords)},
	} {
		if f.a != f.b {
			return fmt.Sprintf("%s: %s %v vs %v", a.Name, f.name, f.a, f.b)
		}
	}
	return ""
}

// qcow2Files compares two qcow2 images' virtual disks ("" when they are
// the same).
func qcow2Files(fa, fb *os.File) (string, error) {
	qa, errA := qcow2.NewReader(fa)
	qb, errB := qcow2.NewReader(fb)
	if errA != nil || errB != nil {
		return "", nil // not both readable: compare the files' bytes
	}
	d, err := readers(io.NewSectionReader(qa, 0, qa.Size()), io.NewSectionReader(qb, 0, qb.Size()))
	if d == "" || err != nil {
		return d, err
	}
	return "virtual disk: " + d, nil
}

// readers finds the first range of bytes where two streams differ: its
// start, and its end within the 64 KiB that follow.
func readers(a, b io.Reader) (string, error) {
	const chunk = 1 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	var off int64
	for {
		na, errA := io.ReadFull(a, ba)
		nb, errB := io.ReadFull(b, bb)
		if errA != nil && errA != io.EOF && errA != io.ErrUnexpectedEOF {
			return "", errA
		}
		if errB != nil && errB != io.EOF && errB != io.ErrUnexpectedEOF {
			return "", errB
		}
		n := min(na, nb)
		if i := firstDiff(ba[:n], bb[:n]); i >= 0 {
			end := i
			for j := i; j < min(n, i+64<<10); j++ {
				if ba[j] != bb[j] {
					end = j
				}
			}
			start := off + int64(i)
			return fmt.Sprintf("bytes %d to %d differ (from 4 KiB block %d)", start, off+int64(end), start/4096), nil
		}
		if na != nb {
			return fmt.Sprintf("the same first %d bytes, then one ends", off+int64(n)), nil
		}
		if na < chunk {
			return "", nil
		}
		off += chunk
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
