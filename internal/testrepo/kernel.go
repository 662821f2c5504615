package testrepo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/initramfs/kmod"
)

// KernelModules are the modules linux-virt must carry (with their
// dependency closure) for the build VM: virtio transports and devices,
// and the filesystems it writes. Each must be a module or built in.
var KernelModules = []string{
	"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "virtio_scsi",
	"ext4", "vfat", "fat", "nls_cp437", "nls_iso8859_1",
}

// OptionalKernelModules are carried when the kernel has them.
var OptionalKernelModules = []string{
	"virtio_rng", "overlay", "efivarfs", "9p", "9pnet_virtio", "sd_mod", "loop",
	// vfat's default character sets (Debian: iocharset ascii, utf8), which
	// mounting the EFI system partition needs.
	"nls_ascii", "nls_utf8",
}

// maxModuleSize bounds the size of one .ko read into memory.
const maxModuleSize = 64 << 20

// kernelDebCandidates lists the Debian kernel packages to try, best
// first: the cloud flavour's meta package, then the generic one.
func kernelDebCandidates(debArch string) []string {
	return []string{"linux-image-cloud-" + debArch, "linux-image-" + debArch}
}

// plainModule strips a module's compression suffix: "x.ko.xz" -> "x.ko".
func plainModule(p string) string {
	for _, ext := range []string{".gz", ".xz", ".zst"} {
		if strings.HasSuffix(p, ".ko"+ext) {
			return strings.TrimSuffix(p, ext)
		}
	}
	return p
}

// resolveKernel finds the versioned kernel package the first available
// meta package depends on.
func resolveKernel(ctx context.Context, d *Debian, debArch string) (string, error) {
	var errs []string
	for _, meta := range kernelDebCandidates(debArch) {
		debs, err := d.Show(ctx, meta+":"+debArch)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, n := range DependsNames(debs[0].Depends) {
			if strings.HasPrefix(n, "linux-image-") {
				return n, nil
			}
		}
		errs = append(errs, fmt.Sprintf("debian %s: no linux-image-* in Depends %q", debs[0], debs[0].Depends))
	}
	return "", fmt.Errorf("testrepo: no kernel package for %s: %s", debArch, strings.Join(errs, "; "))
}

// buildKernel makes linux-virt from Debian's cloud kernel: Alpine's
// /boot/*-virt names, and under /lib/modules/KVER the module subset as
// .ko.gz with modules.dep, modules.alias and modules.order for it.
func buildKernel(ctx context.Context, b *builder) ([]*Pkg, error) {
	name, err := resolveKernel(ctx, b.debian, b.debArch)
	if err != nil {
		return nil, err
	}
	deb, err := b.debian.Get(ctx, name, b.debArch)
	if err != nil {
		return nil, err
	}
	ver, err := APKVersion(deb.Version)
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", deb, err)
	}
	work := b.workDir("linux-virt")
	b.log.Info("reading kernel modules", "arch", b.arch, "deb", deb.String())

	// Pass 1: boot files and module metadata.
	var kver string
	boot := map[string]string{} // vmlinuz/config/System.map -> disk path
	set := &ModuleSet{Modules: map[string]*ModInfo{}}
	var order, builtinRaw, builtinModinfo []byte
	err = WalkDeb(ctx, deb, func(name string, hdr *tar.Header, r io.Reader) error {
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		if dir, file := path.Split(name); dir == "boot/" {
			// riscv64's Debian kernel is an uncompressed Image, /boot/vmlinux-*.
			if v, ok := strings.CutPrefix(file, "vmlinux-"); ok {
				file = "vmlinuz-" + v
			}
			for _, kind := range []string{"vmlinuz", "config", "System.map"} {
				if strings.HasPrefix(file, kind+"-") {
					if v := strings.TrimPrefix(file, kind+"-"); kver == "" {
						kver = v
					} else if v != kver {
						return fmt.Errorf("kernel release %s, but /boot also has %s", v, kver)
					}
					boot[kind] = filepath.Join(work, "boot", file)
					return writeFile(boot[kind], r)
				}
			}
			return nil
		}
		rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "usr/"), "lib/modules/")
		if !ok {
			return nil
		}
		release, rel, _ := strings.Cut(rest, "/")
		if kver != "" && release != kver {
			return fmt.Errorf("modules for release %s, but /boot has %s", release, kver)
		}
		switch {
		case rel == "modules.builtin":
			var err error
			if builtinRaw, err = io.ReadAll(r); err != nil {
				return err
			}
			set.Builtin = ParseBuiltin(builtinRaw)
		case rel == "modules.order":
			var err error
			order, err = io.ReadAll(r)
			return err
		case rel == "modules.builtin.modinfo":
			var err error
			builtinModinfo, err = io.ReadAll(r)
			return err
		case strings.HasSuffix(plainModule(rel), ".ko"):
			if hdr.Size > maxModuleSize {
				return fmt.Errorf("module larger than %d bytes", maxModuleSize)
			}
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			// trixie ships .ko.xz; the repository carries .ko.gz as Alpine.
			if data, err = kmod.Decompress(rel, data); err != nil {
				return err
			}
			rel = plainModule(rel)
			m, err := ReadModInfo(bytes.NewReader(data), rel)
			if err != nil {
				return err
			}
			if old, dup := set.Modules[m.Name]; dup {
				return fmt.Errorf("module %s found at %s and %s", m.Name, old.Path, rel)
			}
			set.Modules[m.Name] = m
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, kind := range []string{"vmlinuz", "config", "System.map"} {
		if boot[kind] == "" {
			return nil, fmt.Errorf("debian %s: boot/%s-*: not in the package", deb, kind)
		}
	}
	if set.Builtin == nil {
		return nil, fmt.Errorf("debian %s: lib/modules/%s/modules.builtin: not in the package", deb, kver)
	}
	SetOrder(set.Modules, order)
	mods, err := set.Closure(append(slices.Clone(KernelModules), OptionalKernelModules...), func(n string) bool {
		return slices.Contains(OptionalKernelModules, n)
	})
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", deb, err)
	}
	for _, w := range KernelModules {
		if set.Modules[w] == nil {
			b.log.Debug("module built in", "arch", b.arch, "module", w)
		}
	}

	// Pass 2: the chosen modules, gzip-compressed.
	modDir := "lib/modules/" + kver + "/"
	want := map[string]bool{}
	for _, m := range mods {
		want[modDir+m.Path] = true
	}
	gzPath := func(rel string) string { return rel + ".gz" }
	written := map[string]string{}
	err = WalkDeb(ctx, deb, func(name string, hdr *tar.Header, r io.Reader) error {
		orig := name
		name = plainModule(strings.TrimPrefix(name, "usr/"))
		if !want[name] || hdr.Typeflag != tar.TypeReg {
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(r, maxModuleSize+1))
		if err != nil {
			return err
		}
		if data, err = kmod.Decompress(orig, data); err != nil {
			return err
		}
		dst := filepath.Join(work, filepath.FromSlash(gzPath(name)))
		if err := gzipFile(dst, bytes.NewReader(data)); err != nil {
			return err
		}
		written[name] = dst
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(written) != len(want) {
		return nil, fmt.Errorf("debian %s: found %d of %d modules on the second pass", deb, len(written), len(want))
	}
	dep, err := ModulesDep(mods, gzPath)
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", deb, err)
	}

	p := newPkg("linux-virt", ver, b.arch, "Linux kernel for virtual machines (from Debian "+deb.Package+" "+deb.Version+")", "GPL-2.0-only")
	t := p.Tree
	must(t.DiskFile("boot/vmlinuz-virt", 0o644, boot["vmlinuz"]))
	must(t.DiskFile("boot/config-virt", 0o644, boot["config"]))
	must(t.DiskFile("boot/System.map-virt", 0o644, boot["System.map"]))
	for _, m := range mods {
		must(t.DiskFile(gzPath(modDir+m.Path), 0o644, written[modDir+m.Path]))
	}
	must(t.File(modDir+"modules.dep", 0o644, dep))
	must(t.File(modDir+"modules.alias", 0o644, ModulesAlias(mods)))
	must(t.File(modDir+"modules.order", 0o644, FilterOrder(order, mods)))
	// modules.builtin(.modinfo) as the kernel wrote them, so modprobe
	// knows what is built in (ext4 on the cloud kernel).
	must(t.File(modDir+"modules.builtin", 0o644, builtinRaw))
	if builtinModinfo != nil {
		must(t.File(modDir+"modules.builtin.modinfo", 0o644, builtinModinfo))
	}
	must(t.File("usr/share/kernel/virt/kernel.release", 0o644, []byte(kver+"\n")))
	b.log.Info("kernel", "arch", b.arch, "release", kver, "modules", len(mods))
	return []*Pkg{p}, nil
}

// gzipFile writes r gzip-compressed (best compression, no name or time
// in the header) to dst.
func gzipFile(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return err
	}
	_, err = io.Copy(zw, r)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
