// Package rootfs turns a root filesystem tar from elsewhere (docker
// export, podman export, a flattened OCI image, any tarball of a tree)
// into the canonical rootfs tar alpinist's outputs are made from:
// entries in depth-first order with sorted names (parents first), a hard
// link always after the file it names, numeric owners only, PAX format,
// times clamped to an epoch. The input is read in place when it is a
// plain tar file, else spooled to a temporary file once (for random
// access), never held in memory; the canonical tar is made from it as it
// is read (Tar), or written whole (Canonicalize).
package rootfs

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/ctxio"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Decompress returns r uncompressed when it starts with a gzip, zstd or
// xz magic number, else r itself (a plain tar).
func Decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(6)
	switch compression(magic) {
	case "gzip":
		return gzip.NewReader(br)
	case "zstd":
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case "xz":
		return xz.NewReader(br)
	}
	return br, nil
}

// compression names the compression whose magic number starts magic,
// or is "" (a plain tar).
func compression(magic []byte) string {
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return "gzip"
	case len(magic) >= 4 && string(magic[:4]) == "\x28\xb5\x2f\xfd":
		return "zstd"
	case len(magic) >= 6 && string(magic) == "\xfd7zXZ\x00":
		return "xz"
	}
	return ""
}

type entry struct {
	h    *tar.Header
	data int64 // offset of the data in the input (or its spool)
}

// Stats describe the canonical tar written.
type Stats struct {
	Entries int
	// Newest is the newest modification time of the input (before
	// clamping): a date for outputs when no SOURCE_DATE_EPOCH is given.
	Newest time.Time
}

// The bounds of a name: Linux's PATH_MAX (with its NUL) and NAME_MAX,
// which every tool that unpacks a tree and ext4 hold to, and a depth no
// real tree comes near (a deep name makes a directory entry per level:
// the bound keeps the output linear in the input).
const (
	MaxPath  = 4095
	MaxName  = 255
	MaxDepth = 256
)

// node is one name of the tree: the input's entry for it (the last of
// that name), or nil for a directory only its descendants imply.
type node struct {
	name    string
	parent  *node
	e       *entry
	kids    map[string]*node
	ordinal int // place in the output order
}

func (n *node) path() string {
	if n.parent == nil {
		return ""
	}
	if p := n.parent.path(); p != "" {
		return p + "/" + n.name
	}
	return n.name
}

func (n *node) isDir() bool { return n.e == nil || n.e.h.Typeflag == tar.TypeDir }

// Canonicalize reads the tar stream r and writes the canonical rootfs tar
// to w, spooling r in a temporary file in tmpDir (unless it is a plain
// tar file, which is read in place: see Open). A zero epoch leaves
// the times as they are (within what every output can hold: see
// clampTime). It refuses what no output may carry, naming the entry: a
// name that leaves the root or passes PATH_MAX, NAME_MAX or MaxDepth
// levels, an entry under a symlink or a file, a hard link to what is not
// a file. A later entry of a name replaces an earlier one, as tar
// extraction does. The work is linear in the input (a tree of the names,
// each component hashed once); ctx is checked as it goes.
func Canonicalize(ctx context.Context, w io.Writer, r io.Reader, epoch time.Time, tmpDir string) (Stats, error) {
	t, err := open(ctx, r, epoch, tmpDir, false, false)
	if err != nil {
		return Stats{}, err
	}
	defer t.Close()
	if _, err := io.CopyBuffer(w, ctxio.Reader(ctx, t.Reader()), make([]byte, 1<<20)); err != nil {
		return Stats{}, err
	}
	return t.st, nil
}

// index reads the tar src (size bytes: the input or its spool) and lays
// out the canonical tar made from it; with sum, the canonical tar's
// sha256 is made on another goroutine as it is laid out (c.sum).
func index(ctx context.Context, src io.ReaderAt, size int64, epoch time.Time, sum bool) (*canon, error) {
	c := &canon{ctx: ctx, src: src, size: size, epoch: epoch, root: &node{kids: map[string]*node{}}}
	if err := c.read(); err != nil {
		return nil, err
	}
	// The output order: depth first, names sorted, parents first. An
	// entry under a symlink or a file is refused (GNU tar and our ext4
	// writer refuse it; an unpacker would follow the symlink).
	if err := c.order(c.root); err != nil {
		return nil, err
	}
	// Hard links: the first name of a group in the output order carries
	// the file; the others link to it.
	if err := c.linkGroups(); err != nil {
		return nil, err
	}
	c.paths = map[*node]string{} // carriers' names, for the links after them
	c.implicit = clampTime(c.st.Newest, epoch)
	if sum {
		c.sum = startSum(src, c.ord)
	}
	if err := c.emit(c.root, ""); err != nil {
		c.sum.stop()
		return nil, err
	}
	c.sum.finish()
	return c, nil
}

// canon is the state the phases of index share: the input, the tree of
// its names, the hard-link groups, and the output's entries.
type canon struct {
	ctx   context.Context
	src   io.ReaderAt // the input tar, or its spool
	size  int64
	epoch time.Time
	root  *node
	links []*node // the hard links, in input order
	st    Stats
	ord   int // the next ordinal

	carrierOf map[*node]*node
	fileOf    map[*node]*node

	ents     []outEntry // the output, in order
	hdrs     headers    // their headers
	off      int64      // the output's size so far
	sum      *tarSum    // the output's sha256, when asked for
	paths    map[*node]string
	implicit time.Time // the time of implied directories
}

// read reads the input tar into the tree of names, checking each entry,
// and notes the hard links and the newest time.
func (c *canon) read() error {
	sr := newBufferedAt(c.src, c.size)
	tr := tar.NewReader(sr)
	for i := 0; ; i++ {
		if i%1024 == 0 && c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("rootfs: input tar: %w", err)
		}
		name, skip, err := checkEntry(h)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if h.ModTime.After(c.st.Newest) {
			c.st.Newest = h.ModTime
		}
		h.Name = name
		n, err := c.root.insert(name)
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeLink {
			c.links = append(c.links, n)
		}
		pos, _ := sr.Seek(0, io.SeekCurrent) // the tar reader stops at the data
		n.e = &entry{h: h, data: pos}
	}
	return nil
}

// checkEntry is the clean name of input entry h, or skip for what is
// not put in the tree (the root itself, a global header); it refuses a
// type no file system holds and an owner out of range.
func checkEntry(h *tar.Header) (name string, skip bool, err error) {
	name, err = clean(h.Name)
	if err != nil {
		return "", false, err
	}
	if name == "" {
		return "", true, nil // the root itself
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeXGlobalHeader:
		return "", true, nil
	default:
		return "", false, fmt.Errorf("rootfs: %s: tar entry type %q is not a file system object", h.Name, h.Typeflag)
	}
	if h.Uid < 0 || h.Gid < 0 || int64(h.Uid) >= 1<<32-1 || int64(h.Gid) >= 1<<32-1 {
		return "", false, fmt.Errorf("rootfs: %s: owner %d:%d out of range (0 to 4294967294)", name, h.Uid, h.Gid)
	}
	return name, false, nil
}

// order numbers n and the names under it in the output order, refusing
// an entry under what is not a directory.
func (c *canon) order(n *node) error {
	n.ordinal = c.ord
	c.ord++
	if c.ord%4096 == 0 && c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	if len(n.kids) > 0 && !n.isDir() {
		what := map[byte]string{tar.TypeSymlink: "a symlink", tar.TypeLink: "a hard link"}[n.e.h.Typeflag]
		if what == "" {
			what = "not a directory"
		}
		return fmt.Errorf("rootfs: %s is under %s, %s", first(n).path(), n.path(), what)
	}
	for _, k := range sortedKids(n) {
		if err := c.order(k); err != nil {
			return err
		}
	}
	return nil
}

// linkGroups finds each hard link's group and the name in it that
// carries the file (carrierOf, fileOf).
func (c *canon) linkGroups() error {
	carrier := map[*node]*node{} // the file linked to -> the name that carries it
	for _, n := range c.links {
		if n.e.h.Typeflag != tar.TypeLink {
			continue // replaced by a later entry
		}
		target, err := clean(n.e.h.Linkname)
		if err != nil {
			return err
		}
		tn := c.root.find(target)
		if tn == nil || tn.e == nil || tn.e.h.Typeflag == tar.TypeLink || tn.e.h.Typeflag == tar.TypeDir {
			return fmt.Errorf("rootfs: %s: hard link to %s, which is not a file in the tar", n.path(), n.e.h.Linkname)
		}
		cn, ok := carrier[tn]
		if !ok {
			cn = tn
		}
		if n.ordinal < cn.ordinal {
			cn = n
		}
		carrier[tn] = cn
	}
	c.carrierOf = map[*node]*node{} // each name of a group -> its carrier
	c.fileOf = map[*node]*node{}    // a carrier -> the file of its group
	for tn, cn := range carrier {
		c.carrierOf[tn] = cn
		c.fileOf[cn] = tn
	}
	for _, n := range c.links {
		if n.e.h.Typeflag == tar.TypeLink {
			if tn := c.root.find(mustClean(n.e.h.Linkname)); tn != nil {
				c.carrierOf[n] = carrier[tn]
			}
		}
	}
	return nil
}

// emit lays out n (named p) and the names under it, in the output order.
func (c *canon) emit(n *node, p string) error {
	if n.parent != nil {
		if c.st.Entries%1024 == 0 && c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		h, data := emitOne(n, p, c.carrierOf, c.fileOf, c.paths, c.epoch, c.implicit)
		if err := c.add(h, data); err != nil {
			return err
		}
		c.st.Entries++
	}
	for _, k := range sortedKids(n) {
		kp := k.name
		if p != "" {
			kp = p + "/" + k.name
		}
		if err := c.emit(k, kp); err != nil {
			return err
		}
	}
	return nil
}

// emitOne is the header of node n (named p) and the offset of its data
// in the input: an implied directory, a file, or a hard link to its
// group's carrier (the carrier itself gets the file).
func emitOne(n *node, p string, carrierOf, fileOf map[*node]*node, paths map[*node]string, epoch, implicit time.Time) (*tar.Header, int64) {
	if n.e == nil {
		return &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: implicit, Format: tar.FormatPAX}, 0
	}
	h := *n.e.h
	h.Name = p
	data := n.e.data
	if c, ok := carrierOf[n]; ok {
		switch {
		case c == n && h.Typeflag == tar.TypeLink:
			// This name carries the data of the file it linked to.
			te := fileOf[n].e
			h = *te.h
			h.Name = p
			data = te.data
			paths[n] = p
		case c == n:
			paths[n] = p
		default:
			// A link carries the attributes of the file it names (one
			// inode), as the agent's export and GNU tar write them.
			h = *fileOf[c].e.h
			h.Typeflag, h.Name, h.Linkname, h.Size = tar.TypeLink, p, paths[c], 0
		}
	}
	return outHeader(&h, epoch), data
}

// insert walks name's components from the root, making the nodes
// missing, and returns the node of the name.
func (root *node) insert(name string) (*node, error) {
	if len(name) > MaxPath {
		return nil, fmt.Errorf("rootfs: %.64s...: a name of %d bytes, past PATH_MAX (%d)", name, len(name), MaxPath)
	}
	n := root
	depth := 0
	for rest := name; rest != ""; {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		if len(comp) > MaxName {
			return nil, fmt.Errorf("rootfs: %.64s...: a component of %d bytes, past NAME_MAX (%d)", name, len(comp), MaxName)
		}
		if depth++; depth > MaxDepth {
			return nil, fmt.Errorf("rootfs: %.64s...: deeper than %d levels", name, MaxDepth)
		}
		k := n.kids[comp]
		if k == nil {
			k = &node{name: comp, parent: n, kids: map[string]*node{}}
			n.kids[comp] = k
		}
		n = k
	}
	return n, nil
}

// find is the node of a clean name, or nil.
func (root *node) find(name string) *node {
	n := root
	for rest := name; rest != "" && n != nil; {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		n = n.kids[comp]
	}
	return n
}

// first is n's first descendant in the output order (for errors).
func first(n *node) *node {
	for len(n.kids) > 0 {
		n = sortedKids(n)[0]
	}
	return n
}

func sortedKids(n *node) []*node {
	out := make([]*node, 0, len(n.kids))
	for _, k := range n.kids {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	return out
}

func mustClean(name string) string {
	c, _ := clean(name)
	return c
}

// outHeader is the canonical header of input entry h.
func outHeader(h *tar.Header, epoch time.Time) *tar.Header {
	out := &tar.Header{
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
	return out
}

// The times every output can hold: not before the Unix epoch (ext4's and
// cpio's unsigned seconds, tools that read a negative time as garbage)
// and not past the year 9999 (RFC 3339, which the OCI config's created
// and history use).
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// clampTime is t, clamped to epoch when it is later (or unset) and to
// the range every output can hold.
func clampTime(t, epoch time.Time) time.Time {
	if !epoch.IsZero() && (t.After(epoch) || t.IsZero()) {
		t = epoch
	}
	switch {
	case t.Before(minTime):
		return minTime
	case t.After(maxTime):
		return maxTime
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
