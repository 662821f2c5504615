// Package install installs verified APK packages into a target root the
// way apk-tools 2.14 does for `apk add --root TARGET --initdb`: files
// extracted in install order (every path resolved inside the target),
// .pre-install and .post-install run with the target's own /bin/sh in a
// chroot of the target, triggers run after all packages, replaces and
// file conflicts handled, and lib/apk/db/{installed,scripts.tar,triggers}
// and /etc/apk/{world,repositories,keys} written in apk's formats.
//
// It runs inside the build VM (as PID 1's child work, as root); tests run
// it on the host as root.
package install

import (
	"archive/tar"
	"bytes"
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
)

// Installer installs into Root.
type Installer struct {
	Root string
	// Log receives script output and progress lines; nil discards them.
	Log io.Writer
	// MountSpecial bind-mounts /dev, /proc and /sys into the target while
	// scripts run (the agent sets it; host tests need not).
	MountSpecial bool
	// Phase, when set, is told each package as it is installed.
	Phase func(what string)
}

type owned struct {
	pkg int    // index into pkgs
	dir string // the Dir's Name
}

type state struct {
	in      *Installer
	root    *fsroot.Root
	pkgs    []*db.Installed
	owner   map[string]owned // file path -> owner
	touched map[string]bool  // directories changed in this transaction ("/usr/bin")
	mtime   int64
}

// Install installs every package of the disk, in its order, and writes
// the apk database. The first error stops it with the package named.
func (in *Installer) Install(d *pkgdisk.Reader) error {
	r, err := fsroot.Open(in.Root)
	if err != nil {
		return err
	}
	defer r.Close()
	st := &state{in: in, root: r, owner: map[string]owned{}, touched: map[string]bool{}, mtime: d.Manifest.SourceDateEpoch}
	kr := sign.NewKeyring()
	for name, pem := range d.Keys {
		if err := kr.AddPEM(name, pem); err != nil {
			return err
		}
	}
	if err := st.prepare(d); err != nil {
		return err
	}
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
	if err := st.runTriggers(); err != nil {
		return err
	}
	return st.writeDB(d)
}

func (in *Installer) logf(format string, a ...any) {
	if in.Log != nil {
		fmt.Fprintf(in.Log, format, a...)
	}
}

// prepare makes the directories apk's database lives in and the keys.
func (st *state) prepare(d *pkgdisk.Reader) error {
	for _, p := range []string{"etc", "etc/apk", "etc/apk/keys", "lib", "lib/apk", "lib/apk/db", "lib/apk/exec", "var", "var/cache", "var/cache/apk", "tmp"} {
		mode := uint32(0o755)
		if p == "tmp" {
			mode = 0o1777
		}
		if err := st.root.Mkdir(p, mode, 0, 0); err != nil {
			return err
		}
	}
	for name, pem := range d.Keys {
		if err := st.root.WriteFile("etc/apk/keys/"+name, bytes.NewReader(pem), 0o644, 0, 0, nil, st.mtime); err != nil {
			return err
		}
	}
	return nil
}

func (st *state) installOne(p pkgdisk.Package, r io.Reader, kr *sign.Keyring) error {
	inst := &db.Installed{RepositoryTag: strings.TrimPrefix(p.Tag, "@")}
	idx := len(st.pkgs)
	st.pkgs = append(st.pkgs, inst)
	dirIndex := map[string]int{}
	dirOf := func(name string) *db.Dir {
		i, ok := dirIndex[name]
		if !ok {
			inst.Dirs = append(inst.Dirs, db.Dir{Name: name})
			i = len(inst.Dirs) - 1
			dirIndex[name] = i
		}
		return &inst.Dirs[i]
	}
	_, err := apkfile.Read(r, apkfile.ReadOptions{
		Keys: kr,
		Control: func(pk *apkfile.Package) error {
			inst.Package = *pk.Info
			for name, data := range pk.Scripts {
				if t, ok := db.ParseScriptType(name); ok {
					inst.Scripts[t] = data
				}
			}
			want, err := apk.DecodeChecksum(p.Checksum)
			if err == nil && !bytes.Equal(want, pk.Info.Checksum) {
				return fmt.Errorf("checksum %s does not match the manifest's %s", apk.EncodeChecksum(pk.Info.Checksum), p.Checksum)
			}
			return st.runScript(inst, db.ScriptPreInstall)
		},
		Entry: func(h *tar.Header, content io.Reader) error {
			return st.extract(idx, inst, h, content, dirOf)
		},
	})
	if err != nil {
		return err
	}
	return st.runScript(inst, db.ScriptPostInstall)
}

// extract writes one entry and records it in the package's database entry.
func (st *state) extract(idx int, inst *db.Installed, h *tar.Header, content io.Reader, dirOf func(string) *db.Dir) error {
	p := h.Name
	mode := uint32(h.Mode) & 0o7777
	xattrs := map[string]string{}
	var xa []db.Xattr
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			xattrs[name] = v
			xa = append(xa, db.Xattr{Name: name, Value: []byte(v)})
		}
	}
	dirName := path.Dir(p)
	if dirName == "." {
		dirName = ""
	}
	st.touched["/"+dirName] = true
	if h.Typeflag == tar.TypeDir {
		st.touched["/"+p] = true
		if err := st.root.Mkdir(p, mode, h.Uid, h.Gid); err != nil {
			return err
		}
		d := dirOf(p)
		d.ACL = aclOf(h.Uid, h.Gid, mode, xa, db.DefaultDirACL)
		return nil
	}
	// A file: check who owns it.
	if o, ok := st.owner[p]; ok && o.pkg != idx {
		prev := st.pkgs[o.pkg]
		if !replaces(&inst.Package, prev.Package.Name) {
			return fmt.Errorf("trying to overwrite /%s owned by %s", p, prev.Package.String())
		}
		dropFile(prev, o.dir, path.Base(p))
	}
	var err error
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		err = st.root.WriteFile(p, content, mode, h.Uid, h.Gid, xattrs, st.mtime)
	case tar.TypeSymlink:
		err = st.root.Symlink(p, h.Linkname, h.Uid, h.Gid, st.mtime)
	case tar.TypeLink:
		err = st.root.Link(p, h.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		t := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		err = st.root.Mknod(p, t|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))), h.Uid, h.Gid)
	default:
		return fmt.Errorf("/%s: unsupported entry type %q", p, h.Typeflag)
	}
	if err != nil {
		return err
	}
	st.owner[p] = owned{pkg: idx, dir: dirName}
	f := db.File{Name: path.Base(p)}
	if sum := h.PAXRecords["APK-TOOLS.checksum.SHA1"]; sum != "" {
		f.Checksum, _ = hex.DecodeString(sum)
	}
	if h.Typeflag != tar.TypeSymlink {
		f.ACL = aclOf(h.Uid, h.Gid, mode, xa, db.DefaultFileACL)
	}
	d := dirOf(dirName)
	d.Files = append(d.Files, f)
	return nil
}

// aclOf is the ACL apk records, or nil when it is the default.
func aclOf(uid, gid int, mode uint32, xa []db.Xattr, def db.ACL) *db.ACL {
	acl := db.ACL{UID: uid, GID: gid, Mode: mode, XattrChecksum: db.XattrChecksum(xa)}
	if uid == def.UID && gid == def.GID && mode == def.Mode && acl.XattrChecksum == nil {
		return nil
	}
	return &acl
}

func replaces(p *apk.Package, name string) bool {
	for _, r := range p.Replaces {
		if r.Name == name && !r.Conflict {
			return true
		}
	}
	return false
}

func dropFile(in *db.Installed, dir, name string) {
	for i := range in.Dirs {
		if in.Dirs[i].Name != dir {
			continue
		}
		in.Dirs[i].Files = slices.DeleteFunc(in.Dirs[i].Files, func(f db.File) bool { return f.Name == name })
	}
}

// runScript runs one of the package's scripts, if it has it, as apk does:
// written to lib/apk/exec, run with the target's /bin/sh in a chroot of
// the target, the new version as its argument. A failure names the
// script and shows its output.
func (st *state) runScript(inst *db.Installed, t db.ScriptType, args ...string) error {
	script := inst.Scripts[t]
	if script == nil {
		return nil
	}
	name := inst.Package.String() + "." + t.String()
	st.in.logf("Executing %s\n", name)
	rel := "lib/apk/exec/" + name
	if err := st.root.WriteFile(rel, bytes.NewReader(script), 0o755, 0, 0, nil, st.mtime); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(st.in.Root, rel))
	if len(args) == 0 {
		args = []string{inst.Package.Version}
	}
	return Chroot(st.in.Root, st.in.MountSpecial, st.mtime, st.in.Log, name, append([]string{"/bin/sh", "/" + rel}, args...)...)
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
	var out bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Path = argv[0]
	cmd.Dir = "/"
	// SOURCE_DATE_EPOCH: what scripts make (an initramfs, caches) can
	// be dated by the build, not by the clock.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
		"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Stdout, cmd.Stderr = &out, &out
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

// runTriggers runs, after all packages, the trigger script of each
// package whose trigger globs match directories changed in this
// transaction, with those directories as arguments.
func (st *state) runTriggers() error {
	var dirs []string
	for d := range st.touched {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, inst := range st.pkgs {
		if len(inst.Package.Triggers) == 0 || inst.Scripts[db.ScriptTrigger] == nil {
			continue
		}
		var hit []string
		for _, d := range dirs {
			for _, glob := range inst.Package.Triggers {
				if ok, _ := path.Match(glob, d); ok {
					hit = append(hit, d)
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
	pkgs := slices.Clone(st.pkgs)
	db.SortInstalled(pkgs)
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
	steps := []func() error{
		func() error {
			return encode("lib/apk/db/installed", func(w io.Writer) error { return db.WriteInstalled(w, pkgs) })
		},
		func() error {
			return encode("lib/apk/db/scripts.tar", func(w io.Writer) error { return db.WriteScripts(w, db.ScriptsOf(pkgs, st.mtime)) })
		},
		func() error {
			return encode("lib/apk/db/triggers", func(w io.Writer) error { return db.WriteTriggers(w, db.TriggersOf(pkgs)) })
		},
		func() error { return write("etc/apk/world", lines(d.Manifest.World)) },
		func() error { return write("etc/apk/repositories", lines(d.Manifest.Repositories)) },
	}
	if d.Manifest.Arch != "" {
		steps = append(steps, func() error { return write("etc/apk/arch", []byte(d.Manifest.Arch+"\n")) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
