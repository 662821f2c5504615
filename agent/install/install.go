// Package install installs verified APK packages into a target root
// exactly as apk-tools 2.14 does for `apk add --root TARGET --initdb`
// (and 2.12 where it differs, for systems that get it), read from apk's
// database.c, package.c and commit.c: the initial database, files
// extracted in install order (every path resolved inside the target;
// owners by name from the target's passwd and group), scripts executed
// themselves in a chroot of the target, directory permissions agreed
// across packages, replaces and protected files, triggers in apk's order,
// and lib/apk/db/{installed,scripts.tar,triggers} and /etc/apk/world
// byte for byte as apk writes them. docs/compatibility.md lists each
// behaviour and the test that holds it to the real apk.
//
// It runs inside the build VM (as PID 1's child work, as root); tests run
// it on the host as root. The packages come prepared (pkgdisk.AddPackage):
// the host has read, verified and decompressed them natively, so the VM,
// often emulated, only writes their files and runs their scripts; Refs
// records which files are still the package's bytes, for the export to
// leave them on the disk where the host has them.
package install

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/fsroot"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/db"
	"github.com/alpinist/alpinist/apk/version"
	"github.com/alpinist/alpinist/internal/counting"
)

// Installer installs into Root.
type Installer struct {
	Root string
	// Log receives script output and progress lines; nil discards them.
	Log io.Writer
	// Phase, when set, is told each step as it starts: "installing
	// NAME-VERSION" for each package, then "running triggers" and
	// "writing the database".
	Phase func(what string)
	// Refs, when set, records the files written from prepared packages
	// (see Refs).
	Refs *Refs
}

// owned is the package owning a file of the target.
type owned struct {
	pkg int    // index into pkgs
	dir string // the Dir's Name
	sum []byte // the checksum the database records for it
}

// pkgState is one package being installed: its database entry and its
// directory instances (apk's struct apk_db_dir_instance), in its order.
type pkgState struct {
	inst   *db.Installed
	dirs   []*diri
	byName map[string]*diri
}

// diri is a package's claim on a directory, with the owner and mode its
// entry gives.
type diri struct {
	dir      *dirState
	uid, gid int
	mode     uint32
	db       int // index into inst.Dirs
}

type state struct {
	in       *Installer
	root     *fsroot.Root
	pkgs     []*pkgState
	owner    map[string]owned     // file path -> owner
	dirs     map[string]*dirState // the database's directories, by name
	dirOrder []string             // dirs' names in the order apk makes them
	ids      ids
	mtime    int64
	// refs are the files whose bytes the host has on the package disk;
	// at is where the current entry's bytes are (-1: not known).
	refs *Refs
	at   int64
	// disk is the package disk's file when the disk was opened from it
	// (pkgdisk.Open): files are then copied from it by the kernel, by
	// writers, flushed before anything reads the target.
	disk    *os.File
	writers writers
	// realDirs are paths outside found to be directories: each lstat is
	// a few system calls, emulated, for every prefix of every file.
	// Only a script (or a write at such a path) can change one.
	realDirs map[string]bool
	// legacy: the system gets an apk-tools older than 2.14 (Alpine
	// 3.17 and before), whose ways we follow where they differ: scripts
	// run from var/cache/misc, installed lists packages in install
	// order.
	legacy bool
}

// Install installs every package of the disk, in its order, and writes
// the apk database. The first error stops it with the package named.
func (in *Installer) Install(d *pkgdisk.Reader) error {
	r, err := fsroot.Open(in.Root)
	if err != nil {
		return err
	}
	defer r.Close()
	st := &state{in: in, root: r, owner: map[string]owned{}, dirs: map[string]*dirState{}, mtime: d.Manifest.SourceDateEpoch,
		realDirs: map[string]bool{}}
	st.ids.st = st
	st.at = -1
	st.refs = in.Refs
	st.disk = d.Disk()
	st.writers.sem = make(chan struct{}, runtime.NumCPU())
	st.legacy = legacyApk(d.Manifest.Packages)
	unmount, err := st.initDB(d)
	if err != nil {
		return err
	}
	defer unmount()
	for {
		p, read, err := st.next(d)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		in.phase("installing " + p.Name + "-" + p.Version)
		if err := st.installOne(p, read); err != nil {
			return fmt.Errorf("%s-%s: %w", p.Name, p.Version, err)
		}
	}
	if err := st.updatePermissions(); err != nil {
		return err
	}
	in.phase("running triggers")
	if err := st.runTriggers(); err != nil {
		return err
	}
	in.phase("writing the database")
	if err := st.writeDB(d); err != nil {
		return err
	}
	// Whatever runs in the target next (the configuration, run steps)
	// changes a file's ctime.
	st.refs.settle()
	return nil
}

// reader reads one package for installOne.
type reader func(opts apkfile.ReadOptions) error

// next returns the disk's next package and how to read it: prepared, so
// read and verified on the host (pkgdisk.AddPackage).
func (st *state) next(d *pkgdisk.Reader) (pkgdisk.Package, reader, error) {
	p, control, data, off, err := d.NextPrepared()
	return p, func(opts apkfile.ReadOptions) error {
		// The data tar reads no further than each entry's header when
		// Entry is called: there, off plus the count is where the
		// file's bytes are on the disk.
		cr := &counting.Reader{R: data}
		entry := opts.Entry
		opts.Entry = func(h *tar.Header, r io.Reader) error {
			st.at = off + cr.N
			return entry(h, r)
		}
		_, err := apkfile.ReadPrepared(control, cr, opts)
		st.at = -1
		return err
	}, err
}

// legacyApk tells whether the packages bring an apk-tools older than
// 2.14: the apk that will read and rewrite the database.
func legacyApk(pkgs []pkgdisk.Package) bool {
	for _, p := range pkgs {
		if p.Name == "apk-tools" {
			return version.Compare(p.Version, "2.14") == version.Less
		}
	}
	return false
}

func (in *Installer) phase(what string) {
	if in.Phase != nil {
		in.Phase(what)
	}
}

func (in *Installer) logf(format string, a ...any) {
	if in.Log != nil {
		fmt.Fprintf(in.Log, format, a...)
	}
}

func (st *state) installOne(p pkgdisk.Package, read reader) error {
	ps := &pkgState{inst: &db.Installed{RepositoryTag: strings.TrimPrefix(p.Tag, "@")}, byName: map[string]*diri{}}
	idx := len(st.pkgs)
	st.pkgs = append(st.pkgs, ps)
	inst := ps.inst
	want, err := apk.DecodeChecksum(p.Checksum)
	if err != nil {
		return fmt.Errorf("the manifest's checksum %q: %w", p.Checksum, err)
	}
	// apk unpacks nothing of a package whose installed size is 0: no
	// files, no scripts (apk_db_install_pkg).
	unpack := true
	err = read(apkfile.ReadOptions{
		Control: func(pk *apkfile.Package) error {
			inst.Package = *pk.Info
			// apk's database has the index's entry: its arch and size.
			inst.Package.Size = p.Size
			if p.Arch != "" {
				inst.Package.Arch = p.Arch
			}
			// The host verified the package against the manifest's
			// checksum.
			inst.Package.Checksum = want
			if unpack = pk.Info.InstalledSize != 0; !unpack {
				return nil
			}
			for name, data := range pk.Scripts {
				if t, ok := db.ParseScriptType(name); ok {
					inst.Scripts[t] = data
				}
			}
			return st.runScript(inst, db.ScriptPreInstall)
		},
		Entry: func(h *tar.Header, content io.Reader) error {
			if !unpack {
				return nil
			}
			return st.extract(idx, ps, h, content)
		},
	})
	// Every file of the package is written before anything else runs.
	if err := errors.Join(err, st.writers.flush()); err != nil {
		return err
	}
	return st.runScript(inst, db.ScriptPostInstall)
}

// newDiri gives the package a claim on directory name, as
// apk_db_install_directory_entry does.
func (st *state) newDiri(ps *pkgState, name string) *diri {
	di := &diri{dir: st.dirGet(name), mode: db.DefaultDirACL.Mode, db: len(ps.inst.Dirs)}
	ps.inst.Dirs = append(ps.inst.Dirs, db.Dir{Name: name})
	ps.dirs = append(ps.dirs, di)
	ps.byName[name] = di
	return di
}

// extract installs one entry of a package's data part as
// apk_db_install_archive_entry and apk_db_migrate_files do, and records
// it in the package's database entry.
func (st *state) extract(idx int, ps *pkgState, h *tar.Header, content io.Reader) error {
	name := h.Name
	// A top-level name starting with a dot is package metadata (.PKGINFO,
	// .dummy...), never a file.
	if strings.HasPrefix(name, ".") {
		return nil
	}
	mode := uint32(h.Mode) & 0o7777
	uid, gid := st.ids.uid(h.Uname, h.Uid), st.ids.gid(h.Gname, h.Gid)
	var xattrs map[string]string
	var xa []db.Xattr
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if xattrs == nil {
				xattrs = map[string]string{}
			}
			xattrs[name] = v
			xa = append(xa, db.Xattr{Name: name, Value: []byte(v)})
		}
	}
	if h.Typeflag == tar.TypeDir {
		di := ps.byName[name]
		if di == nil {
			di = st.newDiri(ps, name)
			if err := st.prepare(di.dir, mode); err != nil {
				return err
			}
		}
		di.uid, di.gid, di.mode = uid, gid, mode
		di.dir.apply(uid, gid, mode)
		ps.inst.Dirs[di.db].ACL = aclOf(uid, gid, mode, xa, db.DefaultDirACL)
		return nil
	}
	base := path.Base(name)
	if len(base) > 6 && strings.HasPrefix(base, ".keep_") {
		return nil
	}
	dirName := path.Dir(name)
	if dirName == "." {
		dirName = ""
	}
	di := ps.byName[dirName]
	if di == nil {
		if dirName != "" {
			return fmt.Errorf("/%s: no directory entry for /%s in the package", name, dirName)
		}
		di = st.newDiri(ps, "")
	}
	inst := ps.inst
	// A file owned by another package: replaces decide, as with apk.
	o, taken := st.owner[name]
	if taken && o.pkg != idx {
		prev := st.pkgs[o.pkg].inst
		write, err := mayOverwrite(&inst.Package, &prev.Package, name)
		if err != nil || !write {
			return err
		}
	}
	var sum []byte
	if s := h.PAXRecords["APK-TOOLS.checksum.SHA1"]; s != "" {
		sum, _ = hex.DecodeString(s)
	}
	if h.Typeflag == tar.TypeLink {
		if lo, ok := st.owner[h.Linkname]; ok && lo.pkg == idx {
			sum = lo.sum
		}
	}
	target, err := st.protectedTarget(di.dir, name, o, taken, sum)
	if err != nil {
		return err
	}
	if target != "" && st.outside(target) {
		target = ""
	}
	if target != "" {
		delete(st.realDirs, target)
		if (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) && st.disk != nil && st.at >= 0 {
			// The bytes are on the package disk at st.at: the kernel
			// copies them (and the reader skips them), on the VM's
			// other CPUs while the next entries are read.
			rg, at, hh := &fsroot.Range{File: st.disk, Off: st.at, N: h.Size}, st.at, *h
			st.writers.do(func() error {
				var fst unix.Stat_t
				if err := st.root.WriteFileStat(target, rg, mode, uid, gid, xattrs, st.mtime, &fst); err != nil {
					return err
				}
				st.refs.noteStat(&fst, &hh, at)
				return nil
			})
		} else {
			if h.Typeflag == tar.TypeLink {
				// Its target may be a file still being written.
				if err := st.writers.flush(); err != nil {
					return err
				}
			}
			if err := st.write(target, h, content, mode, uid, gid, xattrs); err != nil {
				return err
			}
			if err := st.refs.note(st.root, target, h, st.at); err != nil {
				return err
			}
		}
	}
	if taken && o.pkg != idx {
		dropFile(st.pkgs[o.pkg].inst, o.dir, base)
	}
	st.owner[name] = owned{pkg: idx, dir: dirName, sum: sum}
	f := db.File{Name: base, Checksum: sum, ACL: aclOf(uid, gid, mode, xa, db.DefaultFileACL)}
	d := &inst.Dirs[di.db]
	d.Files = append(d.Files, f)
	return nil
}

// mayOverwrite decides, as apk_db_install_archive_entry does, whether pkg
// may write path that prev owns: yes for the same origin or when pkg
// replaces prev; no (the file is left to prev, silently) when prev
// replaces pkg with a higher priority; an error otherwise.
func mayOverwrite(pkg, prev *apk.Package, p string) (bool, error) {
	if pkg.Origin != "" && prev.Origin == pkg.Origin {
		return true, nil
	}
	prevPrio, pkgPrio := -1, -1
	for _, r := range prev.Replaces {
		if materialized(r, pkg) {
			prevPrio = prev.ReplacesPriority
			break
		}
	}
	for _, r := range pkg.Replaces {
		if materialized(r, prev) {
			pkgPrio = pkg.ReplacesPriority
			break
		}
	}
	if prevPrio > pkgPrio {
		return false, nil
	}
	if pkgPrio >= 0 {
		return true, nil
	}
	return false, fmt.Errorf("trying to overwrite /%s owned by %s", p, prev.String())
}

// materialized is apk_dep_is_materialized.
func materialized(d apk.Dependency, p *apk.Package) bool {
	if d.Name != p.Name {
		return d.Conflict
	}
	return d.MatchesPackage(p) != d.Conflict
}

// protectedTarget is where an entry is written, as apk_db_migrate_files
// decides: in a protected directory (under /etc), over a file that is
// already there and that no package installed or that was changed since,
// the package's version goes beside it as NAME.apk-new, or nowhere when
// it is the same as what is there. "" means not written.
func (st *state) protectedTarget(d *dirState, name string, o owned, taken bool, sum []byte) (string, error) {
	if d.protect.none() {
		return name, nil
	}
	onDisk, exists, err := st.diskSum(name)
	if err != nil || !exists {
		return name, err
	}
	if taken && len(o.sum) > 0 && bytes.Equal(onDisk, o.sum) {
		return name, nil
	}
	if len(sum) > 0 && bytes.Equal(onDisk, sum) {
		return "", nil
	}
	return name + ".apk-new", nil
}

// diskSum is the SHA-1 apk takes of what is at p (apk_fileinfo_get): of
// a regular file's content, of a symlink's target; nil for anything else.
func (st *state) diskSum(p string) ([]byte, bool, error) {
	s, err := st.root.Lstat(p)
	if err != nil {
		return nil, false, nil
	}
	h := sha1.New()
	switch s.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f, err := st.root.Open(p)
		if err != nil {
			return nil, true, err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return nil, true, err
		}
	case unix.S_IFLNK:
		t, err := os.Readlink(filepath.Join(st.in.Root, p))
		if err != nil {
			return nil, true, err
		}
		io.WriteString(h, t)
	default:
		return nil, true, nil
	}
	return h.Sum(nil), true, nil
}

// write makes the entry at p.
func (st *state) write(p string, h *tar.Header, content io.Reader, mode uint32, uid, gid int, xattrs map[string]string) error {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		return st.root.WriteFile(p, content, mode, uid, gid, xattrs, st.mtime)
	case tar.TypeSymlink:
		return st.root.Symlink(p, h.Linkname, uid, gid, st.mtime)
	case tar.TypeLink:
		return st.root.Link(p, h.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		t := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		return st.root.Mknod(p, t|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))), uid, gid)
	}
	return fmt.Errorf("/%s: unsupported entry type %q", p, h.Typeflag)
}

// aclOf is the ACL apk records, or nil when it is the default.
func aclOf(uid, gid int, mode uint32, xa []db.Xattr, def db.ACL) *db.ACL {
	acl := db.ACL{UID: uid, GID: gid, Mode: mode, XattrChecksum: db.XattrChecksum(xa)}
	if uid == def.UID && gid == def.GID && mode == def.Mode && acl.XattrChecksum == nil {
		return nil
	}
	return &acl
}

func dropFile(in *db.Installed, dir, name string) {
	for i := range in.Dirs {
		if in.Dirs[i].Name != dir {
			continue
		}
		in.Dirs[i].Files = slices.DeleteFunc(in.Dirs[i].Files, func(f db.File) bool { return f.Name == name })
	}
}

// writers write files on goroutines, as many at once as the VM has CPUs.
type writers struct {
	wg  sync.WaitGroup
	sem chan struct{}
	mu  sync.Mutex
	err error
}

// do runs fn on a writer; its error comes out of the next flush.
func (w *writers) do(fn func() error) {
	w.sem <- struct{}{}
	w.wg.Add(1)
	go func() {
		defer func() { <-w.sem; w.wg.Done() }()
		if err := fn(); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}()
}

// flush waits for every write and returns the first error (again at
// every flush after it: the install has failed).
func (w *writers) flush() error {
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
