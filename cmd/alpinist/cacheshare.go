package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/builder"
	"github.com/alpinist/alpinist/regcache"
)

// newCachePushCmd is cache push.
func newCachePushCmd(e *env, open func() (string, error)) *cobra.Command {
	var insecure bool
	cmd := &cobra.Command{
		Use:   "push REF",
		Short: "Push the package cache and the build cache to a registry repository",
		Long: `push pushes every package of the package cache and every rootfs of
the build cache to the registry repository REF (HOST[:PORT]/REPO), one OCI
artifact each: packages tagged apk-SHA1 (the checksum of their control
part), rootfs tagged rootfs-KEY (the build key). What the registry has
is not pushed again. Other builders take them with alpinist build
--cache-from REF or alpinist cache pull REF. Credentials as for alpinist
push.`,
		Example: `  alpinist cache push registry.example.org/ci/alpinist-cache
  alpinist cache push localhost:5000/cache --insecure`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := open()
			if err != nil {
				return err
			}
			to, err := regcache.Open(cmd.Context(), args[0], regcache.Options{Insecure: insecure})
			if err != nil {
				return err
			}
			pkgs, _ := filepath.Glob(filepath.Join(d, "packages", "sha1-*.apk"))
			var pushed, had int
			for _, p := range pkgs {
				sum, err := repo.ParseKey(strings.TrimSuffix(filepath.Base(p), ".apk"))
				if err != nil {
					continue
				}
				did, err := to.PutPackage(sum, p)
				if err != nil {
					return err
				}
				pushed, had = pushed+b2i(did), had+b2i(!did)
			}
			fmt.Fprintf(e.stdout, "packages: %d pushed, %d there already\n", pushed, had)
			entries, err := builder.Entries(d)
			if err != nil {
				return err
			}
			pushed, had = 0, 0
			for _, en := range entries {
				did, err := builder.PushEntry(d, to, en.Key)
				if err != nil {
					return err
				}
				pushed, had = pushed+b2i(did), had+b2i(!did)
			}
			fmt.Fprintf(e.stdout, "rootfs: %d pushed, %d there already\n", pushed, had)
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "plain HTTP, for a registry on localhost only")
	return cmd
}

// newCachePullCmd is cache pull.
func newCachePullCmd(e *env, open func() (string, error)) *cobra.Command {
	var insecure bool
	var keys []string
	cmd := &cobra.Command{
		Use:   "pull REF --keys DIR",
		Short: "Pull a registry repository's packages and build cache into the cache",
		Long: `pull takes every package and rootfs of the registry repository REF
(as alpinist cache push or build --cache-to left them) that the cache
lacks. Each package is verified as a fetch verifies it: signed by one of
the keys of --keys (files or directories of public keys), its data and
files hashed, its control checksum the one its tag names. Each rootfs
is checked against the digests of its artifact and must name its build
key; a build reads it through the same checks as its own rootfs.`,
		Example: `  alpinist cache pull registry.example.org/ci/alpinist-cache --keys /etc/apk/keys`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 {
				return fmt.Errorf("--keys is required: the packages pulled are verified against them")
			}
			kr, err := sign.LoadKeyring(keys...)
			if err != nil {
				return err
			}
			d, err := open()
			if err != nil {
				return err
			}
			pc, err := repo.OpenCache(d)
			if err != nil {
				return err
			}
			from, err := regcache.Open(cmd.Context(), args[0], regcache.Options{Insecure: insecure})
			if err != nil {
				return err
			}
			ptags, rtags, err := from.Tags()
			if err != nil {
				return err
			}
			var pulled, had int
			var errs []error
			for _, t := range ptags {
				sum, ok := regcache.TagChecksum(t)
				if !ok {
					continue
				}
				if _, ok := pc.Lookup(sum); ok {
					had++
					continue
				}
				if _, err := from.PullPackage(sum, pc, kr); err != nil {
					errs = append(errs, err)
					continue
				}
				pulled++
			}
			fmt.Fprintf(e.stdout, "packages: %d pulled, %d here already\n", pulled, had)
			local := map[string]bool{}
			entries, err := builder.Entries(d)
			if err != nil {
				return err
			}
			for _, en := range entries {
				local[en.Key] = true
			}
			pulled, had = 0, 0
			for _, t := range rtags {
				key, ok := regcache.TagKey(t)
				if !ok {
					continue
				}
				if local[key] {
					had++
					continue
				}
				if err := builder.PullEntry(d, from, key); err != nil {
					errs = append(errs, err)
					continue
				}
				pulled++
			}
			fmt.Fprintf(e.stdout, "rootfs: %d pulled, %d here already\n", pulled, had)
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("%d entries were not taken:\n%w", len(errs), err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "plain HTTP, for a registry on localhost only")
	cmd.Flags().StringSliceVar(&keys, "keys", nil, "trusted public keys: files or `DIR`s (repeatable)")
	return cmd
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
