package fleet

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/arch"
)

// HostImage is what the alpinist image made of this host's files holds:
// alpinist, the QEMU system emulators of the arches and what they load.
type HostImage struct {
	// Alpinist is the alpinist binary to put in (/usr/bin/alpinist).
	Alpinist string
	// Arches are the Alpine arches whose QEMU goes in (their emulators
	// must be installed here).
	Arches []string
}

// The image's user, and where its writable volumes go.
const (
	ImageUser     = "65532:65532"
	ImageCacheDir = cacheDir
)

// ldSearch finds the lines of ldd's output that name a library's path.
var lddPath = regexp.MustCompile(`(?m)(?:=> |^\s*)(/\S+) \(0x[0-9a-f]+\)$`)

// WriteTar writes the image's root file system as a tar: alpinist, each
// arch's qemu-system-* with the libraries ldd names for it, QEMU's
// modules (accel-tcg-*.so, with their libraries) and its firmware
// directories (what `qemu-system-* -L help` lists), the host's CA
// bundle, /etc/passwd and /etc/group with the user alpinist (65532), and
// /tmp and the cache directory, world-writable with the sticky bit.
// Links are followed: every file is stored at its path, whole.
func (h HostImage) WriteTar(w io.Writer) error {
	t := &treeWriter{tw: tar.NewWriter(w), seen: map[string]bool{}}
	if err := t.file("/usr/bin/alpinist", h.Alpinist, 0o755); err != nil {
		return err
	}
	if err := t.libs(h.Alpinist); err != nil {
		return err
	}
	var emulators []string
	for _, name := range h.Arches {
		a, err := arch.Get(name)
		if err != nil {
			return err
		}
		if !slices.Contains(emulators, a.QEMU.Binary) {
			emulators = append(emulators, a.QEMU.Binary)
		}
	}
	var dataDirs []string
	for _, e := range emulators {
		bin, err := exec.LookPath(e)
		if err != nil {
			return fmt.Errorf("fleet: image: %s is not installed here: %w", e, err)
		}
		if err := t.hostFile(bin); err != nil {
			return err
		}
		if err := t.libs(bin); err != nil {
			return err
		}
		out, err := exec.Command(bin, "-L", "help").Output()
		if err != nil {
			return fmt.Errorf("fleet: image: %s -L help: %w", bin, err)
		}
		for _, d := range strings.Fields(string(out)) {
			if d = filepath.Clean(d); !slices.Contains(dataDirs, d) {
				dataDirs = append(dataDirs, d)
			}
		}
	}
	// QEMU's modules: Debian's QEMU loads its TCG accelerator from there.
	modules, _ := filepath.Glob("/usr/lib/*-linux-*/qemu")
	modules = append(modules, "/usr/lib64/qemu", "/usr/lib/qemu")
	for _, d := range append(dataDirs, modules...) {
		if err := t.hostDir(d); err != nil {
			return err
		}
	}
	for _, ca := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"} {
		if _, err := os.Stat(ca); err == nil {
			if err := t.file("/etc/ssl/certs/ca-certificates.crt", ca, 0o644); err != nil {
				return err
			}
			break
		}
	}
	for _, f := range []struct{ path, text string }{
		{"/etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nalpinist:x:65532:65532:alpinist:/tmp:/sbin/nologin\n"},
		{"/etc/group", "root:x:0:\nalpinist:x:65532:\n"},
	} {
		if err := t.text(f.path, f.text); err != nil {
			return err
		}
	}
	for _, d := range []string{"/tmp", ImageCacheDir} {
		if err := t.dir(d, 0o1777); err != nil {
			return err
		}
	}
	if err := t.dir(planDir, 0o755); err != nil {
		return err
	}
	return t.tw.Close()
}

// treeWriter writes a tree's entries, each path once, parents first.
type treeWriter struct {
	tw   *tar.Writer
	seen map[string]bool
}

func (t *treeWriter) dir(p string, mode int64) error {
	if p == "/" || t.seen[p] {
		return nil
	}
	if err := t.dir(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	t.seen[p] = true
	return t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode})
}

// file writes the host file src (its links followed) at dst.
func (t *treeWriter) file(dst, src string, mode int64) error {
	if t.seen[dst] {
		return nil
	}
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("fleet: image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fleet: image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("fleet: image: %s is not a regular file", src)
	}
	if err := t.dir(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	t.seen[dst] = true
	if mode == 0 {
		mode = int64(fi.Mode().Perm())
	}
	if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: mode, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
		return err
	}
	if _, err := io.Copy(t.tw, bufio.NewReaderSize(f, 1<<20)); err != nil {
		return fmt.Errorf("fleet: image: %s: %w", src, err)
	}
	return nil
}

// hostFile writes a host file at its own path.
func (t *treeWriter) hostFile(p string) error { return t.file(p, p, 0) }

func (t *treeWriter) text(p, text string) error {
	if err := t.dir(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	t.seen[p] = true
	if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: 0o644, Size: int64(len(text))}); err != nil {
		return err
	}
	_, err := io.WriteString(t.tw, text)
	return err
}

// hostDir writes a host directory's regular files (links followed),
// and the libraries of its shared objects; a directory that is not
// there is passed over.
func (t *treeWriter) hostDir(d string) error {
	if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var files []string
	err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleet: image: %w", err)
	}
	for _, p := range files {
		if err := t.hostFile(p); err != nil {
			return err
		}
		if strings.HasSuffix(p, ".so") {
			if err := t.libs(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// libs writes the libraries ldd finds for an ELF file (none for a
// static one). A library ldd does not find is left out: a module that
// needs it (an audio back end) is not one a build VM loads.
func (t *treeWriter) libs(bin string) error {
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		return fmt.Errorf("fleet: image: ldd is needed to find the libraries of %s: %w", bin, err)
	}
	out, _ := exec.Command(ldd, bin).Output() // "not a dynamic executable" fails: nothing to add
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		if err := t.hostFile(m[1]); err != nil {
			return err
		}
	}
	return nil
}
