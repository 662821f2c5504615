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
// it on the host as root.
package install

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/fsroot"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/db"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/apk/version"
)

// Installer installs into Root.
type Installer struct {
	Root string
	// Log receives script output and progress lines; nil discards them.
	Log io.Writer
	// Phase, when set, is told each package as it is installed.
	Phase func(what string)
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
	st := &state{in: in, root: r, owner: map[string]owned{}, dirs: map[string]*dirState{}, mtime: d.Manifest.SourceDateEpoch}
	st.ids.st = st
	st.legacy = legacyApk(d.Manifest.Packages)
	kr := sign.NewKeyring()
	for name, pem := range d.Keys {
		if err := kr.AddPEM(name, pem); err != nil {
			return err
		}
	}
	unmount, err := st.initDB(d)
	if err != nil {
		return err
	}
	defer unmount()
	for {
		p, pr, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if in.Phase != nil {
			in.Phase(p.Name + "-" + p.Version)
		}
		if err := st.installOne(p, pr, kr); err != nil {
			return fmt.Errorf("%s-%s: %w", p.Name, p.Version, err)
		}
	}
	if err := st.updatePermissions(); err != nil {
		return err
	}
	if err := st.runTriggers(); err != nil {
		return err
	}
	return st.writeDB(d)
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

func (in *Installer) logf(format string, a ...any) {
	if in.Log != nil {
		fmt.Fprintf(in.Log, format, a...)
	}
}

// initDB makes what apk add --initdb makes before the first package
// (apk_db_create and apk_db_open, under apk's umask 0): /tmp, /dev with
// its five nodes, the database's directories, an empty world and
// installed, the lock file, etc/apk/arch, and /proc (0555) with a proc
// file system mounted on it while scripts run, as apk mounts one. The
// keys go to etc/apk/keys. It returns what unmounts /proc.
func (st *state) initDB(d *pkgdisk.Reader) (func(), error) {
	r := st.root
	steps := []struct {
		path string
		mode uint32 // with the type bits for a node
		dev  int
	}{
		{"tmp", unix.S_IFDIR | 0o1777, 0},
		{"dev", unix.S_IFDIR | 0o755, 0},
		{"dev/null", unix.S_IFCHR | 0o666, int(unix.Mkdev(1, 3))},
		{"dev/zero", unix.S_IFCHR | 0o666, int(unix.Mkdev(1, 5))},
		{"dev/random", unix.S_IFCHR | 0o666, int(unix.Mkdev(1, 8))},
		{"dev/urandom", unix.S_IFCHR | 0o666, int(unix.Mkdev(1, 9))},
		{"dev/console", unix.S_IFCHR | 0o600, int(unix.Mkdev(5, 1))},
		{"etc", unix.S_IFDIR | 0o755, 0},
		{"etc/apk", unix.S_IFDIR | 0o755, 0},
		{"lib", unix.S_IFDIR | 0o755, 0},
		{"lib/apk", unix.S_IFDIR | 0o755, 0},
		{"lib/apk/db", unix.S_IFDIR | 0o755, 0},
		{"var", unix.S_IFDIR | 0o755, 0},
		{"var/cache", unix.S_IFDIR | 0o755, 0},
		{"var/cache/apk", unix.S_IFDIR | 0o755, 0},
		{"var/cache/misc", unix.S_IFDIR | 0o755, 0},
	}
	for _, s := range steps {
		var err error
		if s.mode&unix.S_IFMT == unix.S_IFDIR {
			err = r.Mkdir(s.path, s.mode&0o7777, 0, 0)
		} else if _, lerr := r.Lstat(s.path); lerr != nil {
			err = r.Mknod(s.path, s.mode, s.dev, 0, 0)
		}
		if err != nil {
			return nil, err
		}
	}
	empty := func(p string, mode uint32) error {
		return r.WriteFile(p, bytes.NewReader(nil), mode, 0, 0, nil, st.mtime)
	}
	for _, f := range []struct {
		path string
		mode uint32
	}{{"etc/apk/world", 0o644}, {"lib/apk/db/installed", 0o644}, {"lib/apk/db/lock", 0o600}} {
		if err := empty(f.path, f.mode); err != nil {
			return nil, err
		}
	}
	if d.Manifest.Arch != "" {
		if err := r.WriteFile("etc/apk/arch", strings.NewReader(d.Manifest.Arch+"\n"), 0o644, 0, 0, nil, st.mtime); err != nil {
			return nil, err
		}
	}
	if len(d.Keys) > 0 {
		if err := r.Mkdir("etc/apk/keys", 0o755, 0, 0); err != nil {
			return nil, err
		}
	}
	for name, pem := range d.Keys {
		if err := r.WriteFile("etc/apk/keys/"+name, bytes.NewReader(pem), 0o644, 0, 0, nil, st.mtime); err != nil {
			return nil, err
		}
	}
	if err := r.Mkdir("proc", 0o555, 0, 0); err != nil {
		return nil, err
	}
	proc := filepath.Join(st.in.Root, "proc")
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		st.in.logf("mount proc on /proc of the target: %v\n", err)
		return func() {}, nil
	}
	return func() { unix.Unmount(proc, unix.MNT_DETACH) }, nil
}

func (st *state) installOne(p pkgdisk.Package, r io.Reader, kr *sign.Keyring) error {
	ps := &pkgState{inst: &db.Installed{RepositoryTag: strings.TrimPrefix(p.Tag, "@")}, byName: map[string]*diri{}}
	idx := len(st.pkgs)
	st.pkgs = append(st.pkgs, ps)
	inst := ps.inst
	// apk unpacks nothing of a package whose installed size is 0: no
	// files, no scripts (apk_db_install_pkg).
	unpack := true
	_, err := apkfile.Read(r, apkfile.ReadOptions{
		Keys: kr,
		Control: func(pk *apkfile.Package) error {
			inst.Package = *pk.Info
			// apk's database has the index's entry: its arch and size.
			inst.Package.Size = p.Size
			if p.Arch != "" {
				inst.Package.Arch = p.Arch
			}
			want, err := apk.DecodeChecksum(p.Checksum)
			if err == nil && !bytes.Equal(want, pk.Info.Checksum) {
				return fmt.Errorf("checksum %s does not match the manifest's %s", apk.EncodeChecksum(pk.Info.Checksum), p.Checksum)
			}
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
	if err != nil {
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
	xattrs := map[string]string{}
	var xa []db.Xattr
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
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
		if err := st.write(target, h, content, mode, uid, gid, xattrs); err != nil {
			return err
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

// scriptEnv is the whole environment apk-tools 2.14 gives a script
// (apk_db_run_script); we add SOURCE_DATE_EPOCH so that what scripts make
// (an initramfs, caches) is dated by the build, not by the clock.
const scriptPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// runScript runs one of the package's scripts, if it has it, exactly as
// apk-tools 2.14 does (apk_ipkg_run_script, apk_db_run_script): written
// to lib/apk/exec/NAME-VERSION.TYPE (mode 0755; the directory 0700 when
// apk must make it), the file itself executed in a chroot of the target
// with the working directory at its root, umask 022, argv[0] the script
// type ("post-install") and then args (the new version for install
// scripts, the changed directories for a trigger), and nothing in the
// environment but PATH; then removed. A failure names the script and
// shows its output.
func (st *state) runScript(inst *db.Installed, t db.ScriptType, args ...string) error {
	script := inst.Scripts[t]
	if script == nil {
		return nil
	}
	name := inst.Package.String() + "." + t.String()
	st.in.logf("Executing %s\n", name)
	dir, dirMode := "lib/apk/exec", uint32(0o700)
	if st.legacy {
		// apk 2.12: var/cache/misc, made 0755 when missing.
		dir, dirMode = "var/cache/misc", 0o755
	}
	rel := dir + "/" + name
	if err := st.root.Mkdir(dir, dirMode, 0, 0); err != nil {
		return err
	}
	if err := st.root.WriteFile(rel, bytes.NewReader(script), 0o755, 0, 0, nil, st.mtime); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(st.in.Root, rel))
	if len(args) == 0 {
		args = []string{inst.Package.Version}
	}
	env := []string{scriptPath, "SOURCE_DATE_EPOCH=" + strconv.FormatInt(st.mtime, 10)}
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	// The script may have added users or groups.
	defer st.ids.reset()
	return run(st.in.Root, env, st.in.Log, name, "/"+rel, append([]string{t.String()}, args...))
}

// Chroot runs argv (argv[0] an absolute path inside root) in a chroot of
// root, with /dev, /proc and /sys bind-mounted when mount is set and
// SOURCE_DATE_EPOCH=epoch in its environment, its
// output copied to log. A failure is an error naming what (a script, a
// run step) with the output.
func Chroot(root string, mount bool, epoch int64, log io.Writer, what string, argv ...string) error {
	if mount {
		unmount, err := mountSpecial(root)
		if err != nil {
			return err
		}
		defer unmount()
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
		"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)}
	return run(root, env, log, what, argv[0], argv)
}

// run executes the file at path (inside root) with argv in a chroot of
// root, working directory its root, its output copied to log.
func run(root string, env []string, log io.Writer, what, path string, argv []string) error {
	var out bytes.Buffer
	cmd := &exec.Cmd{Path: path, Args: argv, Dir: "/", Env: env, Stdout: &out, Stderr: &out,
		SysProcAttr: &syscall.SysProcAttr{Chroot: root}}
	err := cmd.Run()
	if out.Len() > 0 && log != nil {
		log.Write(out.Bytes())
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if msg != "" {
			msg = ":\n" + msg
		}
		return fmt.Errorf("%s failed (%v)%s", what, err, msg)
	}
	return nil
}

// mountSpecial bind-mounts /dev, /proc and /sys into the target.
func mountSpecial(root string) (func(), error) {
	var done []string
	undo := func() {
		for i := len(done) - 1; i >= 0; i-- {
			unix.Unmount(done[i], unix.MNT_DETACH)
		}
	}
	for _, m := range []string{"dev", "proc", "sys"} {
		dst := filepath.Join(root, m)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			undo()
			return nil, err
		}
		if err := unix.Mount("/"+m, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			undo()
			return nil, fmt.Errorf("bind-mount /%s into the target: %w", m, err)
		}
		done = append(done, dst)
	}
	return undo, nil
}

// runTriggers is apk's fire_triggers and run_triggers: after all
// packages, each newly installed package with triggers (all of them, in
// an initial install) is given every directory of the database that one
// of its trigger globs matches (with FNM_PATHNAME), in the order apk's
// hash of directories gives them, and its trigger script runs, in
// install order, with those directories as arguments.
func (st *state) runTriggers() error {
	dirs := st.hashOrder()
	for _, ps := range st.pkgs {
		inst := ps.inst
		if len(inst.Package.Triggers) == 0 || inst.Scripts[db.ScriptTrigger] == nil {
			continue
		}
		var hit []string
		for _, name := range dirs {
			rooted := "/" + name
			for _, glob := range inst.Package.Triggers {
				if !strings.HasPrefix(glob, "/") {
					continue
				}
				if ok, _ := path.Match(glob, rooted); ok {
					hit = append(hit, rooted)
					break
				}
			}
		}
		if len(hit) == 0 {
			continue
		}
		if err := st.runScript(inst, db.ScriptTrigger, hit...); err != nil {
			return fmt.Errorf("%s: %w", inst.Package.String(), err)
		}
	}
	return nil
}

// writeDB writes the apk database and configuration.
func (st *state) writeDB(d *pkgdisk.Reader) error {
	// installed lists the packages sorted; scripts.tar and triggers
	// follow the installation order, as apk's list of installed packages.
	order := make([]*db.Installed, len(st.pkgs))
	for i, ps := range st.pkgs {
		order[i] = ps.inst
	}
	pkgs := slices.Clone(order)
	if !st.legacy {
		db.SortInstalled(pkgs) // apk 2.12 kept the install order
	}
	write := func(name string, data []byte) error {
		return st.root.WriteFile(name, bytes.NewReader(data), 0o644, 0, 0, nil, st.mtime)
	}
	encode := func(name string, enc func(w io.Writer) error) error {
		var b bytes.Buffer
		if err := enc(&b); err != nil {
			return err
		}
		return write(name, b.Bytes())
	}
	lines := func(l []string) []byte {
		if len(l) == 0 {
			return nil
		}
		return []byte(strings.Join(l, "\n") + "\n")
	}
	var world []apk.Dependency
	for _, w := range d.Manifest.World {
		dep, err := apk.ParseDependency(w)
		if err != nil {
			return fmt.Errorf("world: %w", err)
		}
		world = append(world, dep)
	}
	// apk's solver sorts the world by name (apk_name_cmp_display) and
	// writes it one dependency a line, ending with a newline even when
	// it is empty.
	slices.SortStableFunc(world, func(a, b apk.Dependency) int { return apk.CompareNames(a.Name, b.Name) })
	var wb strings.Builder
	for i, dep := range world {
		if i > 0 {
			wb.WriteByte('\n')
		}
		wb.WriteString(dep.String())
	}
	wb.WriteByte('\n')
	steps := []func() error{
		func() error {
			return encode("lib/apk/db/installed", func(w io.Writer) error { return db.WriteInstalled(w, pkgs) })
		},
		func() error {
			return encode("lib/apk/db/scripts.tar", func(w io.Writer) error { return db.WriteScripts(w, db.ScriptsOf(order, st.mtime)) })
		},
		func() error {
			return encode("lib/apk/db/triggers", func(w io.Writer) error { return db.WriteTriggers(w, db.TriggersOf(order)) })
		},
		func() error { return write("etc/apk/world", []byte(wb.String())) },
		func() error { return write("etc/apk/repositories", lines(d.Manifest.Repositories)) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
