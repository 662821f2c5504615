package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/alpinist/alpinist/agent/export"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/apk/version"
	"github.com/alpinist/alpinist/assembler/rootfs"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/counting"
	"github.com/alpinist/alpinist/internal/tarread"
	"github.com/alpinist/alpinist/spec"
)

// cacheKey hashes what the build VM is given, known before anything is
// fetched: the package disk's identity (pkgdisk.Plan: the manifest with
// the packages' checksums, the configuration and SOURCE_DATE_EPOCH, the
// keys, the tools, the spec's files), the kernel (the kernel package's
// checksum, or the sha256 of a kernel given as files and of the
// initramfs made with it) and the agent, with the arch and installer.
func cacheKey(opts VMOptions, disk []byte, kernel string, modules []string, agent []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "alpinist rootfs cache 2\narch %s\ninstaller %s\npackage disk %x\n", opts.Arch, opts.Spec.Installer.Type, disk)
	fmt.Fprintf(h, "kernel %s\nmodules %s\nagent %x\n", kernel, strings.Join(modules, ","), agent)
	return hex.EncodeToString(h.Sum(nil))
}

// kernelPackage is the newest linux-virt in the indexes: the build VM's
// kernel comes from the target repository.
func kernelPackage(idx []*repo.Index, arch string) (repo.Item, error) {
	var best repo.Item
	for _, x := range idx {
		for _, p := range x.Packages {
			if p.Name == "linux-virt" && (best.Package == nil || version.Compare(p.Version, best.Package.Version) > 0) {
				best = repo.Item{Repository: x.Repository, Arch: arch, Package: p}
			}
		}
	}
	if best.Package == nil {
		hint := "give the build VM a kernel with --kernel FILE --modules DIR"
		if arch == "armhf" {
			// Alpine's armhf has linux-rpi only; the build VM's CPU is
			// ARMv7, which armv7's linux-virt runs on.
			hint = "Alpine's armhf repositories have none: give the build VM armv7's linux-virt (its boot/vmlinuz-virt and lib/modules/KVER) with --kernel FILE --modules DIR, as the armhf VM's CPU is ARMv7"
		}
		return best, fmt.Errorf("the repositories have no linux-virt package for %s, so there is no kernel for the build VM: %s", arch, hint)
	}
	return best, nil
}

// diskPlan is the package disk before it is written: its manifest, and
// what pkgdisk.Plan tells of it.
type diskPlan struct {
	m        pkgdisk.Manifest
	identity []byte
	// bound is the most the disk can hold: the plan's bytes and, for
	// each package, more than its file or data tar can be. The disk is
	// sized to it (sparse) when the VM starts before it is written.
	bound int64
}

// planDisk plans the package disk: the manifest (the packages, the world,
// the spec's system configuration), the installer's tools, the packages
// and the spec's files.
//
// For alpinist's own installer the packages are prepared: read, verified
// and decompressed on the host, natively, so that the VM, maybe
// emulated, only writes their files and runs their scripts
// (pkgdisk.AddPrepared).
func planDisk(opts VMOptions, items []repo.Item) (*diskPlan, error) {
	m := pkgdisk.Manifest{Arch: opts.Arch, Repositories: lock.SystemRepositories(opts.Entry.Repositories), SourceDateEpoch: opts.SourceDateEpoch, Config: Config(opts.Spec, opts.Arch),
		Prepared: opts.Spec.Installer.Type != "apk-tools"}
	if opts.Spec.Installer.Type == "apk-tools" {
		m.Installer, m.Tools = "apk-tools", true
	}
	for _, d := range opts.World {
		m.World = append(m.World, d.String())
	}
	var bound int64
	for _, it := range items {
		p := it.Package
		m.Packages = append(m.Packages, pkgdisk.Package{Name: p.Name, Version: p.Version, Checksum: apk.EncodeChecksum(p.Checksum), Tag: it.Repository.Tag, Size: p.Size, Arch: p.Arch})
		bound += 2*p.InstalledSize + 4*p.Size + 1<<20
	}
	plan, err := pkgdisk.Plan(m, opts.Keys)
	if err != nil {
		return nil, err
	}
	if err := fillDisk(context.Background(), plan, opts, m, nil); err != nil {
		return nil, err
	}
	return &diskPlan{m: m, identity: plan.Identity(), bound: roundMiB(plan.Size() + bound + 64<<20)}, nil
}

// writePackageDisk writes the planned disk with the packages at paths.
func writePackageDisk(ctx context.Context, w io.WriteSeeker, opts VMOptions, plan *diskPlan, paths []string) error {
	dw, err := pkgdisk.NewWriter(w, plan.m, opts.Keys)
	if err != nil {
		return err
	}
	if err := fillDisk(ctx, dw, opts, plan.m, paths); err != nil {
		return err
	}
	if !bytes.Equal(dw.Identity(), plan.identity) {
		return errors.New("the package disk is not the one planned (did the spec's files change during the build?)")
	}
	return nil
}

// fillDisk writes the disk after its manifest and keys: the tools, the
// packages at paths (a plan, which has none, skips them) and the spec's
// files, then ends it.
func fillDisk(ctx context.Context, dw *pkgdisk.Writer, opts VMOptions, m pkgdisk.Manifest, paths []string) error {
	if m.Tools {
		f, err := openChecked(opts.Spec.Installer, opts.Arch)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if err := dw.AddTools(f, st.Size()); err != nil {
			return err
		}
	}
	if dw.Planning() {
		if err := dw.SkipPackages(); err != nil {
			return err
		}
	}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if m.Prepared {
			err = dw.AddPackage(p, opts.Client.Keys)
		} else {
			err = addFile(dw, p)
		}
		if err != nil {
			return err
		}
	}
	for i, f := range opts.Spec.Files {
		var err error
		switch f.Kind() {
		case "copy":
			err = dw.AddTree(i, f.Src, f.Mode, f.DirMode)
		case "content":
			err = dw.AddContent(i, f.Content, f.Mode)
		}
		if err != nil {
			return err
		}
	}
	return dw.Close()
}

// addFile adds the package file at p as it is.
func addFile(dw *pkgdisk.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return dw.Add(f, st.Size())
}

// openChecked opens the apk-tools installer's minirootfs after checking
// its sha256/sha512 when the spec gives them, and that it is a
// minirootfs of the build's arch (its etc/apk/arch).
func openChecked(in spec.Installer, arch string) (*os.File, error) {
	f, err := os.Open(in.Minirootfs)
	if err != nil {
		return nil, fmt.Errorf("installer: %w", err)
	}
	for _, c := range []struct {
		want string
		h    hash.Hash
	}{{in.SHA256, sha256.New()}, {in.SHA512, sha512.New()}} {
		if c.want == "" {
			continue
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := io.Copy(c.h, f); err != nil {
			f.Close()
			return nil, err
		}
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			f.Close()
			return nil, fmt.Errorf("installer: %s has checksum %s, the spec says %s", in.Minirootfs, got, c.want)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if got, err := minirootfsArch(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("installer: %s: %w", in.Minirootfs, err)
	} else if got != arch {
		f.Close()
		return nil, fmt.Errorf("installer: %s is a minirootfs for %s (its etc/apk/arch), and this build is for %s: give the %s minirootfs (build each arch with its own spec or --arch)", in.Minirootfs, got, arch, arch)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// minirootfsArch reads etc/apk/arch from a minirootfs .tar.gz.
func minirootfsArch(r io.Reader) (string, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return "", err
	}
	tr := tarread.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", errors.New("no etc/apk/arch: not an Alpine minirootfs")
		}
		if err != nil {
			return "", err
		}
		if strings.TrimPrefix(h.Name, "./") == "etc/apk/arch" && h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(io.LimitReader(tr, 64))
			if err != nil {
				return "", err
			}
			return strings.TrimSpace(string(b)), nil
		}
	}
}

// copyTar copies the tar stream at the start of the disk image to w,
// stopping after its end-of-archive, and returns the bytes copied. An
// entry whose bytes the export left on the package disk pkgs
// (export.RefRecord) gets them from there.
func copyTar(w io.Writer, disk, pkgs string) (int64, error) {
	f, err := os.Open(disk)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	pf, err := os.Open(pkgs)
	if err != nil {
		return 0, err
	}
	defer pf.Close()
	st, err := pf.Stat()
	if err != nil {
		return 0, err
	}
	cw := &counting.Writer{W: w}
	tw := tar.NewWriter(cw)
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("reading the rootfs from the VM's output disk: %w", err)
		}
		src, err := export.Fill(h, tr, pf, st.Size())
		if err != nil {
			return 0, fmt.Errorf("reading the rootfs from the VM's output disk: /%s: %w", h.Name, err)
		}
		if err := tw.WriteHeader(h); err != nil {
			return 0, err
		}
		if _, err := io.Copy(tw, src); err != nil {
			return 0, err
		}
		n++
	}
	if n == 0 {
		return 0, errors.New("the VM's output disk holds no rootfs")
	}
	return cw.N, tw.Close()
}

// writeFile writes path through a temporary file and a rename.
// canonicalTar writes to dst (through a temporary file) the canonical
// rootfs tar of src (assembler/rootfs: what assemble reads imports with),
// and returns its size. Times are left as they are.
func canonicalTar(ctx context.Context, dst string, src io.Reader, work string) (int64, error) {
	var n int64
	err := writeFile(dst, func(w io.Writer) error {
		cw := &counting.Writer{W: w}
		_, err := rootfs.Canonicalize(ctx, cw, src, time.Time{}, work)
		n = cw.N
		return err
	})
	return n, err
}

func writeFile(path string, fill func(io.Writer) error) error {
	if err := atomicfile.Write(path, 0o644, fill); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func sparseFile(p string, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	return errors.Join(f.Truncate(size), f.Close())
}

func roundMiB(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

// Summary formats the phase times on one line.
func (r *VMResult) Summary() string {
	var parts []string
	for _, p := range r.Phases {
		parts = append(parts, fmt.Sprintf("%s %v", p.Name, p.Duration.Round(10*time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}
