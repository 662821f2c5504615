package builder

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/pvh"
	"github.com/alpinist/alpinist/internal/zimage"
	"github.com/alpinist/alpinist/qemu"
)

// The boot cache keeps what the build VM boots, its kernel and its
// initramfs, under the hash of what they are made of: the kernel
// package's checksum, the agent and the modules wanted. A build whose
// kernel and agent did not change boots at once, without fetching or
// reading the kernel package (0.2 to 0.4 s).
//
// A kernel is kept as QEMU boots it fastest, decompressed here so that
// no decompressor runs emulated: an x86 kernel as the ELF inside the
// bzImage, which QEMU starts at its PVH entry (no firmware loader
// either: 0.3 to 0.4 s less boot under TCG); a 32-bit ARM kernel as the
// Image inside the zImage, in a uImage that QEMU loads where the kernel
// runs (2 s less). Other kernels are kept as the package has them.
//
// Entries are CACHE/boot/KEY.kernel and KEY.initramfs. A build writes
// them into a temporary directory there, boots from it, and syncs and
// links them into place while the VM runs (bootKit.keep).

// BootDir is the boot cache's directory in a cache directory.
func BootDir(cacheDir string) string { return filepath.Join(cacheDir, "boot") }

// bootKit is the kernel and initramfs one build VM boots.
type bootKit struct {
	kernel, initrd string
	form           string // the kernel's: formPVH, formUImage or formPackage
	// tmp is the temporary directory of a kit just made, key its
	// entry's key: keep links the files into place.
	tmp, key, dir string
	kept          chan struct{}
}

// The forms of a boot kit's kernel.
const (
	formPVH     = "pvh"     // an x86 kernel's ELF, started at its PVH entry
	formUImage  = "uimage"  // an ARM kernel's Image in a uImage
	formPackage = "package" // the image as the package has it
)

// kernelForm tells the form of the kernel at p by its first bytes.
func kernelForm(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return formPackage
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return formPackage
	}
	switch {
	case string(magic[:]) == "\x7fELF":
		return formPVH
	case zimage.IsUImage(magic[:]):
		return formUImage
	}
	return formPackage
}

// bootKey is the boot cache's key of a kernel package and an agent.
func bootKey(arch string, kernel *apk.Package, transport string, agentSum []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "alpinist boot kit 2\narch %s\nkernel %s-%s %s\nagent %x\nmodules %s\n", arch,
		kernel.Name, kernel.Version, apk.EncodeChecksum(kernel.Checksum), agentSum, strings.Join(initramfs.BuildVMModules(transport), " "))
	return hex.EncodeToString(h.Sum(nil))
}

// cachedBootKit is the boot cache's kit for key, nil when it has none.
func cachedBootKit(dir, key string) *bootKit {
	k := &bootKit{kernel: filepath.Join(dir, key+".kernel"), initrd: filepath.Join(dir, key+".initramfs")}
	for _, p := range []string{k.initrd, k.kernel} {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			return nil
		}
	}
	now := time.Now()
	os.Chtimes(k.kernel, now, now) // for prune: used now
	k.form = kernelForm(k.kernel)
	return k
}

// makeBootKit makes the kit of the kernel package at pkgPath for a VM of
// profile prof into a temporary directory of the boot cache dir.
func makeBootKit(pkgPath string, keys *sign.Keyring, agent []byte, prof qemu.Profile, dir, key string, log *slog.Logger) (_ *bootKit, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("boot cache: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".tmp-"+key[:16]+"-")
	if err != nil {
		return nil, fmt.Errorf("boot cache: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	k := &bootKit{tmp: tmp, key: key, dir: dir, initrd: filepath.Join(tmp, "initramfs")}
	// The kernel is converted on another core while the modules are read.
	var converted chan error
	kit, err := initramfs.KitFromPackageNotify(pkgPath, keys, tmp, initramfs.BuildVMModules(prof.Transport), func(kernel string) {
		converted = make(chan error, 1)
		go func() {
			var err error
			k.kernel, k.form, err = hostKernel(kernel, filepath.Join(tmp, "kernel"), prof, log)
			converted <- err
		}()
	})
	if converted != nil {
		err = errors.Join(err, <-converted)
	}
	if err != nil {
		return nil, err
	}
	if err := writeInitramfs(k.initrd, agent, kit, nil); err != nil {
		return nil, err
	}
	return k, nil
}

// hostKernel decompresses the kernel image src into dst in the form a
// VM of profile prof boots fastest, and gives dst and its form; or src
// itself (formPackage) when it is not an image unpacked here: an x86
// bzImage becomes its PVH ELF, a 32-bit ARM zImage its Image in a
// uImage (when the machine's RAMBase is known).
func hostKernel(src, dst string, prof qemu.Profile, log *slog.Logger) (string, string, error) {
	ok, err := pvh.Convert(src, dst)
	if err != nil {
		// The image may still boot as it is; say why it is not faster.
		log.Warn("the kernel's ELF could not be taken out of its bzImage: booting the bzImage", "kernel", src, "err", err)
		return src, formPackage, nil
	}
	if ok {
		return dst, formPVH, nil
	}
	if prof.RAMBase == 0 {
		return src, formPackage, nil
	}
	ok, err = zimage.Convert(src, dst, prof.RAMBase)
	if err != nil {
		log.Warn("the kernel's Image could not be taken out of its zImage: booting the zImage", "kernel", src, "err", err)
		return src, formPackage, nil
	}
	if ok {
		return dst, formUImage, nil
	}
	return src, formPackage, nil
}

// writeInitramfs writes the agent and the kit's modules as an initramfs
// to path (not synced: a temporary file, or one keep syncs), hashing it
// into sum when not nil.
func writeInitramfs(path string, agent []byte, kit *initramfs.Kit, sum io.Writer) error {
	ar, err := initramfs.WithAgent(agent, kit)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	if sum != nil {
		w = io.MultiWriter(bw, sum)
	}
	_, err = ar.WriteTo(w)
	if err == nil {
		err = bw.Flush()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// keep starts to sync a kit just made and link it into the boot cache
// (the initramfs first: the kernel makes the entry), while QEMU boots
// from the temporary names. A kit that cannot be kept costs the next
// build time, not this one its result.
func (k *bootKit) keep(log *slog.Logger) {
	if k.tmp == "" || k.kept != nil {
		return
	}
	k.kept = make(chan struct{})
	go func() {
		defer close(k.kept)
		for _, f := range []struct{ src, ext string }{{k.initrd, ".initramfs"}, {k.kernel, ".kernel"}} {
			if err := syncLink(f.src, filepath.Join(k.dir, k.key+f.ext)); err != nil {
				log.Warn("the build VM's kernel and initramfs could not be stored in the boot cache", "err", err)
				return
			}
		}
	}()
}

// close waits for keep and removes the kit's temporary directory.
func (k *bootKit) close() {
	if k == nil {
		return
	}
	if k.kept != nil {
		<-k.kept
	}
	if k.tmp != "" {
		os.RemoveAll(k.tmp)
	}
}

// syncLink syncs src and links it as dst; a dst already there (another
// build's, the same bytes) is fine.
func syncLink(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Link(src, dst); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// BootEntry is one kernel and initramfs of the boot cache.
type BootEntry struct {
	Key  string
	Size int64     // both files' bytes (holes not counted)
	Used time.Time // when a build last booted it
	// Form is the kernel's: "pvh" (an x86 kernel's ELF), "uimage" (an
	// ARM kernel's Image) or "package" (as the package has it).
	Form string
}

// BootEntries lists the boot cache of a cache directory, oldest use
// first, and the temporary directories builds left (a build killed
// while it made a kit).
func BootEntries(cacheDir string) (entries []BootEntry, leftovers []string, err error) {
	dir := BootDir(cacheDir)
	kernels, err := filepath.Glob(filepath.Join(dir, "*.kernel"))
	if err != nil {
		return nil, nil, err
	}
	for _, p := range kernels {
		key := strings.TrimSuffix(filepath.Base(p), ".kernel")
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		e := BootEntry{Key: key, Size: diskBytes(st), Used: st.ModTime(), Form: kernelForm(p)}
		if st, err := os.Stat(filepath.Join(dir, key+".initramfs")); err == nil {
			e.Size += diskBytes(st)
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b BootEntry) int { return a.Used.Compare(b.Used) })
	leftovers, err = filepath.Glob(filepath.Join(dir, ".tmp-*"))
	return entries, leftovers, err
}

// RemoveBoot deletes a boot cache entry. A build booting it keeps its
// open files.
func RemoveBoot(cacheDir, key string) error {
	var errs []error
	for _, ext := range []string{".kernel", ".initramfs"} { // the kernel first: it makes the entry
		if err := os.Remove(filepath.Join(BootDir(cacheDir), key+ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// diskBytes is what a file takes on disk (a sparse kernel's holes take
// nothing), its size where the system does not say.
func diskBytes(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}
