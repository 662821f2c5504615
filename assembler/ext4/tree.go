package ext4

import (
	"archive/tar"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// node is one inode of the tree being built.
type node struct {
	ino        uint32
	mode       uint16 // type and permission bits, as in i_mode
	uid, gid   uint32
	mtime      time.Time
	size       int64
	links      uint32
	target     string // symlink target
	devMajor   uint32
	devMinor   uint32
	xattrs     []xattr
	children   []dirent // directories: entries, sorted by name
	parent     *node
	childIndex map[string]int

	// Filled in by the layout.
	extents []extent // data (regular files, slow symlinks, directories)
	meta    []uint32 // extent tree blocks
	xblock  uint32   // external xattr block (0: none)
	htree   bool
	// immutable: the inode's blocks must not move (Options.Pin).
	immutable bool
	dirData   [][]byte // directory blocks, built by layout
	isDirCnt  int
}

type dirent struct {
	name string
	n    *node
}

type xattr struct {
	index uint8 // name index: 1 user, 6 security, 4 trusted, 2 posix acl access...
	name  string
	value []byte
}

type extent struct {
	logical uint32
	start   uint32
	length  uint32
}

// File types (the mode's high bits).
const (
	sIFIFO  = 0x1000
	sIFCHR  = 0x2000
	sIFDIR  = 0x4000
	sIFBLK  = 0x6000
	sIFREG  = 0x8000
	sIFLNK  = 0xA000
	sIFSOCK = 0xC000
)

func (n *node) isDir() bool { return n.mode&0xF000 == sIFDIR }
func (n *node) isReg() bool { return n.mode&0xF000 == sIFREG }
func (n *node) isLnk() bool { return n.mode&0xF000 == sIFLNK }

// fastSymlink: a target shorter than 60 bytes lives in i_block.
func (n *node) fastSymlink() bool { return n.isLnk() && len(n.target) < 60 }

// fileType is the dirent file type.
func (n *node) fileType() uint8 {
	switch n.mode & 0xF000 {
	case sIFREG:
		return 1
	case sIFDIR:
		return 2
	case sIFCHR:
		return 3
	case sIFBLK:
		return 4
	case sIFIFO:
		return 5
	case sIFSOCK:
		return 6
	case sIFLNK:
		return 7
	}
	return 0
}

// xattrPrefixes are the name indexes ext4 stores attributes under.
var xattrPrefixes = []struct {
	prefix string
	index  uint8
}{
	{"user.", 1},
	{"system.posix_acl_access", 2},
	{"system.posix_acl_default", 3},
	{"trusted.", 4},
	{"security.", 6},
	{"system.", 7},
}

func splitXattr(full string) (uint8, string, bool) {
	for _, p := range xattrPrefixes {
		if strings.HasPrefix(full, p.prefix) {
			return p.index, strings.TrimPrefix(full, p.prefix), true
		}
	}
	return 0, "", false
}

// tree is the file system's namespace as read from the rootfs tar.
type tree struct {
	root  *node
	nodes []*node // in inode order, from the first non-reserved inode
	files []*node // regular files and their data, in tar order
}

// entryName is the tar name as a clean relative path ("" for the root).
func entryName(name string) (string, error) {
	n := strings.TrimPrefix(strings.TrimSuffix(name, "/"), "./")
	if n == "." || n == "" {
		return "", nil
	}
	c := path.Clean(n)
	if c != n || strings.HasPrefix(c, "../") || c == ".." || strings.HasPrefix(c, "/") {
		return "", fmt.Errorf("%q is not a clean relative path", name)
	}
	return c, nil
}

// scan reads the tar stream's headers into a tree. Directories a path
// needs but the tar lacks are made 0755 root-owned, dated epoch. The
// data is not read: callers skip it or copy it as they go (dataFn is
// called with each regular file, its reader positioned at the data).
func scan(r io.Reader, epoch time.Time, dataFn func(n *node, r io.Reader) error) (*tree, error) {
	return scanEntries(tar.NewReader(r), epoch, dataFn)
}

// scanEntries is scan of the entries tr reads: a tar.Reader's, or those
// of Options.Entries.
func scanEntries(tr entryReader, epoch time.Time, dataFn func(n *node, r io.Reader) error) (*tree, error) {
	t := &tree{}
	t.root = &node{mode: sIFDIR | 0o755, mtime: epoch, childIndex: map[string]int{}}
	t.root.parent = t.root
	byPath := map[string]*node{"": t.root}
	var mkdirs func(p string) (*node, error)
	mkdirs = func(p string) (*node, error) {
		if n, ok := byPath[p]; ok {
			if !n.isDir() {
				return nil, fmt.Errorf("%s is not a directory", p)
			}
			return n, nil
		}
		parent, err := mkdirs(path.Dir(strings.TrimSuffix("/"+p, "/"))[1:])
		if err != nil {
			return nil, err
		}
		n := &node{mode: sIFDIR | 0o755, mtime: epoch, childIndex: map[string]int{}, parent: parent}
		t.add(parent, path.Base(p), n)
		byPath[p] = n
		return n, nil
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		name, err := entryName(h.Name)
		if err != nil {
			return nil, err
		}
		if err := checkIDs(h); err != nil {
			return nil, err
		}
		if name == "" {
			if h.Typeflag == tar.TypeDir {
				setAttrs(t.root, h)
			}
			continue
		}
		dir := path.Dir(name)
		if dir == "." {
			dir = ""
		}
		parent, err := mkdirs(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		base := path.Base(name)
		if h.Typeflag == tar.TypeLink {
			target, err := entryName(h.Linkname)
			if err != nil {
				return nil, fmt.Errorf("%s: hard link: %w", h.Name, err)
			}
			tn, ok := byPath[target]
			if !ok || tn.isDir() {
				return nil, fmt.Errorf("%s: hard link to %s, which is not an earlier file", h.Name, h.Linkname)
			}
			if _, dup := parent.childIndex[base]; dup {
				return nil, fmt.Errorf("%s: listed twice", h.Name)
			}
			if tn.links >= maxLinks {
				return nil, fmt.Errorf("%s: more than %d hard links to /%s, ext4's limit (mke2fs -d stops there too)", h.Name, maxLinks, target)
			}
			t.add(parent, base, tn)
			byPath[name] = tn
			continue
		}
		if existing, ok := byPath[name]; ok {
			if h.Typeflag == tar.TypeDir && existing.isDir() {
				setAttrs(existing, h) // a directory made for its children, now listed
				continue
			}
			return nil, fmt.Errorf("%s: listed twice", h.Name)
		}
		n := &node{parent: parent}
		switch h.Typeflag {
		case tar.TypeDir:
			n.mode = sIFDIR
			n.childIndex = map[string]int{}
		case tar.TypeReg, tar.TypeRegA:
			n.mode = sIFREG
			n.size = h.Size
		case tar.TypeSymlink:
			n.mode = sIFLNK
			n.target = h.Linkname
			n.size = int64(len(h.Linkname))
			if len(h.Linkname) == 0 || len(h.Linkname) >= 4096 {
				return nil, fmt.Errorf("%s: symlink target of %d bytes (1 to 4095)", h.Name, len(h.Linkname))
			}
		case tar.TypeChar:
			n.mode = sIFCHR
		case tar.TypeBlock:
			n.mode = sIFBLK
		case tar.TypeFifo:
			n.mode = sIFIFO
		default:
			return nil, fmt.Errorf("%s: tar entry type %q is not a file system object", h.Name, h.Typeflag)
		}
		n.devMajor, n.devMinor = uint32(h.Devmajor), uint32(h.Devminor)
		setAttrs(n, h)
		t.add(parent, base, n)
		byPath[name] = n
		if n.isReg() {
			t.files = append(t.files, n)
			if dataFn != nil {
				if err := dataFn(n, tr); err != nil {
					return nil, fmt.Errorf("%s: %w", h.Name, err)
				}
			}
		}
	}
	return t, nil
}

// maxLinks is ext4's link limit for a file (EXT4_LINK_MAX).
const maxLinks = 65000

// checkIDs refuses an owner ext4 cannot hold: ids are 32-bit, and
// 4294967295 is (uid_t)-1, "no change" to chown.
func checkIDs(h *tar.Header) error {
	for _, id := range []struct {
		what string
		v    int
	}{{"uid", h.Uid}, {"gid", h.Gid}} {
		if id.v < 0 || int64(id.v) >= 1<<32-1 {
			return fmt.Errorf("%s: %s %d out of range (0 to 4294967294)", h.Name, id.what, id.v)
		}
	}
	return nil
}

func setAttrs(n *node, h *tar.Header) {
	n.mode = n.mode&0xF000 | uint16(h.Mode&0o7777)
	n.uid, n.gid = uint32(h.Uid), uint32(h.Gid)
	n.mtime = h.ModTime
	n.xattrs = nil
	for _, k := range slices.Sorted(maps.Keys(h.PAXRecords)) {
		full, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if idx, name, ok := splitXattr(full); ok {
			n.xattrs = append(n.xattrs, xattr{index: idx, name: name, value: []byte(h.PAXRecords[k])})
		}
	}
}

// lookup finds the node of a tar name.
func (t *tree) lookup(name string) (*node, error) {
	clean, err := entryName(name)
	if err != nil {
		return nil, err
	}
	n := t.root
	if clean == "" {
		return n, nil
	}
	for _, part := range strings.Split(clean, "/") {
		i, ok := n.childIndex[part]
		if !ok {
			return nil, fmt.Errorf("/%s: not in the tree", clean)
		}
		n = n.children[i].n
	}
	return n, nil
}

func (t *tree) add(parent *node, name string, n *node) {
	parent.childIndex[name] = len(parent.children)
	parent.children = append(parent.children, dirent{name: name, n: n})
	n.links++
	if n.links == 1 {
		t.nodes = append(t.nodes, n)
	}
	if n.isDir() {
		parent.isDirCnt++
	}
}
