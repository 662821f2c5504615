package testrepo

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/version"
)

// Pkg is one package to build: its metadata, file tree and scripts.
type Pkg struct {
	// Meta carries the .PKGINFO fields; Size, InstalledSize, Checksum and
	// DataHash are filled in by the .apk writer.
	Meta apk.Package
	Tree *Tree
	// Scripts maps a script name (pre-install, post-install, pre-upgrade,
	// post-upgrade, pre-deinstall, post-deinstall, trigger) to its text.
	Scripts map[string][]byte
}

// ScriptNames are the install scripts an APK v2 package may carry, in
// the order apk-tools lists them.
var ScriptNames = []string{"pre-install", "post-install", "pre-deinstall", "post-deinstall", "pre-upgrade", "post-upgrade", "trigger"}

// Build time and common metadata of every generated package.
const (
	// BuildTime is the fixed build date (2024-01-01T00:00:00Z) of every
	// package and the mtime of every file, so output is reproducible.
	BuildTime  = 1704067200
	maintainer = "alpinist test repository <alpinist@example.invalid>"
	projectURL = "https://github.com/alpinist/alpinist"
)

// builder builds one architecture's packages.
type builder struct {
	arch    string // Alpine arch
	debArch string
	debian  *Debian
	work    string // scratch directory for this arch
	log     *slog.Logger
}

func (b *builder) workDir(name string) string { return filepath.Join(b.work, name) }

func newPkg(name, ver, arch, desc, license string) *Pkg {
	return &Pkg{
		Meta: apk.Package{
			Name: name, Version: ver, Arch: arch, Description: desc,
			URL: projectURL, License: license, Origin: name,
			Maintainer: maintainer, BuildTime: BuildTime,
		},
		Tree:    NewTree(),
		Scripts: map[string][]byte{},
	}
}

// deps parses dependency expressions; they are constants of this
// package, so a bad one is a programming error.
func deps(exprs ...string) []apk.Dependency {
	var out []apk.Dependency
	for _, e := range exprs {
		d, err := apk.ParseDependency(e)
		if err != nil {
			panic(err)
		}
		out = append(out, d)
	}
	return out
}

// must panics on a tree error: trees built from constants cannot fail
// unless this package is wrong.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

// packageBuilders are the package families, in build order.
var packageBuilders = []struct {
	name  string
	build func(ctx context.Context, b *builder) ([]*Pkg, error)
}{
	{"base", buildBase},
	{"busybox", buildBusybox},
	{"tzdata", buildTzdata},
	{"linux-virt", buildKernel},
	{"linux-lts", buildLTS},
	{"syslinux", buildSyslinux},
	{"grub", buildGrub},
	{"test packages", buildTestPackages},
}

// checkPkgs verifies what the generator made before it is written:
// unique name-version pairs and valid apk versions.
func checkPkgs(pkgs []*Pkg) error {
	seen := map[string]bool{}
	for _, p := range pkgs {
		if !version.Valid(p.Meta.Version) {
			return fmt.Errorf("testrepo: %s: invalid apk version %q", p.Meta.Name, p.Meta.Version)
		}
		if seen[p.Meta.String()] {
			return fmt.Errorf("testrepo: %s built twice", p.Meta.String())
		}
		seen[p.Meta.String()] = true
		for name := range p.Scripts {
			if !slices.Contains(ScriptNames, name) {
				return fmt.Errorf("testrepo: %s: unknown script %q", p.Meta.Name, name)
			}
		}
		if len(p.Meta.Triggers) > 0 && p.Scripts["trigger"] == nil {
			return fmt.Errorf("testrepo: %s: triggers without a trigger script", p.Meta.Name)
		}
	}
	return nil
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
