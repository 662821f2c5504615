// Package apktools installs a package disk with Alpine's real apk-tools
// (the `installer: apk-tools` fidelity mode): the disk's tools tarball (an
// Alpine minirootfs, whose sbin/apk runs in a chroot of it) is unpacked,
// the verified packages go beside it as local repositories (one per
// repository tag, indexed with the host's index entries) with the trusted
// keys, the target is bind-mounted into it, and `apk --root /target
// --initdb add WORLD...` solves and installs the packages, running their
// scripts and triggers itself, as it does on an Alpine host.
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
	"time"

	"github.com/alpinist/alpinist/internal/rootfstar"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/index"
	"github.com/alpinist/alpinist/apk/sign"
)

// repoName is the directory of a tag's local repository.
func repoName(tag string) string {
	if tag == "" {
		return "main"
	}
	return "tag-" + tag
}

// Install installs the disk's packages into target using the apk of the
// tools tarball, unpacked into tools (a scratch directory).
func Install(d *pkgdisk.Reader, target, tools string, log io.Writer) (err error) {
	if !d.Manifest.Tools {
		return errors.New("apk-tools installer: the package disk carries no tools (an Alpine minirootfs)")
	}
	if err := unpackTools(d, tools); err != nil {
		return err
	}
	repoArgs, err := writeRepos(d, tools)
	if err != nil {
		return err
	}

	var mounts bindMounts
	defer mounts.unmountAll(&err)
	if err := mounts.bind(target, filepath.Join(tools, "target")); err != nil {
		return err
	}
	// apk runs in the tools' root with its /dev, /proc and /sys; the
	// target gets what apk itself makes (its /dev nodes, /proc mounted).
	for _, m := range []string{"dev", "proc", "sys"} {
		if err := mounts.bind("/"+m, filepath.Join(tools, m)); err != nil {
			return err
		}
	}
	if err := runApk(d, tools, repoArgs, log); err != nil {
		return err
	}
	// apk wrote the world; the repositories and keys are the spec's.
	return writeConfig(d, target)
}

// unpackTools unpacks the disk's tools tarball into tools, with the
// directories apk is given and the trusted keys.
func unpackTools(d *pkgdisk.Reader, tools string) error {
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
	return nil
}

// writeRepos writes the disk's packages as local repositories under
// tools/repo and returns apk's arguments naming them.
//
// A repository for apk per repository tag (REPO/ARCH/NAME-VER.apk
// and an index with the index's entries: its arch and size, which
// apk records), so that apk solves the world itself, pins tagged
// packages and writes its own world. The host verified the packages;
// the index is unsigned (--allow-untrusted), the packages' own
// signatures are checked against the keys.
func writeRepos(d *pkgdisk.Reader, tools string) ([]string, error) {
	kr := sign.NewKeyring()
	for name, pem := range d.Keys {
		if err := kr.AddPEM(name, pem); err != nil {
			return nil, err
		}
	}
	byTag := map[string][]*apk.Package{}
	var tags []string
	for {
		p, r, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		tag := strings.TrimPrefix(p.Tag, "@")
		info, err := writePackage(d, kr, tools, tag, p, r)
		if err != nil {
			return nil, err
		}
		if _, ok := byTag[tag]; !ok {
			tags = append(tags, tag)
		}
		byTag[tag] = append(byTag[tag], info)
	}
	var repoArgs []string
	for _, tag := range tags {
		pkgs := byTag[tag]
		index.Sort(pkgs)
		dir := filepath.Join(tools, "repo", repoName(tag))
		if err := index.WriteFile(filepath.Join(dir, d.Manifest.Arch, index.FileName), "alpinist", pkgs,
			index.WriteOptions{Unsigned: true, Mtime: time.Unix(d.Manifest.SourceDateEpoch, 0)}); err != nil {
			return nil, err
		}
		r := "/repo/" + repoName(tag)
		if tag != "" {
			r = "@" + tag + " " + r
		}
		repoArgs = append(repoArgs, "--repository", r)
	}
	return repoArgs, nil
}

// writePackage copies package p (read from r) into tag's repository,
// checking its signature against kr, and returns its index entry.
func writePackage(d *pkgdisk.Reader, kr *sign.Keyring, tools, tag string, p pkgdisk.Package, r io.Reader) (*apk.Package, error) {
	dir := filepath.Join(tools, "repo", repoName(tag), d.Manifest.Arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, p.Name+"-"+p.Version+".apk"))
	if err != nil {
		return nil, err
	}
	pk, err := apkfile.Read(io.TeeReader(r, f), apkfile.ReadOptions{Keys: kr})
	if err == nil {
		_, err = io.Copy(f, r)
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return nil, fmt.Errorf("apk-tools installer: %s-%s: %w", p.Name, p.Version, err)
	}
	info := *pk.Info
	info.Size = p.Size
	if p.Arch != "" {
		info.Arch = p.Arch
	}
	return &info, nil
}

// bindMounts are the bind mounts made, in order.
type bindMounts []string

// bind bind-mounts src on dst, making dst.
func (m *bindMounts) bind(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s on %s: %w", src, dst, err)
	}
	*m = append(*m, dst)
	return nil
}

// unmountAll undoes the mounts, last first; the first failure becomes
// *err if it is nil.
func (m *bindMounts) unmountAll(err *error) {
	mounts := *m
	for i := len(mounts) - 1; i >= 0; i-- {
		if e := unix.Unmount(mounts[i], unix.MNT_DETACH); e != nil && *err == nil {
			*err = fmt.Errorf("unmount %s: %w", mounts[i], e)
		}
	}
}

// runApk runs `apk --root /target --initdb add WORLD...` chrooted in
// tools, its output copied to log.
func runApk(d *pkgdisk.Reader, tools string, repoArgs []string, log io.Writer) error {
	cmdArgs := append([]string{"--root", "/target", "--initdb", "--no-network", "--no-cache", "--allow-untrusted", "--keys-dir", "/keys",
		"--arch", d.Manifest.Arch}, repoArgs...)
	cmdArgs = append(append(cmdArgs, "add"), d.Manifest.World...)
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
	return nil
}

// writeConfig writes the spec's repositories and keys into target.
func writeConfig(d *pkgdisk.Reader, target string) error {
	files := map[string]string{
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
