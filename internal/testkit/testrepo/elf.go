package testrepo

import (
	"context"
	"debug/elf"
	"fmt"
	"path"
	"slices"
	"strings"
)

// ELFDeps returns an ELF file's program interpreter (PT_INTERP, "" for
// a static binary) and its DT_NEEDED libraries in file order.
func ELFDeps(file string) (interp string, needed []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, fmt.Errorf("elf: %s: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", nil, fmt.Errorf("elf: %s: PT_INTERP: %w", file, err)
		}
		interp = strings.TrimRight(string(b), "\x00")
	}
	needed, err = f.DynString(elf.DT_NEEDED)
	if err != nil {
		return "", nil, fmt.Errorf("elf: %s: DT_NEEDED: %w", file, err)
	}
	return interp, needed, nil
}

// LibClosure resolves the shared libraries a set of ELF files needs,
// transitively: lookup gives the on-disk path of a library by soname.
// It returns sonames mapped to paths, and the program interpreter the
// roots ask for (they must agree).
func LibClosure(roots []string, lookup func(soname string) (string, error)) (libs map[string]string, interp string, err error) {
	libs = map[string]string{}
	var queue []string
	for _, r := range roots {
		in, needed, err := ELFDeps(r)
		if err != nil {
			return nil, "", err
		}
		if in != "" {
			if interp != "" && interp != in {
				return nil, "", fmt.Errorf("elf: %s asks for interpreter %s, others for %s", r, in, interp)
			}
			interp = in
		}
		queue = append(queue, needed...)
	}
	for len(queue) > 0 {
		so := queue[0]
		queue = queue[1:]
		if _, done := libs[so]; done {
			continue
		}
		p, err := lookup(so)
		if err != nil {
			return nil, "", err
		}
		libs[so] = p
		_, needed, err := ELFDeps(p)
		if err != nil {
			return nil, "", err
		}
		queue = append(queue, needed...)
	}
	return libs, interp, nil
}

// debTriplet is Debian's multiarch directory name for a Debian arch.
func debTriplet(debArch string) string {
	switch debArch {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	case "armhf":
		return "arm-linux-gnueabihf"
	case "ppc64el":
		return "powerpc64le-linux-gnu"
	}
	return debArch + "-linux-gnu"
}

func libDirs(debArch string) []string {
	t := debTriplet(debArch)
	return []string{"lib/" + t, "usr/lib/" + t, "lib", "usr/lib", "lib64"}
}

// libPackageGuess gives the Debian package name policy predicts for a
// soname: libfoo.so.1 -> libfoo1, libfoo2.so.0 -> libfoo2-0; glibc's
// libraries are in libc6.
func libPackageGuess(soname string) string {
	base, ver, ok := strings.Cut(soname, ".so.")
	if !ok {
		return ""
	}
	switch base {
	case "libc", "libm", "libpthread", "libdl", "librt", "libresolv", "libutil", "libanl", "libBrokenLocale":
		return "libc6"
	}
	if strings.HasPrefix(base, "ld-linux") {
		return "libc6"
	}
	base = strings.ReplaceAll(strings.ToLower(base), "_", "-")
	if last := base[len(base)-1]; last >= '0' && last <= '9' {
		return base + "-" + ver
	}
	return base + ver
}

// glibcBundle finds the glibc shared libraries of Debian binaries in the
// Debian library packages they depend on.
type glibcBundle struct {
	debian  *Debian
	debArch string
	workDir string

	trees     []*DebTree
	loaded    map[string]bool
	candidate []string // library package names still to try, in order
}

func newGlibcBundle(d *Debian, debArch, workDir string) *glibcBundle {
	return &glibcBundle{debian: d, debArch: debArch, workDir: workDir, loaded: map[string]bool{}}
}

// addCandidates queues the lib* packages of a Depends field.
func (b *glibcBundle) addCandidates(depends string) {
	for _, n := range DependsNames(depends) {
		if strings.HasPrefix(n, "lib") && !b.loaded[n] && !slices.Contains(b.candidate, n) {
			b.candidate = append(b.candidate, n)
		}
	}
}

func (b *glibcBundle) find(soname string) *DebFile {
	for _, t := range b.trees {
		for _, d := range libDirs(b.debArch) {
			if f, err := t.Resolve(d + "/" + soname); err == nil {
				return f
			}
		}
	}
	return nil
}

func (b *glibcBundle) load(ctx context.Context, name string) error {
	b.loaded[name] = true
	b.candidate = slices.DeleteFunc(b.candidate, func(c string) bool { return c == name })
	deb, err := b.debian.Get(ctx, name, b.debArch)
	if err != nil {
		return err
	}
	dirs := libDirs(b.debArch)
	t, err := ExtractDeb(ctx, deb, path.Join(b.workDir, deb.Package+"_"+deb.Arch), func(n string) bool {
		return slices.Contains(dirs, path.Dir(n))
	})
	if err != nil {
		return err
	}
	b.trees = append(b.trees, t)
	b.addCandidates(deb.Depends)
	return nil
}

// lookup finds soname in the packages loaded so far, loading more of the
// candidates (the one policy names first) until one has it.
func (b *glibcBundle) lookup(ctx context.Context, soname string) (string, error) {
	for {
		if f := b.find(soname); f != nil {
			return f.DiskPath, nil
		}
		if len(b.candidate) == 0 {
			return "", fmt.Errorf("glibc bundle: no Debian package among the dependencies provides %s", soname)
		}
		next := b.candidate[0]
		if g := libPackageGuess(soname); g != "" && slices.Contains(b.candidate, g) {
			next = g
		}
		if err := b.load(ctx, next); err != nil {
			return "", err
		}
	}
}

// Bundle resolves the libraries of the ELF binaries (extracted from the
// Debian package from) and returns soname -> disk path, the interpreter's
// file name and its disk path.
func (b *glibcBundle) Bundle(ctx context.Context, from *Deb, binaries []string) (libs map[string]string, interpName, interpPath string, err error) {
	b.addCandidates(from.Depends)
	if !b.loaded["libc6"] && !slices.Contains(b.candidate, "libc6") {
		b.candidate = append(b.candidate, "libc6")
	}
	libs, interp, err := LibClosure(binaries, func(so string) (string, error) { return b.lookup(ctx, so) })
	if err != nil {
		return nil, "", "", fmt.Errorf("debian %s: %w", from, err)
	}
	if interp == "" {
		return nil, "", "", fmt.Errorf("debian %s: %v: no program interpreter (static?)", from, binaries)
	}
	interpName = path.Base(interp)
	p, err := b.lookup(ctx, interpName)
	if err != nil {
		return nil, "", "", fmt.Errorf("debian %s: interpreter %s: %w", from, interp, err)
	}
	return libs, interpName, p, nil
}

// glibcWrapper is the shell script that stands in for a glibc program on
// a musl or busybox system: it runs the real binary through the bundled
// dynamic loader with the bundled libraries. libDir is the absolute
// in-package directory holding the loader, the libraries and the real
// binary; rel is the same directory relative to the wrapper's directory,
// used when the wrapper runs from outside its root (e.g. /target/sbin/x).
func glibcWrapper(tool, debPkg, libDir, rel, interpName string) []byte {
	return fmt.Appendf(nil, `#!/bin/sh
# %[1]s is a glibc program (from Debian's %[2]s). Run it through the glibc
# bundled in %[3]s so that it works on a musl/busybox system.
d=%[3]s
if [ ! -e "$d/%[1]s" ]; then
	case "$0" in
	*/*) d="${0%%/*}/%[4]s" ;;
	esac
fi
exec "$d/%[5]s" --library-path "$d" --argv0 "$0" "$d/%[1]s" "$@"
`, tool, debPkg, libDir, rel, interpName)
}
