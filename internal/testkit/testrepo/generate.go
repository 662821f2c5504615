package testrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/arch"
)

// KeyName is the test key's name: DIR/keys/KeyName is the public key,
// DIR/private/ holds the private one.
const KeyName = "alpinist-test.rsa.pub"

// stampFormat changes whenever the repository layout or a package's
// content changes in a way the generator's fingerprint may not show.
const stampFormat = 2

// stampFile is written into each DIR/main/ARCH after it is complete.
const stampFile = ".alpinist-testrepo.json"

// Options tell Generate what to build.
type Options struct {
	// Dir is the output directory (created when missing).
	Dir string
	// Arches are the Alpine architectures; default x86_64 and aarch64.
	Arches []string
	// DebCache holds downloaded .debs; default Dir/debs.
	DebCache string
	// Fingerprint identifies the generator build (cmd/testrepo passes a
	// hash of its executable); when it changes, everything is rebuilt.
	Fingerprint string
	// Force rebuilds even what is up to date.
	Force bool
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// ArchResult tells what Generate did for one architecture.
type ArchResult struct {
	Arch     string
	UpToDate bool          // the existing output was kept
	Packages []StampPkg    // what the repository holds
	Debs     []StampDeb    // the Debian packages it was made from
	Elapsed  time.Duration // time spent on this arch
}

// stamp records an arch's inputs and output, to skip work on reruns.
type stamp struct {
	Format      int
	Fingerprint string
	Arch        string
	Key         string // sha256 of the public key
	Kernel      string // the Debian kernel package the meta package named
	Debs        []StampDeb
	Packages    []StampPkg
}

// StampDeb is a Debian input.
type StampDeb struct {
	Name    string // NAME:ARCH
	Version string
	SHA256  string
}

// StampPkg is a package of the generated repository.
type StampPkg struct {
	Name, Version, Arch string
	Size                int64
	Description         string
}

// Generate builds the signed repository under opts.Dir: DIR/keys/,
// DIR/private/, DIR/main/ARCH/{APKINDEX.tar.gz,*.apk}, DIR/README.md,
// downloading Debian packages into the cache. An architecture whose
// stamp matches the current inputs (the generator's fingerprint, the
// key, and apt's candidate versions of every Debian package it used) is
// left as it is.
func Generate(ctx context.Context, opts Options) ([]ArchResult, error) {
	log := opts.Log
	if log == nil {
		log = discardLog()
	}
	arches := opts.Arches
	if len(arches) == 0 {
		arches = arch.Where(func(a arch.Arch) bool { return a.Debian != "" })
	}
	for _, a := range arches {
		if _, err := DebArch(a); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	cache := opts.DebCache
	if cache == "" {
		cache = filepath.Join(dir, "debs")
	}
	if err := os.MkdirAll(filepath.Join(dir, "main"), 0o755); err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	key, err := loadOrCreateKey(dir, log)
	if err != nil {
		return nil, err
	}
	debian := NewDebian(cache, log)
	debian.Prefetch(ctx, knownInputs(dir, arches))

	results := make([]ArchResult, len(arches))
	errs := make([]error, len(arches))
	var wg sync.WaitGroup
	for i, arch := range arches {
		wg.Go(func() {
			start := time.Now()
			r, err := generateArch(ctx, dir, arch, key, debian, opts, log)
			if err != nil {
				errs[i] = err
				return
			}
			r.Elapsed = time.Since(start)
			results[i] = *r
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := writeReadme(dir, results); err != nil {
		return nil, err
	}
	return results, nil
}

// knownInputs are the Debian packages the arches' stamps record, and
// their kernel meta packages: what the up-to-date checks ask apt about.
func knownInputs(dir string, arches []string) []string {
	var names []string
	for _, a := range arches {
		debArch, _ := DebArch(a)
		for _, m := range kernelDebCandidates(a, debArch) {
			names = append(names, m+":"+debArch)
		}
		if s, err := readStamp(filepath.Join(dir, "main", a, stampFile)); err == nil {
			for _, d := range s.Debs {
				names = append(names, d.Name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func readStamp(p string) (*stamp, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var s stamp
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &s, nil
}

// upToDate reports whether the stamp still describes what a build would
// produce now.
func upToDate(ctx context.Context, s *stamp, want *stamp, debArch string, d *Debian) (bool, string) {
	if s.Format != want.Format || s.Fingerprint != want.Fingerprint || s.Arch != want.Arch || s.Key != want.Key {
		return false, "generator, key or format changed"
	}
	kernel, err := resolveKernel(ctx, d, debArch, kernelDebCandidates(want.Arch, debArch))
	if err != nil {
		return false, err.Error()
	}
	if kernel != s.Kernel {
		return false, "kernel is now " + kernel
	}
	var names []string
	for _, deb := range s.Debs {
		names = append(names, deb.Name)
	}
	if len(names) == 0 {
		return false, "no inputs recorded"
	}
	cur, err := d.Show(ctx, names...)
	if err != nil {
		return false, err.Error()
	}
	for i, deb := range s.Debs {
		if cur[i].Version != deb.Version || cur[i].SHA256 != deb.SHA256 {
			return false, fmt.Sprintf("%s is now %s", deb.Name, cur[i].Version)
		}
	}
	return true, ""
}

func generateArch(ctx context.Context, dir, arch string, key *testKey, d *Debian, opts Options, log *slog.Logger) (*ArchResult, error) {
	debArch, _ := DebArch(arch)
	out := filepath.Join(dir, "main", arch)
	want := &stamp{Format: stampFormat, Fingerprint: opts.Fingerprint, Arch: arch, Key: key.pubHash}
	if !opts.Force {
		if old, err := readStamp(filepath.Join(out, stampFile)); err == nil {
			if ok, why := upToDate(ctx, old, want, debArch, d); ok {
				if _, err := os.Stat(filepath.Join(out, "APKINDEX.tar.gz")); err == nil {
					log.Info("up to date", "arch", arch, "packages", len(old.Packages))
					return &ArchResult{Arch: arch, UpToDate: true, Packages: old.Packages, Debs: old.Debs}, nil
				}
			} else {
				log.Info("rebuilding", "arch", arch, "why", why)
			}
		}
	}

	work, err := os.MkdirTemp(dir, ".work-"+arch+"-")
	if err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	defer os.RemoveAll(work)
	// Each arch records its own Debian inputs.
	ad := d.Fork()
	pkgs, err := BuildPackages(ctx, arch, ad, filepath.Join(work, "build"), log)
	if err != nil {
		return nil, err
	}
	kernel, err := resolveKernel(ctx, ad, debArch, kernelDebCandidates(arch, debArch))
	if err != nil {
		return nil, err
	}

	tmp := filepath.Join(work, "repo")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	var metas []*apk.Package
	for _, p := range pkgs {
		log.Info("writing", "arch", arch, "package", p.Meta.Filename())
		m, err := writePackage(ctx, p, key, filepath.Join(tmp, p.Meta.Filename()))
		if err != nil {
			return nil, fmt.Errorf("testrepo: %s: %s: %w", arch, p.Meta.Filename(), err)
		}
		metas = append(metas, m)
	}
	desc := fmt.Sprintf("alpinist synthetic test repository (%s, from Debian packages)", arch)
	if err := writeIndex(metas, arch, desc, key, filepath.Join(tmp, "APKINDEX.tar.gz")); err != nil {
		return nil, fmt.Errorf("testrepo: %s: APKINDEX.tar.gz: %w", arch, err)
	}

	want.Kernel = kernel
	for _, deb := range ad.Used() {
		want.Debs = append(want.Debs, StampDeb{Name: deb.Package + ":" + deb.Arch, Version: deb.Version, SHA256: deb.SHA256})
	}
	for _, m := range metas {
		want.Packages = append(want.Packages, StampPkg{Name: m.Name, Version: m.Version, Arch: m.Arch, Size: m.Size, Description: m.Description})
	}
	data, err := json.MarshalIndent(want, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, stampFile), append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	if err := replaceDir(tmp, out); err != nil {
		return nil, fmt.Errorf("testrepo: %s: %w", arch, err)
	}
	return &ArchResult{Arch: arch, Packages: want.Packages, Debs: want.Debs}, nil
}

// replaceDir puts the complete directory src in place of dst.
func replaceDir(src, dst string) error {
	old := dst + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

func fileSHA256(p string) (string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:]), nil
}

// writeReadme describes the repository in DIR/README.md.
func writeReadme(dir string, results []ArchResult) error {
	var b strings.Builder
	b.WriteString(readmeHead)
	for _, r := range results {
		fmt.Fprintf(&b, "\n### %s\n\n| package | version | arch | size | description |\n|---|---|---|---|---|\n", r.Arch)
		for _, p := range r.Packages {
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %s |\n", p.Name, p.Version, p.Arch, p.Size, p.Description)
		}
		fmt.Fprintf(&b, "\nMade from the Debian packages:")
		for _, d := range r.Debs {
			fmt.Fprintf(&b, " %s=%s", d.Name, d.Version)
		}
		b.WriteString("\n")
	}
	b.WriteString(readmeTests)
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(b.String()), 0o644)
}

const readmeHead = `# alpinist synthetic test repository

Generated by ` + "`make testrepo`" + ` (` + "`go run ./cmd/testrepo -o DIR`" + `); do not edit.
A signed Alpine repository in the real APK v2 format, made from Debian's
binaries and from generated trees, for alpinist's tests. Rerunning the
generator with the same Debian inputs gives byte-identical files.

- ` + "`keys/" + KeyName + "`" + `: the public test key (trust it with ` + "`--keys-dir keys`" + ` or ` + "`keys: [DIR/keys/]`" + ` in a spec)
- ` + "`private/`" + `: its private key (test use only)
- ` + "`main/ARCH/APKINDEX.tar.gz`, `main/ARCH/*.apk`" + `: the repository (` + "`repositories: [DIR/main]`" + `)
- ` + "`debs/`" + `: the cached Debian packages

## Packages
`

const readmeTests = `
## What the packages exercise

- busybox: Debian's busybox-static; /bin/sh -> /bin/busybox; provides cmd:busybox, cmd:sh, /bin/sh;
  a post-install running ` + "`/bin/busybox --install -s`" + ` and Alpine's trigger on /bin /usr/bin /sbin /usr/sbin /lib/modules/*.
- alpine-baselayout (directories with Alpine's modes, /var symlinks; depends on alpine-baselayout-data and /bin/sh),
  alpine-baselayout-data (/etc/passwd, group, shadow 0640 root:shadow, ...), alpine-release (/etc/os-release, ...),
  alpine-base (depends on alpine-baselayout, alpine-release, busybox).
- tzdata: Debian's tzdata (Architecture: all) as ` + "`" + ZoneinfoDir + "/**`" + `, Debian's regular files and relative symlinks
  (UTC -> Etc/UTC, Europe/Paris, America/New_York, ...); not Debian's docs, localtime link, right/ or posix/ trees.
- linux-virt: Debian's cloud kernel as /boot/vmlinuz-virt, config-virt, System.map-virt; /lib/modules/KVER/ holds the
  virtio, vfat/nls, overlay, efivarfs, sd_mod and loop modules with their dependencies as .ko.gz, with modules.dep,
  modules.alias, modules.order and modules.builtin; /usr/share/kernel/virt/kernel.release names KVER.
- linux-lts (x86_64 only): Debian's generic kernel, the same way as /boot/vmlinuz-lts..., with linux-virt's modules
  and those of real machines' storage a live ISO boots from (AHCI, IDE, XHCI/EHCI/UHCI/OHCI, usb-storage, uas).
- syslinux (x86_64 only): /usr/share/syslinux/{mbr.bin,gptmbr.bin,isolinux.bin,isohdpfx.bin,*.c32,...}; /sbin/extlinux runs Debian's glibc
  extlinux through the glibc bundled in /usr/libexec/syslinux.
- grub: /usr/bin/grub-mkimage and grub-editenv (glibc bundled in /usr/libexec/grub); grub-efi: /usr/lib/grub/x86_64-efi
  or arm64-efi, depends on grub.

Test packages (version ` + TestVersion + `, every arch):

| package | exercises |
|---|---|
| alpinist-test-scripts | pre-install and post-install write ` + MarkerDir + `/scripts.pre-install and scripts.post-install ("WHAT VERSION payload=absent/present") |
| alpinist-test-trigger | trigger on ` + HooksDir + `, appends "trigger DIRS" to ` + MarkerDir + `/trigger.log |
| alpinist-test-hook | installs ` + HooksDir + `/alpinist-test-hook.hook (fires the trigger) |
| alpinist-test-lib | provides so:libalpinisttest.so.1=1.0.0 |
| alpinist-test-hello | provides cmd:alpinist-hello (/usr/bin/alpinist-hello); depends on so:libalpinisttest.so.1 |
| alpinist-test-consumer | depends on cmd:alpinist-hello and so:libalpinisttest.so.1 |
| alpinist-test-if-a, -if-b, -if-both | -if-both has install_if "alpinist-test-if-a alpinist-test-if-b" |
| alpinist-test-owner, -replacer | both own ` + SharedFile + `; -replacer replaces -owner |
| alpinist-test-conflict-a, -conflict-b | -a depends on !alpinist-test-conflict-b |
| alpinist-test-hardlinks | hardlinks/{a,b,c} one inode; /usr/bin and /usr/sbin/alpinist-hardlink one inode |
| alpinist-test-xattr | ` + CapFile + ` with security.capability = cap_net_raw+ep (vfs_cap_data v2) |
| alpinist-test-emptydirs | empty directories, modes 0755, 0700, 1777, 2775 root:42 |
| alpinist-test-large | ` + LargeFile + `, 64 MiB of ChaCha8 data seeded with sha256("alpinist-test-large") |
| alpinist-test-failing | post-install exits 1 |
| alpinist-test-virt-a, -virt-b | both provide the virtual alpinist-test-virtual (ambiguous) |
| alpinist-test-prio-a, -prio-b | both provide alpinist-test-prio, provider_priority 10 and 20 |
| alpinist-test-versioned | in two versions, ` + TestVersion + ` and ` + TestVersion2 + ` |
| alpinist-test-noarch | arch noarch |
| ` + ServicePackage + ` | the OpenRC service ` + ServiceName + `: ` + ServiceScript + ` (0755, need localmount; a backgrounded /bin/sleep with a pidfile, writes ` + ServiceMarker + `) and ` + ServiceConf + ` |
`

// packageNames lists a result's package names, for messages.
func packageNames(r ArchResult) []string {
	var n []string
	for _, p := range r.Packages {
		n = append(n, p.Name+"-"+p.Version)
	}
	slices.Sort(n)
	return n
}
