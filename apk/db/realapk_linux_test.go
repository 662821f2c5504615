package db

import (
	"bytes"
	"crypto/sha1"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// rootBuilder makes files in a root directory and records them in the
// Installed entries the way an installer does.
type rootBuilder struct {
	t    *testing.T
	root string
}

func (b *rootBuilder) pkg(name string, deps ...string) *Installed {
	sum := sha1.Sum([]byte("package " + name))
	in := &Installed{Package: apk.Package{
		Name: name, Version: "1.0-r0", Arch: "x86_64", Size: 1234, InstalledSize: 4096,
		Description: "test package " + name, URL: "https://example.org/" + name, License: "MIT",
		Origin: name, Maintainer: "Test <test@example.org>", BuildTime: 1700000000,
		Checksum: sum[:],
	}}
	for _, d := range deps {
		dep, err := apk.ParseDependency(d)
		if err != nil {
			b.t.Fatal(err)
		}
		in.Package.Depends = append(in.Package.Depends, dep)
	}
	return in
}

// dir records (and creates) a directory owned by in.
func (b *rootBuilder) dir(in *Installed, name string, acl *ACL) *Dir {
	for i := range in.Dirs {
		if in.Dirs[i].Name == name {
			return &in.Dirs[i]
		}
	}
	p := filepath.Join(b.root, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		b.t.Fatal(err)
	}
	a := acl
	if a == nil {
		a = &DefaultDirACL
	}
	b.own(p, a)
	in.Dirs = append(in.Dirs, Dir{Name: name, ACL: acl})
	return &in.Dirs[len(in.Dirs)-1]
}

func (b *rootBuilder) own(p string, a *ACL) {
	if err := os.Lchown(p, a.UID, a.GID); err != nil {
		b.t.Fatal(err)
	}
	if err := os.Chmod(p, unixMode(a.Mode)); err != nil {
		b.t.Fatal(err)
	}
}

func unixMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// file writes a regular file from r, hashing it as it streams.
func (b *rootBuilder) file(in *Installed, rel string, acl *ACL, r io.Reader) *File {
	d := b.dir(in, path.Dir(rel), nil)
	p := filepath.Join(b.root, rel)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		b.t.Fatal(err)
	}
	h := sha1.New()
	_, err = io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.t.Fatal(err)
	}
	a := acl
	if a == nil {
		a = &DefaultFileACL
	}
	b.own(p, a)
	d.Files = append(d.Files, File{Name: path.Base(rel), ACL: acl, Checksum: h.Sum(nil)})
	return &d.Files[len(d.Files)-1]
}

// symlink makes a symbolic link; apk records the SHA-1 of its target.
func (b *rootBuilder) symlink(in *Installed, rel, target string) {
	d := b.dir(in, path.Dir(rel), nil)
	if err := os.Symlink(target, filepath.Join(b.root, rel)); err != nil {
		b.t.Fatal(err)
	}
	sum := sha1.Sum([]byte(target))
	d.Files = append(d.Files, File{Name: path.Base(rel), ACL: &ACL{Mode: 0o777}, Checksum: sum[:]})
}

func (b *rootBuilder) write(name string, fn func(io.Writer) error) {
	p := filepath.Join(b.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// The real apk 2.14 reads a database written from scratch: it lists the
// packages and their files, audits the files as unchanged (contents,
// owners, modes, extended attributes), runs the scripts it finds in
// scripts.tar and the triggers registered in triggers when it removes a
// package, and writes back for the remaining packages exactly what we
// write.
func TestRealApkAcceptsWrittenDatabase(t *testing.T) {
	minirootfs.CanChroot(t)
	mini := minirootfs.Copy(t)
	b := &rootBuilder{t: t, root: filepath.Join(mini, "x")}

	// shell: a working /bin/sh inside the root, to run the scripts.
	shell := b.pkg("shell")
	for _, f := range []string{"bin/busybox", "lib/ld-musl-x86_64.so.1"} {
		src, err := os.Open(filepath.Join(mini, f))
		if err != nil {
			t.Fatal(err)
		}
		b.file(shell, f, &ACL{Mode: 0o755}, src)
		src.Close()
	}
	b.symlink(shell, "bin/sh", "busybox")
	b.dir(shell, "etc", nil)
	b.dir(shell, "etc/apk", nil) // as apk-tools owns it

	hello := b.pkg("hello", "shell")
	b.file(hello, "etc/hello.conf", &ACL{GID: 42, Mode: 0o640}, strings.NewReader("greeting=hello\n"))
	exe := b.file(hello, "usr/bin/hello", &ACL{Mode: 0o755}, strings.NewReader("#!/bin/sh\necho hello\n"))
	b.symlink(hello, "usr/bin/hi", "hello")
	b.dir(hello, "var", nil)
	b.dir(hello, "var/lib", nil)
	b.dir(hello, "var/lib/hello", &ACL{UID: 100, GID: 101, Mode: 0o2750})
	b.file(hello, "var/lib/hello/state", &ACL{UID: 100, GID: 101, Mode: 0o600}, strings.NewReader("0\n"))
	// An extended attribute, if the file system takes user attributes.
	xattrs := []Xattr{{"user.alpinist", []byte("yes")}, {"user.a", []byte{0, 1}}}
	hasXattr := true
	for _, x := range xattrs {
		if err := syscall.Setxattr(filepath.Join(b.root, "usr/bin/hello"), x.Name, x.Value, 0); err != nil {
			t.Logf("no extended attributes here (%v); not testing them", err)
			hasXattr = false
			break
		}
	}
	if hasXattr {
		exe.ACL.XattrChecksum = XattrChecksum(xattrs)
	}
	hello.Scripts[ScriptPostInstall] = []byte("#!/bin/sh\nexit 0\n")
	hello.Scripts[ScriptTrigger] = []byte("#!/bin/sh\necho \"trigger $*\" >> /trigger.log\n")
	hello.Package.Triggers = []string{"/usr/share/doc/*"}
	hello.RepositoryTag = ""

	doc := b.pkg("hello-doc", "hello")
	b.dir(doc, "usr", nil)
	b.dir(doc, "usr/share", nil)
	b.dir(doc, "usr/share/doc", nil)
	b.file(doc, "usr/share/doc/hello/README", nil, strings.NewReader("Say hello.\n"))
	doc.Scripts[ScriptPreDeinstall] = []byte("#!/bin/sh\necho \"pre-deinstall $*\" >> /deinstall.log\n")
	doc.Scripts[ScriptPostDeinstall] = []byte("#!/bin/sh\necho \"post-deinstall $*\" >> /deinstall.log\n")

	installOrder := []*Installed{shell, hello, doc}
	writeDB := func(pkgs []*Installed) (installed, scripts, triggers []byte) {
		sorted := append([]*Installed(nil), pkgs...)
		SortInstalled(sorted)
		var bi, bs, bt bytes.Buffer
		if err := WriteInstalled(&bi, sorted); err != nil {
			t.Fatal(err)
		}
		if err := WriteScripts(&bs, ScriptsOf(pkgs, 1)); err != nil {
			t.Fatal(err)
		}
		if err := WriteTriggers(&bt, TriggersOf(pkgs)); err != nil {
			t.Fatal(err)
		}
		return bi.Bytes(), bs.Bytes(), bt.Bytes()
	}
	inst, scr, trig := writeDB(installOrder)
	b.write("lib/apk/db/installed", func(w io.Writer) error { _, err := w.Write(inst); return err })
	b.write("lib/apk/db/scripts.tar", func(w io.Writer) error { _, err := w.Write(scr); return err })
	b.write("lib/apk/db/triggers", func(w io.Writer) error { _, err := w.Write(trig); return err })
	b.write("etc/apk/world", func(w io.Writer) error { _, err := io.WriteString(w, "hello\nhello-doc\n"); return err })
	t.Logf("installed:\n%s", inst)

	run := func(want string, args ...string) {
		t.Helper()
		out, err := minirootfs.Apk(mini, append([]string{"--root", "/x"}, args...)...)
		if err != nil {
			t.Fatalf("apk %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if out != want {
			t.Errorf("apk %s:\n%s\nwant:\n%s", strings.Join(args, " "), out, want)
		}
	}
	run("hello-1.0-r0\nhello-doc-1.0-r0\nshell-1.0-r0\n", "info", "-v")
	run("hello-1.0-r0 contains:\netc/hello.conf\nusr/bin/hello\nusr/bin/hi\nvar/lib/hello/state\n\n", "info", "-L", "hello")
	// etc is protected: apk audit reports files there that no package
	// owns, as it reports etc/apk/world on a real Alpine system.
	run("A etc/apk/world\n", "audit")
	run("A etc/apk/world\n", "audit", "--check-permissions")
	run("", "audit", "--system", "--check-permissions")
	run("", "audit", "--system", "--check-permissions", "/usr", "/var", "/bin", "/lib")

	// Removing hello-doc runs its deinstall scripts (found in scripts.tar
	// by checksum) and hello's trigger for /usr/share/doc/hello (from
	// triggers); apk then rewrites the database.
	out, err := minirootfs.Apk(mini, "--root", "/x", "del", "hello-doc")
	if err != nil {
		t.Fatalf("apk del: %v\n%s", err, out)
	}
	t.Logf("apk del:\n%s", out)
	for file, want := range map[string]string{
		"deinstall.log": "pre-deinstall 1.0-r0\npost-deinstall 1.0-r0\n",
		"trigger.log":   "trigger /usr/share/doc/hello\n",
	} {
		got, err := os.ReadFile(filepath.Join(b.root, file))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q (%v), want %q", file, got, err, want)
		}
	}
	// apk keeps the remaining packages in the order it read them (sorted),
	// so its scripts.tar and triggers follow that order.
	inst, scr, trig = writeDB([]*Installed{hello, shell})
	for name, want := range map[string][]byte{"installed": inst, "scripts.tar": scr, "triggers": trig} {
		got, err := os.ReadFile(filepath.Join(b.root, "lib/apk/db", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("apk rewrote %s differently from us:\n%s", name, firstDiff(want, got))
		}
	}
	run("hello-1.0-r0\nshell-1.0-r0\n", "info", "-v")
}
