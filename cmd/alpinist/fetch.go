package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alpinist/alpinist/builder"
	"github.com/alpinist/alpinist/internal/atomicfile"

	"github.com/spf13/cobra"
)

type fetchFlags struct {
	arch               []string
	lockedIn, cacheDir string
	out                string
	parallel           int
}

func newFetchCmd(e *env) *cobra.Command {
	var f fetchFlags
	cmd := &cobra.Command{
		Use:   "fetch SPEC",
		Short: "Download and verify a spec's packages into the cache",
		Long: `fetch resolves the spec (or takes the packages of --locked FILE), downloads
the packages not cached yet in parallel, and verifies each one completely:
the signature against the spec's keys, the control checksum against the
index's C:, the data hash and every file's checksum. Only verified packages
enter the cache, which is keyed by checksum and safe to share between
concurrent builds. With -o DIR the packages are also copied to DIR/ARCH/.

A progress bar is drawn when stderr is a terminal.`,
		Example: `  alpinist fetch testdata/specs/demo.yaml
  alpinist fetch web.yaml --locked web.lock -o ./packages`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFetch(cmd, e, args[0], f)
		},
	}
	cmd.Flags().StringSliceVar(&f.arch, "arch", nil, "architectures to fetch (default: the spec's)")
	cmd.Flags().StringVar(&f.lockedIn, "locked", "", "fetch exactly the packages of lock `FILE`")
	cmd.Flags().StringVar(&f.cacheDir, "cache", "", "package cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	cmd.Flags().StringVarP(&f.out, "output", "o", "", "also copy the packages to `DIR`/ARCH/")
	cmd.Flags().IntVar(&f.parallel, "parallel", 4, "concurrent downloads")
	return cmd
}

func runFetch(cmd *cobra.Command, e *env, specPath string, f fetchFlags) error {
	sess, err := builder.Open(specPath, builder.OpenOptions{Arches: f.arch, LockPath: f.lockedIn, CacheDir: f.cacheDir, NeedCache: true, Log: e.log})
	if err != nil {
		return err
	}
	client, cache := sess.Client, sess.Client.Cache
	client.Parallel = f.parallel
	for _, arch := range sess.Arches {
		r, err := sess.Resolve(cmd.Context(), arch)
		if err != nil {
			return err
		}
		items, err := r.Items(cache)
		if err != nil {
			return err
		}
		var total int64
		for _, it := range items {
			if _, ok := cache.Lookup(it.Package.Checksum); !ok {
				total += it.Package.Size
			}
		}
		bar := newByteBar(e.progress(), arch, total)
		client.OnBytes = bar.add
		paths, err := client.Fetch(cmd.Context(), items)
		bar.done()
		if err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		if f.out != "" {
			for i, it := range items {
				if err := copyFile(paths[i], filepath.Join(f.out, arch, it.Package.Filename())); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(e.stdout, "%s: %d packages verified, %d bytes downloaded, cache %s\n", arch, len(items), bar.n.Load(), cache.Dir)
	}
	return nil
}

// copyFile copies src to dst through a temporary file and a rename.
func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	err = atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", dst, err)
	}
	return nil
}
