package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/builder"
)

func newCacheCmd(e *env) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List, prune, push and pull the package cache and the build cache",
		Long: `The cache directory ($ALPINIST_CACHE, else $XDG_CACHE_HOME/alpinist, else
~/.cache/alpinist; --cache DIR) holds:

    packages/   verified packages, by checksum
    rootfs/     the build cache: each build VM's rootfs tar, under the hash
                of everything the VM was given (kernel, initramfs, package
                disk). A build whose inputs did not change takes its tar
                from there and boots no VM (build --no-cache boots it anyway).
    boot/       what the build VM boots: its kernel (an x86 kernel as the
                ELF inside its bzImage, which QEMU starts directly; a
                32-bit ARM kernel as the Image inside its zImage) and its
                initramfs (the agent and the virtio modules), under the
                hash of the kernel package and the agent. A build with the
                same kernel boots at once, without reading the package.

Builds sharing a cache are safe: files appear whole (written, synced,
renamed), and a build holds a lock on its build cache entry, so a second
build of the same system waits for the first and reuses its result.

Builders on other machines share the packages and the build cache
through a registry: cache push REF and cache pull REF, or build
--cache-to REF and --cache-from REF (docs/scale-out.md).`,
	}
	cmd.PersistentFlags().StringVar(&dir, "cache", "", "cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	open := func() (string, error) {
		if dir != "" {
			return dir, nil
		}
		return repo.DefaultCacheDir()
	}

	cmd.AddCommand(newCacheLsCmd(e, open), newCachePruneCmd(e, open), newCachePushCmd(e, open), newCachePullCmd(e, open))
	return cmd
}

// newCacheLsCmd is cache ls.
func newCacheLsCmd(e *env, open func() (string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the build cache and the package cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := open()
			if err != nil {
				return err
			}
			n, size, err := dirUsage(filepath.Join(d, "packages"))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "cache %s\npackages: %d, %s\n", d, n, humanSize(size))
			boots, _, err := builder.BootEntries(d)
			if err != nil {
				return err
			}
			var bootSize int64
			for _, b := range boots {
				bootSize += b.Size
			}
			fmt.Fprintf(e.stdout, "boot: %d kernels and initramfs, %s\n", len(boots), humanSize(bootSize))
			entries, err := builder.Entries(d)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				fmt.Fprintln(e.stdout, "build cache: empty")
				return nil
			}
			fmt.Fprintf(e.stdout, "build cache: %d rootfs\n", len(entries))
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tNAME\tARCH\tSIZE\tCREATED\tUSED")
			for _, en := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", en.Key[:16], en.Name, en.Arch, humanSize(en.Size),
					en.Created.Local().Format(time.DateTime), en.Used.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

// newCachePruneCmd is cache prune.
func newCachePruneCmd(e *env, open func() (string, error)) *cobra.Command {
	var all bool
	var olderThan time.Duration
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove build cache entries not used lately (--all: everything)",
		Long: `prune removes the build cache's rootfs tars and the boot cache's
kernels that no build used for --older-than (default 30 days). --all
removes every rootfs tar, kernel and package: the next build fetches and
builds again. Rootfs entries a running build holds are left.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := open()
			if err != nil {
				return err
			}
			entries, err := builder.Entries(d)
			if err != nil {
				return err
			}
			var freed int64
			removed := 0
			var errs []error
			for _, en := range entries {
				if !all && time.Since(en.Used) < olderThan {
					continue
				}
				if err := builder.Remove(d, en.Key); err != nil {
					errs = append(errs, err)
					continue
				}
				freed += en.Size
				removed++
			}
			if all {
				pkgs, _ := filepath.Glob(filepath.Join(d, "packages", "*"))
				for _, p := range pkgs {
					if st, err := os.Stat(p); err == nil {
						freed += st.Size()
					}
					if err := os.Remove(p); err != nil {
						errs = append(errs, err)
					}
				}
				fmt.Fprintf(e.stdout, "removed %d packages\n", len(pkgs))
			}
			fmt.Fprintf(e.stdout, "removed %d of %d rootfs in the build cache; freed %s\n", removed, len(entries), humanSize(freed))
			boots, leftovers, err := builder.BootEntries(d)
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			removed, freed = 0, 0
			for _, b := range boots {
				if !all && time.Since(b.Used) < olderThan {
					continue
				}
				if err := builder.RemoveBoot(d, b.Key); err != nil {
					errs = append(errs, err)
					continue
				}
				freed += b.Size
				removed++
			}
			for _, l := range leftovers { // a killed build's; a running one's are younger
				if st, err := os.Stat(l); err == nil && (all || time.Since(st.ModTime()) > time.Hour) {
					errs = append(errs, os.RemoveAll(l))
				}
			}
			fmt.Fprintf(e.stdout, "removed %d of %d kernels in the boot cache; freed %s\n", removed, len(boots), humanSize(freed))
			return errors.Join(errs...)
		},
	}
	prune.Flags().BoolVar(&all, "all", false, "remove every rootfs, kernel and package")
	prune.Flags().DurationVar(&olderThan, "older-than", 30*24*time.Hour, "remove rootfs and kernels unused for this long")
	return prune
}

// dirUsage counts the files of a directory and their bytes.
func dirUsage(dir string) (int, int64, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var size int64
	n := 0
	for _, en := range ents {
		if info, err := en.Info(); err == nil && info.Mode().IsRegular() {
			n++
			size += info.Size()
		}
	}
	return n, size, nil
}

// humanSize is a size in binary units.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), 0
	for v >= unit && u < 4 {
		v /= unit
		u++
	}
	return fmt.Sprintf("%.1f %s", v, []string{"B", "KiB", "MiB", "GiB", "TiB"}[u])
}
