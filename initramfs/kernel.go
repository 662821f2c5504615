package initramfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/initramfs/kmod"

	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
)

// BuildVMModules are the modules the build VM needs, with their
// dependencies, on a machine whose virtio devices sit on transport (a
// QEMU profile's: pci, mmio or ccw): the transport's and the disks'.
// Those built into the kernel are skipped. The console is the machine's
// serial port, which needs none.
func BuildVMModules(transport string) []string {
	switch transport {
	case "mmio":
		return []string{"virtio_mmio", "virtio_blk"}
	case "ccw":
		return []string{"virtio_ccw", "virtio_blk"}
	}
	return []string{"virtio_pci", "virtio_blk"}
}

// BootModules are what a system booted from a disk image needs before
// its root is mounted (those its kernel has): virtio and SCSI disks,
// NVMe and SATA, and the root file system with the CRC32C that ext4's
// metadata checksums need (a soft dependency, not in modules.dep; a
// module on Debian's 686-pae kernel: "Cannot load crc32c driver").
var BootModules = []string{"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "ahci", "crc32c_generic", "ext4"}

// Module is one kernel module for the initramfs, uncompressed.
type Module struct {
	Name string // virtio_pci
	Path string // as in modules.dep: kernel/drivers/virtio/virtio_pci.ko.gz
	Data []byte
	// Wave orders the loading: modules of one wave load at once, after
	// those of the waves before (kmod.Waves).
	Wave int
}

// Kit is what the build VM boots with: the kernel image, its release and
// the modules to load, in load order.
type Kit struct {
	Kernel  string // path of the kernel image on the host
	Release string // e.g. 6.6.58-0-virt
	Modules []Module
}

// ModulesList is the initramfs file listing the modules to load, one
// wave per line, in order: the file names (under ModulesDir) of the
// modules that may load at once, separated by spaces.
const (
	ModulesDir  = "lib/modules"
	ModulesList = "lib/modules/load"
)

// WithAgent is the initramfs alpinist boots: the agent as /init (the
// build VM's, or a booted system's root switcher), the kit's modules,
// and /dev/console for the kernel's first messages.
func WithAgent(agent []byte, k *Kit) (*Archive, error) {
	ar := New()
	for _, err := range []error{ar.File("init", 0o755, agent), k.AddTo(ar), ar.CharDev("dev/console", 0o600, 5, 1)} {
		if err != nil {
			return nil, err
		}
	}
	return ar, nil
}

// AddTo puts the kit's modules into an initramfs: ModulesDir/NAME.ko
// and ModulesList.
func (k *Kit) AddTo(a *Archive) error {
	var list strings.Builder
	for i, m := range k.Modules {
		if err := a.File(ModulesDir+"/"+m.Name+".ko", 0o644, m.Data); err != nil {
			return err
		}
		switch {
		case i == 0:
		case m.Wave == k.Modules[i-1].Wave:
			list.WriteString(" ")
		default:
			list.WriteString("\n")
		}
		list.WriteString(m.Name + ".ko")
	}
	if len(k.Modules) > 0 {
		list.WriteString("\n")
	}
	return a.File(ModulesList, 0o644, []byte(list.String()))
}

// KitFromPackage takes the kernel image and the modules named by want
// (with their dependencies, from modules.dep) out of a linux-virt style
// package, verifying it against keys. The kernel is written into dir.
// The package is read twice (modules.dep sorts after the modules), so
// only the needed modules are ever held in memory.
func KitFromPackage(apkPath string, keys *sign.Keyring, dir string, want []string) (*Kit, error) {
	return KitFromPackageNotify(apkPath, keys, dir, want, nil)
}

// KitFromPackageNotify is KitFromPackage calling onKernel with the
// kernel image's path as soon as it is written, while the modules are
// still being read: the caller may start on the kernel then, and use
// what it makes only once the kit is returned (the package's signature
// and checksum are checked as it is read, to its end).
func KitFromPackageNotify(apkPath string, keys *sign.Keyring, dir string, want []string, onKernel func(path string)) (*Kit, error) {
	return kitFrom(apkPath, "package", false, onKernel, func(fn func(h *tar.Header, r io.Reader) error) error {
		f, err := os.Open(apkPath)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = apkfile.Read(f, apkfile.ReadOptions{Keys: keys, Entry: fn})
		return err
	}, dir, want)
}

// KitFromTar is KitFromPackage for a root filesystem tar (the kernel a
// system booted from a disk image runs, and its modules). Modules of
// want the kernel has neither as a module nor built in are skipped.
func KitFromTar(tarPath, dir string, want []string) (*Kit, error) {
	return kitFrom(tarPath, "rootfs", true, nil, func(fn func(h *tar.Header, r io.Reader) error) error {
		f, err := os.Open(tarPath)
		if err != nil {
			return err
		}
		defer f.Close()
		tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			h.Name = strings.TrimPrefix(h.Name, "./")
			if err := fn(h, tr); err != nil {
				return err
			}
		}
	}, dir, want)
}

// kitFrom takes the kernel and modules out of the entries read gives
// (what names the source in messages; available keeps only the wanted
// modules the kernel has, instead of failing on the others),
// reading them twice (modules.dep may come after the modules), and
// calling onKernel (when not nil) once the kernel is written.
func kitFrom(src, what string, available bool, onKernel func(string), read func(fn func(h *tar.Header, r io.Reader) error) error, dir string, want []string) (*Kit, error) {
	k := &Kit{}
	var depData, builtinData, modinfoData []byte
	kernelOut := filepath.Join(dir, "vmlinuz")
	// The first read keeps the likely modules (those wanted, and the
	// virtio ones they depend on), so that the second is rarely needed.
	likely := map[string]bool{}
	for _, m := range want {
		likely[m] = true
	}
	kept := map[string][]byte{}
	err := read(func(h *tar.Header, r io.Reader) error {
		switch {
		case h.Typeflag != tar.TypeReg:
			return nil
		case strings.HasPrefix(h.Name, "boot/vmlinuz"):
			if k.Kernel != "" {
				return fmt.Errorf("two kernel images: %s and %s", k.Kernel, h.Name)
			}
			k.Kernel = h.Name
			w, err := os.Create(kernelOut)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, r)
			if err = errors.Join(err, w.Close()); err == nil && onKernel != nil {
				onKernel(kernelOut)
			}
			return err
		case strings.HasPrefix(h.Name, "lib/modules/"):
			rel := strings.TrimPrefix(h.Name, "lib/modules/")
			kver, file, _ := strings.Cut(rel, "/")
			var err error
			switch file {
			case "modules.dep":
				depData, err = io.ReadAll(io.LimitReader(r, 16<<20))
			case "modules.builtin":
				builtinData, err = io.ReadAll(io.LimitReader(r, 16<<20))
			case "modules.builtin.modinfo":
				modinfoData, err = io.ReadAll(io.LimitReader(r, 16<<20))
			default:
				if name := kmod.ModName(file); likely[name] || strings.HasPrefix(name, "virtio") {
					kept[h.Name], err = io.ReadAll(io.LimitReader(r, 256<<20))
				}
				return err
			}
			if k.Release != "" && k.Release != kver {
				return fmt.Errorf("modules for two kernel releases: %s and %s", k.Release, kver)
			}
			k.Release = kver
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel: %s: %w", src, err)
	}
	if k.Kernel == "" {
		return nil, fmt.Errorf("kernel: %s: no /boot/vmlinuz* in the %s", src, what)
	}
	k.Kernel = kernelOut
	if len(want) == 0 {
		return k, nil
	}
	if depData == nil {
		if available {
			return k, nil // a system's kernel with no modules: all it has is built in
		}
		return nil, fmt.Errorf("kernel: %s: no lib/modules/*/modules.dep, so modules %v cannot be found", src, want)
	}
	md, err := kmod.ParseModulesDep(bytes.NewReader(depData))
	if err != nil {
		return nil, fmt.Errorf("kernel: %s: %w", src, err)
	}
	builtin := kmod.ParseBuiltin(builtinData)
	kmod.AddBuiltinModinfo(builtin, modinfoData)
	if available {
		// A system's kernel: take what it has of the list.
		var have []string
		for _, m := range want {
			if _, ok := md.Path[m]; ok || builtin[m] {
				have = append(have, m)
			}
		}
		want = have
	}
	order, err := md.LoadOrder(want, builtin)
	if err != nil {
		return nil, fmt.Errorf("kernel: %s: %w", src, err)
	}
	if k.Modules, err = collect(src, what, read, k.Release, order, kept); err != nil {
		return nil, err
	}
	inWaves(md, order, k.Modules)
	return k, nil
}

// inWaves gives the modules (in order's order) their waves and sorts
// them by wave, keeping order within one.
func inWaves(md *kmod.ModulesDep, order []string, mods []Module) {
	for i, w := range md.Waves(order) {
		mods[i].Wave = w
	}
	slices.SortStableFunc(mods, func(a, b Module) int { return a.Wave - b.Wave })
}

// collect gives the modules of order (paths under lib/modules/RELEASE),
// from those the first read kept, reading the source once more only for
// the others.
func collect(src, what string, read func(fn func(h *tar.Header, r io.Reader) error) error, release string, order []string, kept map[string][]byte) ([]Module, error) {
	needed := map[string]int{}
	for i, p := range order {
		needed["lib/modules/"+release+"/"+p] = i
	}
	mods := make([]Module, len(order))
	add := func(name string, data []byte) error {
		i := needed[name]
		data, err := kmod.Decompress(name, data)
		if err != nil {
			return err
		}
		mods[i] = Module{Name: kmod.ModName(order[i]), Path: order[i], Data: data}
		return nil
	}
	all := true
	for _, p := range order {
		name := "lib/modules/" + release + "/" + p
		data, ok := kept[name]
		if !ok {
			all = false
			continue
		}
		if err := add(name, data); err != nil {
			return nil, fmt.Errorf("kernel: %s: %w", src, err)
		}
	}
	if !all {
		err := read(func(h *tar.Header, r io.Reader) error {
			i, ok := needed[h.Name]
			if !ok || h.Typeflag != tar.TypeReg || mods[i].Data != nil {
				return nil
			}
			data, err := io.ReadAll(io.LimitReader(r, 256<<20))
			if err != nil {
				return err
			}
			return add(h.Name, data)
		})
		if err != nil {
			return nil, fmt.Errorf("kernel: %s: %w", src, err)
		}
	}
	for i, m := range mods {
		if m.Data == nil {
			return nil, fmt.Errorf("kernel: %s: modules.dep lists %s, but the %s does not hold it", src, order[i], what)
		}
	}
	return mods, nil
}

// KitFromFiles makes a kit from a kernel image on the host and,
// optionally, a modules directory laid out as lib/modules/KVER (with
// modules.dep): the --kernel and --modules overrides. Without a modules
// directory no module is loaded, so the kernel must have the virtio
// drivers built in.
func KitFromFiles(kernel, modulesDir string, want []string) (*Kit, error) {
	if st, err := os.Stat(kernel); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("kernel: %s is not a kernel image file", kernel)
	}
	k := &Kit{Kernel: kernel}
	if modulesDir == "" {
		return k, nil
	}
	k.Release = filepath.Base(filepath.Clean(modulesDir))
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel: --modules %s: %w", modulesDir, err)
	}
	md, err := kmod.ParseModulesDep(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("kernel: %s: %w", modulesDir, err)
	}
	builtinData, _ := os.ReadFile(filepath.Join(modulesDir, "modules.builtin"))
	modinfo, _ := os.ReadFile(filepath.Join(modulesDir, "modules.builtin.modinfo"))
	builtin := kmod.ParseBuiltin(builtinData)
	kmod.AddBuiltinModinfo(builtin, modinfo)
	order, err := md.LoadOrder(want, builtin)
	if err != nil {
		return nil, fmt.Errorf("kernel: %s: %w", modulesDir, err)
	}
	for _, p := range order {
		data, err := os.ReadFile(filepath.Join(modulesDir, filepath.FromSlash(p)))
		if err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		if data, err = kmod.Decompress(p, data); err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		k.Modules = append(k.Modules, Module{Name: kmod.ModName(p), Path: p, Data: data})
	}
	inWaves(md, order, k.Modules)
	return k, nil
}
