package testrepo

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/alpinist/alpinist/arch"
)

// bundleTools adds glibc programs from a Debian package to tree: each
// real binary and the libraries it needs (with the dynamic loader) go to
// libDir, and a wrapper script at wrapperDir/TOOL runs it through them.
func bundleTools(ctx context.Context, b *builder, t *Tree, from *DebTree, tools map[string]string, libDir, wrapperDir string) error {
	var bins []string
	names := sortedKeys(tools)
	for _, tool := range names {
		f, err := from.Resolve(tools[tool])
		if err != nil {
			return err
		}
		bins = append(bins, f.DiskPath)
	}
	gb := newGlibcBundle(b.debian, b.debArch, b.workDir("glibc-"+path.Base(libDir)))
	libs, interpName, interpPath, err := gb.Bundle(ctx, from.Deb, bins)
	if err != nil {
		return err
	}
	if err := t.DiskFile(path.Join(libDir, interpName), 0o755, interpPath); err != nil {
		return err
	}
	for _, so := range sortedKeys(libs) {
		if so == interpName {
			continue
		}
		if err := t.DiskFile(path.Join(libDir, so), 0o755, libs[so]); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel("/"+wrapperDir, "/"+libDir)
	if err != nil {
		return err
	}
	for i, tool := range names {
		if err := t.DiskFile(path.Join(libDir, tool), 0o755, bins[i]); err != nil {
			return err
		}
		w := glibcWrapper(tool, from.Deb.Package, "/"+libDir, filepath.ToSlash(rel), interpName)
		if err := t.File(path.Join(wrapperDir, tool), 0o755, w); err != nil {
			return err
		}
	}
	b.log.Debug("bundled glibc", "arch", b.arch, "tools", names, "libs", sortedKeys(libs))
	return nil
}

// buildSyslinux makes syslinux (x86_64 and x86, as in Alpine) from Debian's
// syslinux-common, isolinux and extlinux: /usr/share/syslinux/{mbr.bin,
// gptmbr.bin,altmbr.bin,*.c32,memdisk,isolinux.bin,isohdpfx.bin} and /sbin/extlinux, a wrapper running
// Debian's glibc extlinux through the glibc bundled in
// /usr/libexec/syslinux.
func buildSyslinux(ctx context.Context, b *builder) ([]*Pkg, error) {
	if !arch.HasBIOS(b.arch) {
		return nil, nil
	}
	common, err := b.debian.Get(ctx, "syslinux-common", "all")
	if err != nil {
		return nil, err
	}
	ext, err := b.debian.Get(ctx, "extlinux", b.debArch)
	if err != nil {
		return nil, err
	}
	ver, err := APKVersion(ext.Version)
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", ext, err)
	}
	ct, err := ExtractDeb(ctx, common, b.workDir("syslinux-common"), func(n string) bool {
		return path.Dir(n) == "usr/lib/syslinux/mbr" || path.Dir(n) == "usr/lib/syslinux/modules/bios" || n == "usr/lib/syslinux/memdisk"
	})
	if err != nil {
		return nil, err
	}
	et, err := ExtractDeb(ctx, ext, b.workDir("extlinux"), func(n string) bool { return n == "usr/bin/extlinux" })
	if err != nil {
		return nil, err
	}
	// ISOLINUX and its isohybrid MBR, where Alpine's syslinux has them.
	iso, err := b.debian.Get(ctx, "isolinux", "all")
	if err != nil {
		return nil, err
	}
	it, err := ExtractDeb(ctx, iso, b.workDir("isolinux"), func(n string) bool {
		return n == "usr/lib/ISOLINUX/isolinux.bin" || n == "usr/lib/ISOLINUX/isohdpfx.bin"
	})
	if err != nil {
		return nil, err
	}
	p := newPkg("syslinux", ver, b.arch, "Boot loader for the Linux operating system (from Debian "+common.Package+" and "+ext.Package+" "+ext.Version+")", "GPL-2.0-or-later")
	p.Meta.Depends = deps("/bin/sh")
	t := p.Tree
	n := 0
	for _, name := range sortedKeys(ct.Files) {
		f := ct.Files[name]
		if f.Type != TypeFile {
			continue
		}
		base := path.Base(name)
		if path.Dir(name) == "usr/lib/syslinux/mbr" && !strings.HasSuffix(base, ".bin") {
			continue
		}
		if err := t.DiskFile("usr/share/syslinux/"+base, 0o644, f.DiskPath); err != nil {
			return nil, fmt.Errorf("debian %s: %s: %w", common, name, err)
		}
		n++
	}
	for _, name := range sortedKeys(it.Files) {
		if f := it.Files[name]; f.Type == TypeFile {
			if err := t.DiskFile("usr/share/syslinux/"+path.Base(name), 0o644, f.DiskPath); err != nil {
				return nil, fmt.Errorf("debian %s: %s: %w", iso, name, err)
			}
		}
	}
	for _, need := range []string{"mbr.bin", "gptmbr.bin", "ldlinux.c32", "libcom32.c32", "menu.c32", "isolinux.bin", "isohdpfx.bin"} {
		if t.Get("usr/share/syslinux/"+need) == nil {
			return nil, fmt.Errorf("debian %s: %s: not in the package", common, need)
		}
	}
	if err := bundleTools(ctx, b, t, et, map[string]string{"extlinux": "usr/bin/extlinux"}, "usr/libexec/syslinux", "sbin"); err != nil {
		return nil, err
	}
	return []*Pkg{p}, nil
}

// buildGrub makes grub (the tools: grub-mkimage and grub-editenv from
// Debian's grub-common, bundled with their glibc in /usr/libexec/grub)
// and grub-efi (depends on grub; /usr/lib/grub/PLATFORM from Debian's
// grub-efi-ARCH-bin, the arch table's GRUBDebian; grub-ieee1275 from
// grub-ieee1275-bin on ppc64le), as Alpine splits them; none for an arch
// alpinist does not boot with GRUB.
func buildGrub(ctx context.Context, b *builder) ([]*Pkg, error) {
	a, _ := arch.Lookup(b.arch)
	if a.GRUB == "" || a.GRUBDebian == "" {
		return nil, nil
	}
	common, err := b.debian.Get(ctx, "grub-common", b.debArch)
	if err != nil {
		return nil, err
	}
	efi, err := b.debian.Get(ctx, a.GRUBDebian, b.debArch)
	if err != nil {
		return nil, err
	}
	ver, err := APKVersion(common.Version)
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", common, err)
	}
	tools := map[string]string{"grub-mkimage": "usr/bin/grub-mkimage", "grub-editenv": "usr/bin/grub-editenv"}
	ct, err := ExtractDeb(ctx, common, b.workDir("grub-common"), func(n string) bool {
		return n == tools["grub-mkimage"] || n == tools["grub-editenv"]
	})
	if err != nil {
		return nil, err
	}
	grub := newPkg("grub", ver, b.arch, "Bootloader with support for Linux, Multiboot and more (from Debian "+common.Package+" "+common.Version+")", "GPL-3.0-or-later")
	grub.Meta.Depends = deps("/bin/sh")
	if err := bundleTools(ctx, b, grub.Tree, ct, tools, "usr/libexec/grub", "usr/bin"); err != nil {
		return nil, err
	}

	plat := a.GRUB
	prefix := "usr/lib/grub/" + plat + "/"
	et, err := ExtractDeb(ctx, efi, b.workDir("grub-efi"), func(n string) bool {
		// Debian's prebuilt monolithic images are not part of Alpine's grub-efi.
		return strings.HasPrefix(n, prefix) && !strings.HasPrefix(n, prefix+"monolithic/")
	})
	if err != nil {
		return nil, err
	}
	name, desc := "grub-efi", "GRUB with EFI platform support"
	if a.PReP {
		name, desc = "grub-ieee1275", "GRUB with IEEE 1275 (Open Firmware) platform support"
	}
	ge := newPkg(name, ver, b.arch, desc+" (from Debian "+efi.Package+" "+efi.Version+")", "GPL-3.0-or-later")
	ge.Meta.Origin = "grub"
	ge.Meta.Depends = deps("grub=" + ver)
	n := 0
	for _, name := range sortedKeys(et.Files) {
		f := et.Files[name]
		switch f.Type {
		case TypeFile:
			if err := ge.Tree.DiskFile(name, f.Mode, f.DiskPath); err != nil {
				return nil, fmt.Errorf("debian %s: %s: %w", efi, name, err)
			}
			n++
		case TypeSymlink:
			if err := ge.Tree.Symlink(name, f.Target); err != nil {
				return nil, fmt.Errorf("debian %s: %s: %w", efi, name, err)
			}
		}
	}
	for _, need := range []string{"kernel.img", "normal.mod", "part_gpt.mod", "fat.mod", "ext2.mod", "linux.mod"} {
		if ge.Tree.Get(prefix+need) == nil {
			return nil, fmt.Errorf("debian %s: %s%s: not in the package", efi, prefix, need)
		}
	}
	b.log.Debug("grub-efi", "arch", b.arch, "platform", plat, "files", n)
	return []*Pkg{grub, ge}, nil
}
