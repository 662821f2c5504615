package testrepo

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// ZoneinfoDir is where tzdata installs the compiled time zones.
const ZoneinfoDir = "/usr/share/zoneinfo"

// TzdataZones are zones the generated tzdata is checked to hold (as
// names under ZoneinfoDir), for tests to rely on. UTC is a symlink to
// Etc/UTC, as in Debian; the others are regular files.
var TzdataZones = []string{"UTC", "Europe/Paris", "America/New_York"}

// Subtrees of Debian's zoneinfo the tzdata package leaves out: the
// leap-second ("right/") and POSIX-named ("posix/") copies of every zone,
// which Alpine's tzdata does not ship either, and localtime, Debian's
// absolute link to /etc/localtime.
var tzdataSkip = []string{"right", "posix", "localtime"}

// buildTzdata makes tzdata from Debian's tzdata (Architecture: all):
// /usr/share/zoneinfo/** as Alpine lays it out, Debian's regular files
// and relative symlinks kept as they are; Debian's documentation,
// lintian overrides and the right/ and posix/ trees are left out.
func buildTzdata(ctx context.Context, b *builder) ([]*Pkg, error) {
	deb, err := b.debian.Get(ctx, "tzdata", "all")
	if err != nil {
		return nil, err
	}
	// 2026f-0+deb12u1 -> 2026f-r0, the form of Alpine's tzdata versions.
	ver, err := APKVersion(deb.Version)
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", deb, err)
	}
	dt, err := ExtractDeb(ctx, deb, b.workDir("tzdata"), keepZoneinfo)
	if err != nil {
		return nil, err
	}
	p := newPkg("tzdata", ver, b.arch, "Timezone data (from Debian "+deb.Package+" "+deb.Version+")", "Public-Domain")
	if err := tzdataTree(p.Tree, dt); err != nil {
		return nil, err
	}
	return []*Pkg{p}, nil
}

// keepZoneinfo selects the .deb entries tzdata keeps.
func keepZoneinfo(name string) bool {
	dir := strings.TrimPrefix(ZoneinfoDir, "/")
	if name == dir {
		return true
	}
	rel, ok := strings.CutPrefix(name, dir+"/")
	if !ok {
		return false
	}
	top, _, _ := strings.Cut(rel, "/")
	for _, s := range tzdataSkip {
		if top == s {
			return false
		}
	}
	return true
}

// tzdataTree adds the extracted zoneinfo entries to t, in path order:
// directories, regular files and symlinks, then hard links (whose
// targets must be in the tree first). Every symlink must be relative and
// lead to a regular file of the kept tree, and TzdataZones must be there.
func tzdataTree(t *Tree, dt *DebTree) error {
	names := sortedKeys(dt.Files)
	var links []*DebFile
	for _, name := range names {
		f := dt.Files[name]
		var err error
		switch f.Type {
		case TypeDir:
			err = t.Dir(name, f.Mode, 0, 0)
		case TypeFile:
			err = t.DiskFile(name, f.Mode, f.DiskPath)
		case TypeSymlink:
			if path.IsAbs(f.Target) {
				return fmt.Errorf("debian %s: %s: absolute symlink to %s", dt.Deb, name, f.Target)
			}
			if _, rerr := dt.Resolve(name); rerr != nil {
				return fmt.Errorf("symlink %s -> %s: %w", name, f.Target, rerr)
			}
			err = t.Symlink(name, f.Target)
		case TypeHardlink:
			links = append(links, f)
		}
		if err != nil {
			return fmt.Errorf("debian %s: %w", dt.Deb, err)
		}
	}
	for _, f := range links {
		if err := t.Hardlink(f.Path, f.Target); err != nil {
			return fmt.Errorf("debian %s: %w", dt.Deb, err)
		}
	}
	for _, z := range TzdataZones {
		if _, err := dt.Resolve(path.Join(ZoneinfoDir, z)); err != nil {
			return fmt.Errorf("zone %s: %w", z, err)
		}
	}
	return nil
}
