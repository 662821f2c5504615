package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/assembler/oci"
	"github.com/alpinist/alpinist/assembler/output"
	"github.com/alpinist/alpinist/assembler/rootfs"
	"github.com/alpinist/alpinist/builder"
	"github.com/alpinist/alpinist/internal/epoch"
	"github.com/alpinist/alpinist/spec"
)

type assembleFlags struct {
	out, name string
	arch      []string
	outputs   []string
	diskSize  string
	boot      []string
	table     string
	bootPart  string
	compress  bool
	insecure  bool
}

func newAssembleCmd(e *env) *cobra.Command {
	var f assembleFlags
	cmd := &cobra.Command{
		Use:   "assemble INPUT -o DIR --output LIST",
		Short: "Write outputs from an existing root filesystem, without a VM",
		Long: `assemble makes alpinist's outputs from a root filesystem built elsewhere,
on the host, without a VM, Docker or root. INPUT is one of:

    a tar file           a rootfs tarball (plain, .gz, .zst or .xz), such as
                         docker export or podman export write
    an OCI layout DIR    an image layout (alpinist's NAME.oci, skopeo copy
                         oci:DIR, ...): the image of each --arch, its layers
                         applied in order with their whiteouts
    a registry REF       an image in a registry, pulled with the docker/podman
                         credentials (--insecure: plain HTTP, localhost only)

The root filesystem is first made canonical (entries sorted, hard links
after their file, numeric owners, times clamped to SOURCE_DATE_EPOCH, else
to the newest time in the input), so that the outputs are reproducible.
An image's config (entrypoint, cmd, env, ...) carries over to the oci and
docker-archive outputs. A raw or qcow2 disk needs a kernel (/boot/vmlinuz-*)
and a boot loader in the rootfs: the extlinux program (syslinux) for BIOS,
which alpinist installs itself, and GRUB's EFI image under /boot/efi for
UEFI (alpinist build puts it there); it boots with both when it can. A live
iso needs the same kernel and GRUB image, and syslinux's ISOLINUX files
(/usr/share/syslinux/isolinux.bin, ldlinux.c32, isohdpfx.bin) for BIOS.
The SBOM is written when the rootfs has an apk
database.

Outputs (--output): ` + outputNames() + `.`,
		Example: `  podman export $(podman create alpine) > alpine.tar
  alpinist assemble alpine.tar -o out --output ext4,oci --arch x86_64
  alpinist assemble out/web.oci -o out2 --output ext4 --arch aarch64
  alpinist assemble localhost:5000/web:1.0 --insecure -o out3 --output tar.zst`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAssemble(cmd.Context(), e, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output-dir", "o", "", "output `DIR` (required)")
	fl.StringSliceVar(&f.outputs, "output", []string{"tar"}, "outputs to write: "+outputNames())
	fl.StringSliceVar(&f.arch, "arch", nil, "architectures (default: the host's for a tar, the image's for a single image)")
	fl.StringVar(&f.name, "name", "", "NAME of the outputs (default: from INPUT)")
	fl.StringVar(&f.diskSize, "disk-size", "", "size of the ext4 image and of the raw/qcow2 disk, such as 2G (default: from the content)")
	fl.StringSliceVar(&f.boot, "boot", nil, "firmware the raw/qcow2 disk boots with: bios, uefi (default: what the rootfs has a boot loader for)")
	fl.StringVar(&f.table, "table", "gpt", "partition table of the raw/qcow2 disk: gpt or mbr")
	fl.BoolVar(&f.compress, "compress", false, "store the qcow2 disk's clusters zstd-compressed (QEMU 5.1 and newer read them)")
	fl.StringVar(&f.bootPart, "boot-partition", "", "put /boot on a partition of its own of `SIZE` (or auto: from the content)")
	fl.BoolVar(&f.insecure, "insecure", false, "plain HTTP, for a registry on localhost only")
	return cmd
}

var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9._+-]+`)

// inputName is a default NAME from INPUT.
func inputName(input string) string {
	base := filepath.Base(strings.TrimSuffix(input, "/"))
	if i := strings.LastIndexAny(input, "/"); i >= 0 && !isPath(input) {
		base = input[i+1:]
	}
	base, _, _ = strings.Cut(base, ":")
	base, _, _ = strings.Cut(base, "@")
	for _, ext := range []string{".gz", ".zst", ".xz", ".tgz", ".tar", ".oci"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.Trim(nameUnsafe.ReplaceAllString(base, "-"), "-.")
	if len(base) > 128 {
		base = strings.TrimRight(base[:128], "-.")
	}
	if base == "" {
		return "rootfs"
	}
	return base
}

func isPath(s string) bool {
	_, err := os.Stat(s)
	return err == nil
}

func runAssemble(ctx context.Context, e *env, input string, f assembleFlags) error {
	sp, err := assembleSpec(input, f)
	if err != nil {
		return err
	}
	sources, err := assembleSources(ctx, input, f, sp)
	if err != nil {
		return err
	}
	for _, src := range sources {
		if err := output.CheckArch(f.outputs, src.arch); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	return assembleInto(ctx, e, input, sp, f, sources)
}

// assembleInto writes the outputs f asks for of each source into f.out,
// through a stage: each source read as its canonical tree, the outputs
// dated SOURCE_DATE_EPOCH, else the newest time in the sources.
func assembleInto(ctx context.Context, e *env, input string, sp *spec.Spec, f assembleFlags, sources []source) error {
	epoch, haveEpoch, err := epoch.FromEnv()
	if err != nil {
		return err
	}
	stage, err := builder.NewStaging(f.out, sp.Name)
	if err != nil {
		return err
	}
	defer stage.Cleanup()
	clamp := time.Time{}
	if haveEpoch {
		clamp = epoch
	}
	canons, newest, err := canonicalize(ctx, input, sources, clamp, stage.Dir, sp.Name)
	defer func() {
		for _, c := range canons {
			c.close()
		}
	}()
	if err != nil {
		return err
	}
	if !haveEpoch {
		epoch = newest.UTC().Truncate(time.Second)
	}
	if err := writeOutputs(ctx, e, stage, sp, f, canons, epoch); err != nil {
		return err
	}
	if err := stage.Commit(ctx); err != nil {
		return err
	}
	printResults(e, stage.Results)
	return nil
}

// assembleSpec checks the flags and makes the spec the outputs are
// written for: the name and the disk.
func assembleSpec(input string, f assembleFlags) (*spec.Spec, error) {
	if f.out == "" {
		return nil, fmt.Errorf("-o DIR is required")
	}
	if err := output.Check(f.outputs); err != nil {
		return nil, fmt.Errorf("--output: %w", err)
	}
	var diskSize int64
	if f.diskSize != "" {
		n, err := spec.ParseSize(f.diskSize)
		if err != nil {
			return nil, fmt.Errorf("--disk-size: %w", err)
		}
		diskSize = n
	}
	disk := &spec.Disk{Size: diskSize, Table: f.table, Boot: f.boot, Compress: f.compress}
	if f.bootPart != "" {
		disk.SeparateBoot = true
		if f.bootPart != "auto" {
			n, err := spec.ParseSize(f.bootPart)
			if err != nil {
				return nil, fmt.Errorf("--boot-partition: %w (or auto)", err)
			}
			disk.BootSize = n
		}
	}
	if f.table != "" && f.table != "gpt" && f.table != "mbr" {
		return nil, fmt.Errorf("--table %q: want gpt or mbr", f.table)
	}
	for _, b := range f.boot {
		if b != "bios" && b != "uefi" {
			return nil, fmt.Errorf("--boot %q: want bios, uefi or both", b)
		}
	}
	sp := &spec.Spec{Name: f.name, Disk: disk}
	if sp.Name == "" {
		sp.Name = inputName(input)
	}
	if err := spec.CheckName(sp.Name); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	return sp, nil
}

// source is an arch's input stream.
type source struct {
	arch string
	open func() (io.ReadCloser, error)
}

// assembleSources are the input streams of the arches: a tar file's, or
// each image's, whose config goes to sp.OCI.
func assembleSources(ctx context.Context, input string, f assembleFlags, sp *spec.Spec) ([]source, error) {
	st, statErr := os.Stat(input)
	if statErr == nil && !st.IsDir() {
		arches := f.arch
		if len(arches) == 0 {
			arches = []string{arch.Host()}
		}
		if len(arches) != 1 {
			return nil, fmt.Errorf("a tar holds one architecture: give one --arch")
		}
		return []source{{arches[0], func() (io.ReadCloser, error) { return os.Open(input) }}}, nil
	}
	imgs, cfg, err := openImages(ctx, input, f.arch, f.insecure, statErr == nil)
	if err != nil {
		return nil, err
	}
	sp.OCI = cfg
	var sources []source
	for _, im := range imgs {
		img := im.img
		sources = append(sources, source{im.arch, func() (io.ReadCloser, error) { return mutate.Extract(img), nil }})
	}
	return sources, nil
}

// canon is an arch's canonical rootfs tar: read in place from the input
// (a plain tar file) or from its spool, and written to path only when an
// output needs the file.
type canon struct {
	arch, path string
	tar        *rootfs.Tar
	in         io.Closer
}

func (c canon) close() {
	c.tar.Close()
	c.in.Close()
}

// canonicalize reads each source as its canonical rootfs tar (first: the
// outputs' date may come from them), and the newest time in them.
func canonicalize(ctx context.Context, input string, sources []source, clamp time.Time, dir, name string) ([]canon, time.Time, error) {
	var canons []canon
	var newest time.Time
	for _, s := range sources {
		rc, err := s.open()
		if err != nil {
			return canons, newest, fmt.Errorf("%s: %s: %w", input, s.arch, err)
		}
		t, err := rootfs.Open(ctx, rc, clamp, dir)
		if err != nil {
			rc.Close()
			return canons, newest, fmt.Errorf("%s: %s: %w", input, s.arch, err)
		}
		canons = append(canons, canon{arch: s.arch, path: filepath.Join(dir, name+"-"+s.arch+".tar"), tar: t, in: rc})
		if n := t.Stats().Newest; n.After(newest) {
			newest = n
		}
	}
	return canons, newest, nil
}

// writeOutputs writes every arch's outputs into the stage.
func writeOutputs(ctx context.Context, e *env, stage *builder.Staging, sp *spec.Spec, f assembleFlags, canons []canon, epoch time.Time) error {
	set, err := output.New(output.Plan{Spec: sp, Dir: stage.Dir, Outputs: f.outputs, Created: epoch, Tool: "alpinist-" + versionString(),
		Log: e.log, DiskSize: sp.Disk.Size, NoSBOM: true, AutoBoot: true, Context: ctx, Digests: true})
	if err != nil {
		return err
	}
	defer set.Close()
	for _, c := range canons {
		res, err := set.Add(output.Arch{Arch: c.arch, Tar: c.path, Canon: c.tar})
		if err != nil {
			return fmt.Errorf("%s: %w", c.arch, err)
		}
		stage.Add(res)
	}
	res, err := set.Finish()
	if err != nil {
		return err
	}
	stage.Add(res)
	return nil
}

type archImage struct {
	arch string
	img  v1.Image
}

// openImages finds the image of each arch wanted in an OCI layout or a
// registry, and the config the outputs take over.
func openImages(ctx context.Context, input string, arches []string, insecure, isDir bool) ([]archImage, spec.OCI, error) {
	var ii v1.ImageIndex
	var single v1.Image
	if isDir {
		lp := layout.Path(input)
		idx, err := lp.ImageIndex()
		if err != nil {
			return nil, spec.OCI{}, fmt.Errorf("%s is neither a tar file nor an OCI layout: %w", input, err)
		}
		top, _, err := oci.ReadLayout(input)
		if err != nil {
			return nil, spec.OCI{}, err
		}
		if top.MediaType.IsIndex() {
			if ii, err = idx.ImageIndex(top.Digest); err != nil {
				return nil, spec.OCI{}, err
			}
		} else if single, err = idx.Image(top.Digest); err != nil {
			return nil, spec.OCI{}, err
		}
	} else {
		var nopts []name.Option
		if insecure {
			nopts = append(nopts, name.Insecure)
		}
		ref, err := name.ParseReference(input, nopts...)
		if err != nil {
			return nil, spec.OCI{}, fmt.Errorf("%s is not a file, a directory or an image reference: %w", input, err)
		}
		if insecure && !oci.Loopback(ref.Context().RegistryStr()) {
			return nil, spec.OCI{}, fmt.Errorf("--insecure is only for a registry on localhost, not %s", ref.Context().RegistryStr())
		}
		desc, err := remote.Get(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			return nil, spec.OCI{}, fmt.Errorf("%s: %w", input, err)
		}
		if desc.MediaType.IsIndex() {
			if ii, err = desc.ImageIndex(); err != nil {
				return nil, spec.OCI{}, err
			}
		} else if single, err = desc.Image(); err != nil {
			return nil, spec.OCI{}, err
		}
	}
	var out []archImage
	if single != nil {
		cf, err := single.ConfigFile()
		if err != nil {
			return nil, spec.OCI{}, err
		}
		arch := platformArch(v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant})
		if len(arches) > 0 && (len(arches) != 1 || arches[0] != arch) {
			return nil, spec.OCI{}, fmt.Errorf("%s is one image, for %s (not %s)", input, arch, strings.Join(arches, ", "))
		}
		out = append(out, archImage{arch, single})
	} else {
		m, err := ii.IndexManifest()
		if err != nil {
			return nil, spec.OCI{}, err
		}
		if len(arches) == 0 {
			return nil, spec.OCI{}, fmt.Errorf("%s is a multi-arch index: give --arch (it has %s)", input, indexArches(m))
		}
		for _, a := range arches {
			if _, err := oci.Platform(a); err != nil {
				return nil, spec.OCI{}, err
			}
			var found *v1.Descriptor
			for i, d := range m.Manifests {
				if d.Platform != nil && platformArch(*d.Platform) == a {
					found = &m.Manifests[i]
					break
				}
			}
			if found == nil {
				return nil, spec.OCI{}, fmt.Errorf("%s has no image for %s (it has %s)", input, a, indexArches(m))
			}
			img, err := ii.Image(found.Digest)
			if err != nil {
				return nil, spec.OCI{}, err
			}
			out = append(out, archImage{a, img})
		}
	}
	cf, err := out[0].img.ConfigFile()
	if err != nil {
		return nil, spec.OCI{}, err
	}
	return out, ociFromConfig(cf.Config), nil
}

func indexArches(m *v1.IndexManifest) string {
	var as []string
	for _, d := range m.Manifests {
		if d.Platform != nil {
			as = append(as, platformArch(*d.Platform))
		}
	}
	return strings.Join(as, ", ")
}

// platformArch names an OCI platform by its Alpine arch, or as OCI does
// when it has none.
func platformArch(p v1.Platform) string {
	if a, ok := oci.Arch(p); ok {
		return a
	}
	return p.String()
}

// ociFromConfig carries an image's runtime config over to the outputs.
func ociFromConfig(c v1.Config) spec.OCI {
	o := spec.OCI{Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkDir: c.WorkingDir, User: c.User, StopSignal: c.StopSignal, Labels: c.Labels}
	if len(c.Env) > 0 {
		o.Env = map[string]string{}
		for _, kv := range c.Env {
			k, v, _ := strings.Cut(kv, "=")
			o.Env[k] = v
		}
	}
	for p := range c.ExposedPorts {
		o.ExposedPorts = append(o.ExposedPorts, p)
	}
	for v := range c.Volumes {
		o.Volumes = append(o.Volumes, v)
	}
	slices.Sort(o.ExposedPorts)
	slices.Sort(o.Volumes)
	return o
}
