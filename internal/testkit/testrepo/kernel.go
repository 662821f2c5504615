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

	"github.com/alpinist/alpinist/arch"
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
	// ext4's checksums (a soft dependency; a module on 686-pae).
	"crc32c_generic",
	// A NoCloud seed (an ISO 9660 cidata volume) and CD-ROMs: Alpine's
	// linux-virt has them as modules too.
	"isofs", "sr_mod", "cdrom",
	// vfat's default character sets (Debian: iocharset ascii, utf8), which
	// mounting the EFI system partition needs.
	"nls_ascii", "nls_utf8",
}

// LTSModules are what linux-lts carries beyond linux-virt's: the
// controllers and storage of real machines that a live ISO boots from
// (a USB stick, a SATA CD), which Debian's cloud kernel lacks.
var LTSModules = []string{
	"ahci", "ata_piix", "xhci_pci", "ehci_pci", "uhci_hcd", "ohci_pci", "usb_storage", "uas",
}

// flavor is a kernel package of the test repository: Alpine's name and
// the Debian kernels it is made from (meta packages, best first).
type flavor struct {
	name     string // virt: linux-virt, /boot/vmlinuz-virt
	desc     string
	metas    func(alpineArch, debArch string) []string
	optional []string // beyond OptionalKernelModules
}

var (
	virtFlavor = flavor{name: "virt", desc: "Linux kernel for virtual machines", metas: kernelDebCandidates}
	// lts: Alpine's linux-lts, for real hardware; x86_64 only here.
	ltsFlavor = flavor{name: "lts", desc: "Linux kernel for real machines", optional: LTSModules,
		metas: func(_, debArch string) []string { return []string{"linux-image-" + debArch} }}
)

// maxModuleSize bounds the size of one .ko read into memory.
const maxModuleSize = 64 << 20

// kernelDebCandidates lists the Debian kernel packages to try, best
// first: the arch table's (the cloud flavour's meta package, then the
// generic one, where Debian has them).
func kernelDebCandidates(alpineArch, debArch string) []string {
	if a, _ := arch.Lookup(alpineArch); len(a.DebianKernels) > 0 {
		return a.DebianKernels
	}
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
func resolveKernel(ctx context.Context, d *Debian, debArch string, metas []string) (string, error) {
	var errs []string
	for _, meta := range metas {
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
	return buildFlavor(ctx, b, virtFlavor)
}

// buildLTS makes linux-lts (x86_64) from Debian's generic kernel, the
// same way, with LTSModules too.
func buildLTS(ctx context.Context, b *builder) ([]*Pkg, error) {
	if b.arch != "x86_64" {
		return nil, nil
	}
	return buildFlavor(ctx, b, ltsFlavor)
}

func buildFlavor(ctx context.Context, b *builder, fl flavor) ([]*Pkg, error) {
	name, err := resolveKernel(ctx, b.debian, b.debArch, fl.metas(b.arch, b.debArch))
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
	k := &kernelBuild{
		b:      b,
		flavor: fl,
		deb:    deb,
		work:   b.workDir("linux-" + fl.name),
		boot:   map[string]string{},
		set:    &ModuleSet{Modules: map[string]*ModInfo{}},
	}
	b.log.Info("reading kernel modules", "arch", b.arch, "deb", deb.String())

	// Pass 1: boot files and module metadata.
	err = WalkDeb(ctx, deb, k.scanEntry)
	if err != nil {
		return nil, err
	}
	if err := k.chooseModules(); err != nil {
		return nil, err
	}

	// Pass 2: the chosen modules, gzip-compressed.
	if err := k.writeModules(ctx); err != nil {
		return nil, err
	}
	dep, err := ModulesDep(k.mods, gzPath)
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", deb, err)
	}

	p := k.pkg(ver, dep)
	b.log.Info("kernel", "arch", b.arch, "release", k.kver, "modules", len(k.mods))
	return []*Pkg{p}, nil
}

// kernelBuild is the state buildKernel's passes over the Debian kernel
// package share.
type kernelBuild struct {
	b      *builder
	flavor flavor
	deb    *Deb
	work   string

	// Pass 1.
	kver                              string
	boot                              map[string]string // vmlinuz/config/System.map -> disk path
	set                               *ModuleSet
	order, builtinRaw, builtinModinfo []byte

	// The chosen modules, and pass 2.
	mods    []*ModInfo
	modDir  string
	written map[string]string
}

// gzPath is where module rel goes in the package.
func gzPath(rel string) string { return rel + ".gz" }

// scanEntry is pass 1 on one entry of the package: boot files are
// written to the work directory, module metadata is read.
func (k *kernelBuild) scanEntry(name string, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	if dir, file := path.Split(name); dir == "boot/" {
		return k.scanBoot(file, r)
	}
	rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "usr/"), "lib/modules/")
	if !ok {
		return nil
	}
	release, rel, _ := strings.Cut(rest, "/")
	if k.kver != "" && release != k.kver {
		return fmt.Errorf("modules for release %s, but /boot has %s", release, k.kver)
	}
	return k.scanModules(rel, hdr, r)
}

// scanBoot writes /boot/file to the work directory if it is the kernel,
// its config or its System.map.
func (k *kernelBuild) scanBoot(file string, r io.Reader) error {
	// riscv64's Debian kernel is an uncompressed Image, /boot/vmlinux-*.
	if v, ok := strings.CutPrefix(file, "vmlinux-"); ok {
		file = "vmlinuz-" + v
	}
	for _, kind := range []string{"vmlinuz", "config", "System.map"} {
		if strings.HasPrefix(file, kind+"-") {
			if v := strings.TrimPrefix(file, kind+"-"); k.kver == "" {
				k.kver = v
			} else if v != k.kver {
				return fmt.Errorf("kernel release %s, but /boot also has %s", v, k.kver)
			}
			k.boot[kind] = filepath.Join(k.work, "boot", file)
			return writeFile(k.boot[kind], r)
		}
	}
	return nil
}

// scanModules reads lib/modules/KVER/rel: the builtin list, the order,
// or a module's metadata.
func (k *kernelBuild) scanModules(rel string, hdr *tar.Header, r io.Reader) error {
	switch {
	case rel == "modules.builtin":
		var err error
		if k.builtinRaw, err = io.ReadAll(r); err != nil {
			return err
		}
		k.set.Builtin = ParseBuiltin(k.builtinRaw)
	case rel == "modules.order":
		var err error
		k.order, err = io.ReadAll(r)
		return err
	case rel == "modules.builtin.modinfo":
		var err error
		k.builtinModinfo, err = io.ReadAll(r)
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
		if old, dup := k.set.Modules[m.Name]; dup {
			return fmt.Errorf("module %s found at %s and %s", m.Name, old.Path, rel)
		}
		k.set.Modules[m.Name] = m
	}
	return nil
}

// chooseModules checks pass 1 found the boot files and modules.builtin,
// and chooses the modules: KernelModules and OptionalKernelModules with
// their dependencies.
func (k *kernelBuild) chooseModules() error {
	deb := k.deb
	for _, kind := range []string{"vmlinuz", "config", "System.map"} {
		if k.boot[kind] == "" {
			return fmt.Errorf("debian %s: boot/%s-*: not in the package", deb, kind)
		}
	}
	if k.set.Builtin == nil {
		return fmt.Errorf("debian %s: lib/modules/%s/modules.builtin: not in the package", deb, k.kver)
	}
	SetOrder(k.set.Modules, k.order)
	optional := append(slices.Clone(OptionalKernelModules), k.flavor.optional...)
	mods, err := k.set.Closure(append(slices.Clone(KernelModules), optional...), func(n string) bool {
		return slices.Contains(optional, n)
	})
	if err != nil {
		return fmt.Errorf("debian %s: %w", deb, err)
	}
	for _, w := range KernelModules {
		if k.set.Modules[w] == nil {
			k.b.log.Debug("module built in", "arch", k.b.arch, "module", w)
		}
	}
	k.mods = mods
	return nil
}

// writeModules is pass 2: the chosen modules, gzip-compressed, to the
// work directory.
func (k *kernelBuild) writeModules(ctx context.Context) error {
	k.modDir = "lib/modules/" + k.kver + "/"
	want := map[string]bool{}
	for _, m := range k.mods {
		want[k.modDir+m.Path] = true
	}
	k.written = map[string]string{}
	err := WalkDeb(ctx, k.deb, func(name string, hdr *tar.Header, r io.Reader) error {
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
		dst := filepath.Join(k.work, filepath.FromSlash(gzPath(name)))
		if err := gzipFile(dst, bytes.NewReader(data)); err != nil {
			return err
		}
		k.written[name] = dst
		return nil
	})
	if err != nil {
		return err
	}
	if len(k.written) != len(want) {
		return fmt.Errorf("debian %s: found %d of %d modules on the second pass", k.deb, len(k.written), len(want))
	}
	return nil
}

// pkg is linux-FLAVOR, version ver, with the boot files, the chosen
// modules and their modules.dep (dep).
func (k *kernelBuild) pkg(ver string, dep []byte) *Pkg {
	deb, modDir := k.deb, k.modDir
	fl := k.flavor.name
	p := newPkg("linux-"+fl, ver, k.b.arch, k.flavor.desc+" (from Debian "+deb.Package+" "+deb.Version+")", "GPL-2.0-only")
	t := p.Tree
	must(t.DiskFile("boot/vmlinuz-"+fl, 0o644, k.boot["vmlinuz"]))
	must(t.DiskFile("boot/config-"+fl, 0o644, k.boot["config"]))
	must(t.DiskFile("boot/System.map-"+fl, 0o644, k.boot["System.map"]))
	for _, m := range k.mods {
		must(t.DiskFile(gzPath(modDir+m.Path), 0o644, k.written[modDir+m.Path]))
	}
	must(t.File(modDir+"modules.dep", 0o644, dep))
	must(t.File(modDir+"modules.alias", 0o644, ModulesAlias(k.mods)))
	must(t.File(modDir+"modules.order", 0o644, FilterOrder(k.order, k.mods)))
	// modules.builtin(.modinfo) as the kernel wrote them, so modprobe
	// knows what is built in (ext4 on the cloud kernel).
	must(t.File(modDir+"modules.builtin", 0o644, k.builtinRaw))
	if k.builtinModinfo != nil {
		must(t.File(modDir+"modules.builtin.modinfo", 0o644, k.builtinModinfo))
	}
	must(t.File("usr/share/kernel/"+fl+"/kernel.release", 0o644, []byte(k.kver+"\n")))
	return p
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
