// Package output is the registry of alpinist's outputs: each one a named
// writer that makes its files from the canonical rootfs tar of every
// arch (linuxkit's moby/build/output.go is the model). A Set runs the
// writers a build asks for, writes every arch's SBOM, and leaves no
// partial output: each file appears whole (temporary file, rename), the
// OCI layout and the raw disk are built in a work directory, and Close
// removes whatever is half made.
package output

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/alpinist/alpinist/apk/lock"
	archtab "github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/assembler/ext4"
	"github.com/alpinist/alpinist/assembler/lxc"
	"github.com/alpinist/alpinist/assembler/oci"
	"github.com/alpinist/alpinist/assembler/rootfs"
	"github.com/alpinist/alpinist/assembler/sbom"
	"github.com/alpinist/alpinist/assembler/tarball"
	"github.com/alpinist/alpinist/assembler/wsl"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
	"github.com/alpinist/alpinist/spec"
)

// Output is one kind of output.
type Output struct {
	// Name is what `outputs:` and --output call it.
	Name string
	// File is its file name for the spec's name and an arch.
	File func(name, arch string) string
	// Doc says what it is, for --help.
	Doc string
	// Disk is a bootable disk image (it needs a kernel and boot loaders).
	Disk bool
	// Rootfs: it is the build's canonical rootfs tar itself, which is
	// removed after the outputs unless this output is asked for.
	Rootfs bool
	// Layout: it is the OCI layout itself (a directory, written once for
	// every arch), which Set.Layout gives to push.
	Layout bool
	// work: it is made in the Set's work directory (the OCI layout, the
	// raw disk a qcow2 is made from).
	work bool
	// stream: it reads the canonical tar as a stream, from Arch.Canon
	// when there is one, not from the file Arch.Tar.
	stream bool
	// Arches are the arches it is made for (nil: every one), and Why
	// says why not others.
	Arches []string
	Why    string
	// add writes it for one arch; finish, when set, once for all.
	add    func(s *Set, o Output, j *job) (string, error)
	finish func(s *Set, o Output) (string, error)
}

// Outputs are the outputs this version writes, in the order they are
// written.
var Outputs = []Output{
	{Name: "tar", File: perArch(".tar"), Doc: "the root filesystem as a tar", add: (*Set).tar, Rootfs: true},
	{Name: "tar.gz", File: perArch(".tar.gz"), Doc: "the same, gzip'ed", add: (*Set).tar},
	{Name: "tar.zst", File: perArch(".tar.zst"), Doc: "the same, zstd-compressed", add: (*Set).tar},
	{Name: "wsl", File: perArch(".wsl.tar.gz"), Doc: "a tarball for wsl --import, with /etc/wsl.conf from the spec (x86_64, aarch64)", add: (*Set).wsl,
		Arches: []string{"x86_64", "aarch64"}, Why: "WSL runs on x64 and ARM64 Windows only (the tar and tar.gz outputs are the rootfs of any arch)"},
	{Name: "lxc", File: perArch(".lxc.tar.xz"), Doc: "an Incus/LXD unified image for incus image import", add: (*Set).lxc},
	{Name: "oci", File: func(name, _ string) string { return name + ".oci" }, Doc: "an OCI image layout directory (a multi-arch index for several arches)", add: (*Set).ociAdd, finish: (*Set).ociFinish, work: true, Layout: true},
	{Name: "docker-archive", File: perArch(".docker.tar"), Doc: "a tarball for docker load and podman load", add: (*Set).docker, work: true},
	{Name: "ext4", File: perArch(".ext4"), Doc: "an ext4 file system image of the rootfs (sparse; e2fsck-clean, reproducible)", add: (*Set).ext4, stream: true},
	{Name: "raw", File: perArch(".raw"), Doc: "a bootable disk image (GPT, ESP with GRUB, ext4 root; UEFI), sparse", add: (*Set).raw, Disk: true, work: true},
	{Name: "qcow2", File: perArch(".qcow2"), Doc: "the same disk as qcow2 v3", add: (*Set).qcow2, Disk: true, work: true},
	{Name: "vmdk", File: perArch(".vmdk"), Doc: "the same disk as a streamOptimized VMDK (VMware, VirtualBox)", add: (*Set).vmdk, Disk: true, work: true},
	{Name: "ova", File: perArch(".ova"), Doc: "a virtual machine for VMware and VirtualBox: OVF, manifest and the VMDK (x86_64, x86)", add: (*Set).ova, Disk: true, work: true,
		Arches: []string{"x86_64", "x86"}, Why: "VMware and VirtualBox import OVAs of x86 machines (the vmdk output is the disk of any arch)"},
	{Name: "vhd", File: perArch(".vhd"), Doc: "the same disk as a fixed VHD, as Azure takes it (a whole number of MiB)", add: (*Set).vhd, Disk: true, work: true},
	{Name: "iso", File: perArch(".iso"), Doc: "a live system on a bootable hybrid ISO 9660 image, run from memory (CD or USB stick; BIOS and UEFI on x86, UEFI elsewhere)", add: (*Set).iso, Disk: true, work: true},
	{Name: "gce", File: perArch(".gce.tar.gz"), Doc: "the disk for Google Compute Engine: disk.raw (a whole number of GiB) in an oldgnu sparse tar, gzip'ed", add: (*Set).gce, Disk: true, work: true},
}

// AnyDisk tells whether names ask for a bootable disk image.
func AnyDisk(names []string) bool { return asks(names, func(o Output) bool { return o.Disk }) }

// AnyRootfs tells whether names ask for the rootfs tar itself.
func AnyRootfs(names []string) bool { return asks(names, func(o Output) bool { return o.Rootfs }) }

// AnyLayout tells whether names ask for the OCI layout.
func AnyLayout(names []string) bool { return asks(names, func(o Output) bool { return o.Layout }) }

// asks tells whether names ask for an output with the trait.
func asks(names []string, trait func(Output) bool) bool {
	return slices.ContainsFunc(Outputs, func(o Output) bool { return trait(o) && slices.Contains(names, o.Name) })
}

func perArch(suffix string) func(name, arch string) string {
	return func(name, arch string) string { return name + "-" + arch + suffix }
}

// SBOMFile is the SBOM's file name.
func SBOMFile(name, arch string) string { return name + "-" + arch + ".spdx.json" }

// Lookup finds an output by name.
func Lookup(n string) (Output, bool) {
	i := slices.IndexFunc(Outputs, func(o Output) bool { return o.Name == n })
	if i < 0 {
		return Output{}, false
	}
	return Outputs[i], true
}

// Check tells whether every name is an output this version writes.
func Check(names []string) error {
	for _, n := range names {
		if _, ok := Lookup(n); ok {
			continue
		}
		var known []string
		for _, o := range Outputs {
			known = append(known, o.Name)
		}
		return fmt.Errorf("%s: unknown output (known: %s)", n, strings.Join(known, ", "))
	}
	return nil
}

// CheckArch says, before anything is built, which of the outputs names
// is not made for arch.
func CheckArch(names []string, arch string) error {
	for _, n := range names {
		o, ok := Lookup(n)
		if ok && o.Arches != nil && !slices.Contains(o.Arches, arch) {
			return fmt.Errorf("output %s is made for %s, not %s: %s; build it with --arch %s", n, strings.Join(o.Arches, " and "), arch, o.Why, o.Arches[0])
		}
		if ok && o.Disk {
			if why := bootdisk.Unbootable(arch); why != "" {
				return fmt.Errorf("output %s: no bootable image is made for %s: %s", n, arch, why)
			}
			if a, _ := archtab.Lookup(arch); a.PReP && n == "iso" {
				return fmt.Errorf("output iso: no live ISO is made for %s: GRUB for its Open Firmware boots from a PReP partition, not El Torito; build a disk (raw, qcow2) instead", arch)
			}
		}
	}
	return nil
}

// Plan is what a Set writes.
type Plan struct {
	// Spec gives the name, oci, wsl and hostname.
	Spec *spec.Spec
	// Dir is the output directory.
	Dir string
	// Outputs are the outputs' names.
	Outputs []string
	// Created dates everything (SOURCE_DATE_EPOCH).
	Created time.Time
	// Tool names the SBOM's creator ("alpinist-VERSION").
	Tool string
	// Layout, when true, builds the OCI layout even when oci is not an
	// output (to push it); Set.Layout gives its path.
	Layout bool
	// Log gets a line per output written.
	Log *slog.Logger
	// DiskSize is the ext4 image's size in bytes (0: from the content).
	DiskSize int64
	// NoSBOM leaves the SBOM out when the rootfs has no apk database (a
	// rootfs alpinist did not build): it is then not an error.
	NoSBOM bool
	// AutoBoot, when the spec's disk names no firmware, boots a disk with
	// what the rootfs has (an extlinux program: BIOS; GRUB's EFI image
	// under /boot/efi: UEFI), for a rootfs alpinist did not build.
	AutoBoot bool
	// Context, when set, is checked before each output: Ctrl-C stops
	// after the output being written, not after all of them.
	Context context.Context
	// Digests asks for each output's sha256 in its Result where it costs
	// less made while the output is written than read back after (the
	// ext4 image: not its holes, and on another core).
	Digests bool
}

// canceled is the plan's context's error, if any.
func (s *Set) canceled() error {
	if s.p.Context != nil {
		return s.p.Context.Err()
	}
	return nil
}

// Arch is one arch's build.
type Arch struct {
	Arch string
	// Tar is the canonical rootfs tar (NAME-ARCH.tar in Dir).
	Tar string
	// Canon, when set, is the canonical tar itself, read where it is,
	// and Tar does not exist yet: the outputs that read it as a stream
	// (ext4, the SBOM) read Canon, and Tar is written from it only when
	// another output needs the file. Add closes it once it has no more
	// use for it (its index is then let go).
	Canon *rootfs.Tar
	// Lock is what was installed (for the SBOM's repositories).
	Lock *lock.Arch
}

// Result is one file or directory written.
type Result struct {
	Arch, Output, Path string
	Size               int64
	// SHA256 is the file's digest in hex, when Plan.Digests asked for it
	// and the output made it as it was written ("" otherwise).
	SHA256 string
}

// Set writes a plan's outputs.
type Set struct {
	p       Plan
	outs    []Output
	work    string // Dir/.NAME.work-*: the OCI layout under construction
	tag     string
	entries []oci.Entry // the OCI index's images, an entry per arch
}

// job is one arch's outputs being written: what its writers share (the
// SBOM, the OCI image docker-archive and the layout reuse, the raw disk
// qcow2 is made from), each made once, and dropped when Add returns.
type job struct {
	Arch, Tar string
	Lock      *lock.Arch
	sbom      []byte
	image     v1.Image
	disk      string // the raw disk in the work dir
	diskSeed  []byte // what the disk's identities come from
	vmdk      string // the disk as a VMDK (the output's, or the OVA's in the work dir)
	// diskEFIOnly: the disk boots with UEFI only.
	diskEFIOnly bool
	boot        *bootInfo         // the rootfs's boot files (Set.bootInfo)
	canon       *rootfs.Tar       // Arch.Canon, until Tar is written
	sums        map[string]string // path -> sha256 hex, made as written
}

// New checks the plan and makes its work directory.
func New(p Plan) (*Set, error) {
	if err := Check(p.Outputs); err != nil {
		return nil, err
	}
	s := &Set{p: p}
	if p.Log == nil {
		s.p.Log = slog.New(slog.DiscardHandler)
	}
	for _, o := range Outputs {
		if slices.Contains(p.Outputs, o.Name) {
			s.outs = append(s.outs, o)
		}
	}
	tag, err := Tag(p.Spec)
	if err != nil {
		return nil, err
	}
	s.tag = tag
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	if p.Layout || slices.ContainsFunc(s.outs, func(o Output) bool { return o.work }) {
		if s.work, err = os.MkdirTemp(p.Dir, "."+p.Spec.Name+".work-"); err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
	}
	return s, nil
}

func (s *Set) workDir() string { return s.work }

// Tag is the image's reference: the spec's oci.tag, else its name in
// lowercase (a '+' made '-') with :latest.
func Tag(s *spec.Spec) (string, error) {
	t, from := s.OCI.Tag, "oci.tag"
	if t == "" {
		t, from = strings.ReplaceAll(strings.ToLower(s.Name), "+", "-")+":latest", "the name"
	}
	if _, err := name.NewTag(t, name.WeakValidation); err != nil {
		return "", fmt.Errorf("output: %s gives the image reference %q, which is not valid (%v): set oci.tag", from, t, err)
	}
	return t, nil
}

// Add writes one arch's outputs and SBOM from its rootfs tar. The plain
// tar is removed afterwards unless it is an output.
func (s *Set) Add(a Arch) ([]Result, error) {
	var res []Result
	j := &job{Arch: a.Arch, Tar: a.Tar, Lock: a.Lock, canon: a.Canon, sums: map[string]string{}}
	defer func() {
		if j.disk != "" {
			os.Remove(j.disk)
		}
	}()
	if j.canon != nil && s.needFile() {
		if err := s.writeTar(j); err != nil {
			return nil, err
		}
	}
	doc, err := s.sbom(j)
	switch {
	case errors.Is(err, sbom.ErrNoDatabase) && s.p.NoSBOM:
		s.p.Log.Info("no SBOM: the rootfs has no apk database", "arch", a.Arch)
	case err != nil:
		return nil, err
	default:
		j.sbom = doc
		p := filepath.Join(s.p.Dir, SBOMFile(s.p.Spec.Name, a.Arch))
		if err := atomicfile.WriteBytes(p, doc, 0o644); err != nil {
			return nil, fmt.Errorf("output: sbom: %w", err)
		}
		res = append(res, result(a.Arch, "sbom", p))
	}
	if s.p.Layout {
		// The layout to push.
		if err := s.image(j); err != nil {
			return nil, err
		}
	}
	for _, o := range s.outs {
		if err := s.canceled(); err != nil {
			return nil, err
		}
		start := time.Now()
		p, err := o.add(s, o, j)
		if err != nil {
			return nil, fmt.Errorf("output %s: %s: %w", o.Name, a.Arch, err)
		}
		if p == "" {
			continue
		}
		s.p.Log.Info("output written", "output", o.Name, "arch", a.Arch, "path", p, "time", time.Since(start).Round(time.Millisecond))
		r := result(a.Arch, o.Name, p)
		r.SHA256 = j.sums[p]
		res = append(res, r)
	}
	if j.canon != nil {
		j.canon.Close()
	} else if !AnyRootfs(s.p.Outputs) {
		if err := os.Remove(a.Tar); err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
	}
	return res, nil
}

// needFile tells whether an output reads the canonical tar's file.
func (s *Set) needFile() bool {
	return s.p.Layout || slices.ContainsFunc(s.outs, func(o Output) bool { return !o.stream })
}

// writeTar writes the file j.Tar from j.canon, which it is from then on.
func (s *Set) writeTar(j *job) error {
	err := atomicfile.Write(j.Tar, 0o644, func(w io.Writer) error {
		_, err := io.CopyBuffer(w, ctxio.Reader(s.p.Context, io.NewSectionReader(j.canon, 0, j.canon.Size())), make([]byte, 1<<20))
		return err
	})
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	j.canon.Close()
	j.canon = nil
	return nil
}

// Finish writes the outputs that span arches (the OCI layout) and
// removes the work directory.
func (s *Set) Finish() ([]Result, error) {
	var res []Result
	for _, o := range s.outs {
		if o.finish == nil {
			continue
		}
		p, err := o.finish(s, o)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", o.Name, err)
		}
		res = append(res, result("", o.Name, p))
	}
	if s.p.Layout && !AnyLayout(s.p.Outputs) {
		if err := s.writeLayout(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// Layout is the OCI layout to push: NAME.oci when oci is an output,
// else the work directory's until Close.
func (s *Set) Layout() string {
	for _, o := range s.outs {
		if o.Layout {
			return s.path(o, "")
		}
	}
	return filepath.Join(s.work, "layout")
}

// Close removes the work directory (after an error too: nothing half
// made stays).
func (s *Set) Close() error {
	if s.work == "" {
		return nil
	}
	return os.RemoveAll(s.work)
}

func result(arch, output, p string) Result {
	return Result{Arch: arch, Output: output, Path: p, Size: size(p)}
}

// size is a file's size, or the total of a directory's files.
func size(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func (s *Set) path(o Output, arch string) string {
	return filepath.Join(s.p.Dir, o.File(s.p.Spec.Name, arch))
}

// tar writes tar.gz and tar.zst; the plain tar is the build's.
func (s *Set) tar(o Output, a *job) (string, error) {
	p := s.path(o, a.Arch)
	if o.Rootfs {
		return a.Tar, nil
	}
	return p, tarball.WriteFile(s.p.Context, p, a.Tar, o.Name)
}

func (s *Set) wsl(o Output, a *job) (string, error) {
	p := s.path(o, a.Arch)
	var conf []byte
	if s.p.Spec.WSL != nil {
		conf = s.p.Spec.WSL.Conf()
	}
	return p, wsl.WriteFile(s.p.Context, p, a.Tar, conf, s.p.Created)
}

func (s *Set) lxc(o Output, a *job) (string, error) {
	p := s.path(o, a.Arch)
	return p, lxc.WriteFile(s.p.Context, p, a.Tar, lxc.Image{Name: s.p.Spec.Name, Arch: a.Arch, Created: s.p.Created, Hostname: s.p.Spec.Hostname})
}

// ociAdd makes the arch's layer and image in the work layout; the
// layout is written by ociFinish.
func (s *Set) ociAdd(_ Output, j *job) (string, error) {
	return "", s.image(j)
}

// image makes the arch's layer and image in the work layout, once.
func (s *Set) image(a *job) error {
	if a.image != nil {
		return nil
	}
	in, err := os.Open(a.Tar)
	if err != nil {
		return err
	}
	defer in.Close()
	layer, err := oci.WriteLayer(filepath.Join(s.work, "layout", "blobs"), ctxio.Reader(s.p.Context, in))
	if err != nil {
		return err
	}
	img, err := oci.Image(layer, a.Arch, s.p.Spec.OCI, s.p.Created)
	if err != nil {
		return err
	}
	a.image = img
	s.entries = append(s.entries, oci.Entry{Arch: a.Arch, Image: img, SBOM: a.sbom, SBOMName: SBOMFile(s.p.Spec.Name, a.Arch)})
	return nil
}

func (s *Set) writeLayout() error {
	return oci.WriteLayout(filepath.Join(s.work, "layout"), oci.RefName(s.tag), oci.Annotations(s.p.Spec.OCI, s.p.Created), s.entries)
}

// ociFinish writes the layout and swaps it in for NAME.oci.
func (s *Set) ociFinish(o Output) (string, error) {
	if err := s.writeLayout(); err != nil {
		return "", err
	}
	dst := s.path(o, "")
	old := filepath.Join(s.work, "old")
	if err := os.Rename(dst, old); err != nil && !os.IsNotExist(err) {
		return "", err
	}
	if err := os.Rename(filepath.Join(s.work, "layout"), dst); err != nil {
		os.Rename(old, dst)
		return "", err
	}
	return dst, nil
}

func (s *Set) docker(o Output, a *job) (string, error) {
	p := s.path(o, a.Arch)
	if err := s.image(a); err != nil {
		return "", err
	}
	return p, oci.WriteDockerArchive(s.p.Context, p, s.tag, a.image)
}

// ext4 writes the file system image, sized from the content, or
// Plan.DiskSize, or the spec's disk.size.
func (s *Set) ext4(o Output, a *job) (string, error) {
	p := s.path(o, a.Arch)
	size := s.p.DiskSize
	if size == 0 && s.p.Spec.Disk != nil {
		size = s.p.Spec.Disk.Size
	}
	opts := ext4.Options{Time: s.p.Created, Label: s.label(), Size: size, Context: s.p.Context, Digest: s.p.Digests}
	var st ext4.Stats
	var err error
	if a.canon == nil {
		st, err = ext4.BuildFile(p, a.Tar, opts)
	} else {
		canon := a.canon
		opts.TarSHA256 = canon.SHA256
		opts.Entries = func() ext4.Entries { return canon.Entries() }
		err = atomicfile.WriteFile(p, 0o644, func(f *os.File) error {
			st, err = ext4.Build(f, io.NewSectionReader(a.canon, 0, a.canon.Size()), opts)
			return err
		})
		if err != nil {
			err = fmt.Errorf("ext4: %s: %w", p, err)
		}
	}
	if err == nil && s.p.Digests {
		a.sums[p] = hex.EncodeToString(st.SHA256[:])
	}
	return p, err
}

// label is the ext4 volume label: the spec's name, cut to ext4's 16 bytes.
func (s *Set) label() string {
	l := s.p.Spec.Name
	return l[:min(len(l), 16)]
}

// sbom is the SPDX document of the arch's installed packages.
func (s *Set) sbom(a *job) ([]byte, error) {
	var r io.Reader
	if a.canon != nil {
		r = a.canon.Only(sbom.InstalledPath) // the only file it reads
	} else {
		f, err := os.Open(a.Tar)
		if err != nil {
			return nil, fmt.Errorf("output: sbom: %w", err)
		}
		defer f.Close()
		r = f
	}
	pkgs, err := sbom.Installed(r)
	if err != nil {
		return nil, err
	}
	doc, err := sbom.New(pkgs, sbom.Options{Name: s.p.Spec.Name, Arch: a.Arch, Created: s.p.Created, Tool: s.p.Tool, Lock: a.Lock})
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := doc.Write(&b); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}
