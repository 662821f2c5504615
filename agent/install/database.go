package install

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/db"
)

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
