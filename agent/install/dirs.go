package install

import (
	"encoding/binary"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/apk"
)

// protectMode is apk's protection of a directory's files against
// overwriting local changes (enum apk_protect_mode).
type protectMode int

const (
	protectNone protectMode = iota
	protectIgnore
	protectChanged
	protectSymlinksOnly
	protectAll
)

// protectedPath is one line of apk's protected paths ("+etc"): a
// pattern relative to the directory that holds the list.
type protectedPath struct {
	pattern string
	mode    protectMode
}

// defaultProtected is apk-tools 2.14's built-in list. apk reads
// etc/apk/protected_paths.d when it opens the database, before a fresh
// root has any: the built-in list is all an initial install sees.
var defaultProtected = []protectedPath{{"etc", protectAll}, {"etc/init.d", protectSymlinksOnly}, {"etc/apk", protectNone}}

// none is apk_protect_mode_none.
func (m protectMode) none() bool { return m == protectNone || m == protectIgnore }

// dirState is apk's struct apk_db_dir: one directory of the database,
// with the owner and mode its packages agree on.
type dirState struct {
	name        string // "usr/bin"; "" is the root
	uid, gid    int64  // unsigned in apk: noID until a package sets them
	mode        uint32
	created     bool
	updatePerms bool
	seen        bool
	outside     bool // made outside the target by apk (see outside)
	protect     protectMode
	children    []protectedPath // patterns for the directory's children
}

const noID = 1<<32 - 1

// dirGet is apk_db_dir_get: the directory's state, made (with its
// parents, and its protection worked out from theirs) on first use. The
// order directories are made in is kept: apk's hash of directories
// iterates in an order that depends on it.
func (st *state) dirGet(name string) *dirState {
	name = strings.TrimSuffix(name, "/")
	if d, ok := st.dirs[name]; ok {
		return d
	}
	d := &dirState{name: name, uid: noID, gid: noID}
	st.dirs[name] = d
	st.dirOrder = append(st.dirOrder, name)
	if name == "" {
		return d
	}
	var ppaths []protectedPath
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		parent := st.dirGet(name[:i])
		d.protect = parent.protect
		ppaths = parent.children
	} else {
		st.dirGet("")
		ppaths = defaultProtected
	}
	rel := path.Base(name)
	for _, pp := range ppaths {
		if first, rest, ok := strings.Cut(pp.pattern, "/"); ok {
			if m, _ := path.Match(first, rel); m {
				d.children = append(d.children, protectedPath{rest, pp.mode})
			}
			continue
		}
		if m, _ := path.Match(pp.pattern, rel); m {
			d.protect = pp.mode
		}
	}
	return d
}

// prepare is apk_db_dir_prepare: on a package's first entry for the
// directory, make it (with the entry's exact mode) when it is missing,
// and allow its permissions to be updated at the end when apk made it or
// found it as the database says it should be.
func (st *state) prepare(d *dirState, mode uint32) error {
	if d.name == "" || d.created {
		return nil
	}
	s, err := st.root.Lstat(d.name)
	switch {
	case err == nil:
		d.created = true
		d.updatePerms = d.updatePerms || (s.Mode&0o7777 == d.mode&0o7777 && int64(s.Uid) == d.uid && int64(s.Gid) == d.gid)
	case mode != 0:
		if d.outside = st.outside(d.name); !d.outside {
			if err := st.root.Mkdir(d.name, mode, 0, 0); err != nil {
				return err
			}
		}
		d.created = true
		d.updatePerms = true
	}
	return nil
}

// outside tells whether apk, making p, would leave the target: a
// directory above p is a symlink to an absolute path, which the kernel
// resolves from apk's own root, not the target's (Alpine 3.13's
// alpine-baselayout has var/run -> /run, so ppp's var/run/ppp lands in
// the host's /run). We never write outside the target: what apk would
// put there is left out, and logged, so the target is what apk makes.
func (st *state) outside(p string) bool {
	return st.outsideDir(p, path.Dir(p))
}

// outsideDir is outside for dir and the directories above it, on the way
// to p.
func (st *state) outsideDir(p, dir string) bool {
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		prefix := dir[:i]
		if prefix == "" || prefix == "." {
			continue
		}
		if st.realDirs[prefix] {
			continue
		}
		s, err := st.root.Lstat(prefix)
		if err == nil && s.Mode&unix.S_IFMT == unix.S_IFDIR {
			st.realDirs[prefix] = true
		}
		if err != nil || s.Mode&unix.S_IFMT != unix.S_IFLNK {
			continue
		}
		if t, err := os.Readlink(filepath.Join(st.in.Root, prefix)); err == nil && strings.HasPrefix(t, "/") {
			if prefix == p {
				st.in.logf("/%s: a symlink to %s that apk follows out of the target: its permissions are left as they are\n", p, t)
				return true
			}
			st.in.logf("/%s: under /%s, a symlink to %s that apk follows out of the target: left out, as apk leaves it out of the target\n", p, prefix, t)
			return true
		}
	}
	return false
}

// apply is apk_db_dir_apply_diri_permissions: of the packages owning a
// directory, the lowest owner wins; packages of the same owner agree on
// the bits they all give.
func (d *dirState) apply(uid, gid int, mode uint32) {
	u, g := int64(uid), int64(gid)
	if u < d.uid || (u == d.uid && g < d.gid) {
		d.uid, d.gid, d.mode = u, g, mode
	} else if u == d.uid && g == d.gid {
		d.mode &= mode
	}
}

// updatePermissions is apk_db_update_directory_permissions, run once all
// packages are in: each directory apk may update gets the owner and mode
// its packages agree on.
func (st *state) updatePermissions() error {
	for _, pk := range st.pkgs {
		for _, di := range pk.dirs {
			d := di.dir
			if !d.updatePerms {
				continue
			}
			if !d.seen {
				d.seen = true
				d.mode, d.uid, d.gid = 0, noID, noID
			}
			d.apply(di.uid, di.gid, di.mode)
		}
	}
	for _, name := range st.hashOrder() {
		d := st.dirs[name]
		if !d.updatePerms || d.name == "" || d.outside {
			continue
		}
		if st.outsideDir(d.name, d.name) {
			// A script made it (or a directory above it) a symlink out
			// of the target: apk would change what it points to.
			continue
		}
		d.seen = false
		s, err := st.root.Lstat(d.name)
		if err != nil || s.Mode&0o7777 != d.mode&0o7777 {
			if err := st.root.Chmod(d.name, d.mode); err != nil {
				return err
			}
		}
		if err != nil || int64(s.Uid) != d.uid || int64(s.Gid) != d.gid {
			if err := st.root.Chown(d.name, int(d.uid), int(d.gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// hashOrder is the order apk_hash_foreach visits the database's
// directories in (20000 buckets, in the machine's byte order: the agent
// runs on the target's CPU, so its order is apk's).
func (st *state) hashOrder() []string {
	return apk.HashOrder(st.dirOrder, func(n string) string { return n }, 20000, binary.NativeEndian)
}
