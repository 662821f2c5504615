// Package apktools installs a package disk with Alpine's real apk-tools
// (the `installer: apk-tools` fidelity mode): the disk's tools tarball (an
// Alpine minirootfs, whose sbin/apk runs in a chroot of it) is unpacked,
// the verified packages and trusted keys are put beside it, the target is
// bind-mounted into it, and `apk --root /target --initdb add` installs
// the packages, running their scripts and triggers itself.
package apktools

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/alpinist/alpinist/internal/rootfstar"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/pkgdisk"
)

// Install installs the disk's packages into target using the apk of the
// tools tarball, unpacked into tools (a scratch directory).
func Install(d *pkgdisk.Reader, target, tools string, log io.Writer) (err error) {
	if !d.Manifest.Tools {
		return errors.New("apk-tools installer: the package disk carries no tools (an Alpine minirootfs)")
	}
	tr, err := d.Tools()
	if err != nil {
		return err
	}
	if err := rootfstar.Unpack(tr, tools); err != nil {
		return fmt.Errorf("apk-tools installer: unpacking the tools: %w", err)
	}
	if _, err := os.Stat(filepath.Join(tools, "sbin", "apk")); err != nil {
		return errors.New("apk-tools installer: the tools tarball has no sbin/apk (an Alpine minirootfs is needed)")
	}
	for _, dir := range []string{"pkgs", "keys", "target"} {
		if err := os.MkdirAll(filepath.Join(tools, dir), 0o755); err != nil {
			return err
		}
	}
	for name, pem := range d.Keys {
		if err := os.WriteFile(filepath.Join(tools, "keys", name), pem, 0o644); err != nil {
			return err
		}
	}
	var args []string
	for i := 0; ; i++ {
		p, r, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := fmt.Sprintf("%04d-%s-%s.apk", i, p.Name, p.Version)
		f, err := os.Create(filepath.Join(tools, "pkgs", name))
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if err = errors.Join(err, f.Close()); err != nil {
			return err
		}
		args = append(args, "/pkgs/"+name)
	}

	var mounts []string
	defer func() {
		for i := len(mounts) - 1; i >= 0; i-- {
			if e := unix.Unmount(mounts[i], unix.MNT_DETACH); e != nil && err == nil {
				err = fmt.Errorf("unmount %s: %w", mounts[i], e)
			}
		}
	}()
	bind := func(src, dst string) error {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s on %s: %w", src, dst, err)
		}
		mounts = append(mounts, dst)
		return nil
	}
	if err := bind(target, filepath.Join(tools, "target")); err != nil {
		return err
	}
	for _, m := range []string{"dev", "proc", "sys"} {
		if err := bind("/"+m, filepath.Join(tools, m)); err != nil {
			return err
		}
		if err := bind("/"+m, filepath.Join(target, m)); err != nil {
			return err
		}
	}
	cmdArgs := append([]string{"--root", "/target", "--initdb", "--no-network", "--no-cache", "--force-non-repository", "--keys-dir", "/keys",
		"--arch", d.Manifest.Arch, "add"}, args...)
	var out bytes.Buffer
	cmd := exec.Command("/sbin/apk", cmdArgs...)
	cmd.Path = "/sbin/apk"
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "SOURCE_DATE_EPOCH=" + strconv.FormatInt(d.Manifest.SourceDateEpoch, 10)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: tools}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, log), io.MultiWriter(&out, log)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apk-tools installer: apk add failed (%v):\n%s", err, tail(out.String()))
	}
	// apk recorded the files it was given; the world is the spec's.
	files := map[string]string{
		"etc/apk/world":        strings.Join(d.Manifest.World, "\n") + "\n",
		"etc/apk/repositories": strings.Join(d.Manifest.Repositories, "\n") + "\n",
	}
	for name, pem := range d.Keys {
		files["etc/apk/keys/"+name] = string(pem)
	}
	for p, data := range files {
		full := filepath.Join(target, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func tail(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > 30 {
		l = l[len(l)-30:]
	}
	return strings.Join(l, "\n")
}
