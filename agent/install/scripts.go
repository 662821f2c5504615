package install

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/apk/db"
)

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
	st.refs.settle()
	clear(st.realDirs)
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
