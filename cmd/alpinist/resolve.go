package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/apk/solver"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/spec"
)

type resolveFlags struct {
	arch     []string
	lockOut  string
	lockedIn string
	jsonOut  bool
	cacheDir string
}

func newResolveCmd(e *env) *cobra.Command {
	var f resolveFlags
	cmd := &cobra.Command{
		Use:   "resolve SPEC",
		Short: "Resolve a spec's packages and print them in install order",
		Long: `resolve reads the repositories' signed indexes (never the package files),
solves the spec's package list with apk-tools' semantics, and prints one line
per package in install order:

    NAME VERSION REPOSITORY

for each architecture of the spec (or those given with --arch). With --lock
it also writes the lock file; with --locked it checks a lock file against
the spec and the repositories and prints the locked packages instead of
solving again. Unsatisfiable package lists are explained the way apk does.`,
		Example: `  alpinist resolve testdata/specs/demo.yaml --arch x86_64
  alpinist resolve web.yaml --lock web.lock
  alpinist resolve web.yaml --locked web.lock --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runResolve(cmd, e, args[0], f)
		},
	}
	cmd.Flags().StringSliceVar(&f.arch, "arch", nil, "architectures to resolve (default: the spec's)")
	cmd.Flags().StringVar(&f.lockOut, "lock", "", "write the lock file to `FILE`")
	cmd.Flags().StringVar(&f.lockedIn, "locked", "", "use the packages of lock `FILE` instead of solving")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print JSON instead of lines")
	cmd.Flags().StringVar(&f.cacheDir, "cache", "", "package cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	return cmd
}

// resolved is one arch's result.
type resolved struct {
	Arch     string            `json:"arch"`
	Packages []resolvedPackage `json:"packages"`
}

type resolvedPackage struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	Repository string `json:"repository"`
	Checksum   string `json:"checksum"`
	Size       int64  `json:"size"`
}

func runResolve(cmd *cobra.Command, e *env, specPath string, f resolveFlags) error {
	sc, err := openSpec(e, specPath, f.arch, f.lockedIn, f.cacheDir, false)
	if err != nil {
		return err
	}
	s, arches, client, locked := sc.spec, sc.arches, sc.client, sc.locked
	out := &lock.File{Name: s.Name}
	var results []resolved
	for _, arch := range arches {
		_, entry, err := resolveArch(cmd.Context(), client, s, specPath, arch, locked, f.lockedIn)
		if err != nil {
			return err
		}
		out.Set(entry)
		r := resolved{Arch: arch}
		for _, p := range entry.Packages {
			r.Packages = append(r.Packages, resolvedPackage{Name: p.Name, Version: p.Version, Repository: p.Repository, Checksum: p.Checksum, Size: p.Size})
		}
		results = append(results, r)
	}
	if f.lockOut != "" {
		if err := lock.Write(f.lockOut, out); err != nil {
			return err
		}
		e.log.Info("wrote lock file", "path", f.lockOut)
	}
	if f.jsonOut {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	for _, r := range results {
		if len(results) > 1 {
			fmt.Fprintf(e.stdout, "# %s\n", r.Arch)
		}
		for _, p := range r.Packages {
			if _, err := fmt.Fprintf(e.stdout, "%s %s %s\n", p.Name, p.Version, p.Repository); err != nil {
				return err
			}
		}
	}
	return nil
}

// specSession is what resolve and fetch share: the spec, the arches to
// work on, a client trusting the spec's keys, and the lock when given.
type specSession struct {
	spec   *spec.Spec
	arches []string
	client *repo.Client
	locked *lock.File
}

// openSpec loads a spec and prepares a client. needCache opens the cache
// (its default location when cacheDir is empty); otherwise only an
// explicit cacheDir is opened.
func openSpec(e *env, specPath string, arch []string, lockPath, cacheDir string, needCache bool) (*specSession, error) {
	s, err := spec.Load(specPath)
	if err != nil {
		return nil, err
	}
	for _, w := range s.Warnings {
		e.log.Warn(w)
	}
	sc := &specSession{spec: s}
	if sc.arches, err = specArches(s, specPath, arch); err != nil {
		return nil, err
	}
	keys, err := loadKeyring(s.Keys)
	if err != nil {
		return nil, err
	}
	sc.client = &repo.Client{Keys: keys, Log: e.log}
	if cacheDir == "" && needCache {
		if cacheDir, err = repo.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	if cacheDir != "" {
		if sc.client.Cache, err = repo.OpenCache(cacheDir); err != nil {
			return nil, err
		}
	}
	if lockPath != "" {
		if sc.locked, err = lock.Read(lockPath); err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// resolveArch reads the spec's indexes for arch and either solves the
// spec's packages or, with a lock, checks and returns the locked entry.
func resolveArch(ctx context.Context, client *repo.Client, s *spec.Spec, specPath, arch string, locked *lock.File, lockPath string) ([]*repo.Index, lock.Arch, error) {
	idx, err := client.Indexes(ctx, specRepos(s), arch)
	if err != nil {
		return nil, lock.Arch{}, err
	}
	if err := checkBootLoaders(s, arch, idx); err != nil {
		return nil, lock.Arch{}, fmt.Errorf("%s: %s: %w", specPath, arch, err)
	}
	if locked != nil {
		la, ok := locked.Find(arch)
		if !ok {
			return nil, lock.Arch{}, fmt.Errorf("%s: no entry for %s; run resolve --lock again", lockPath, arch)
		}
		if err := repo.CheckLock(la, world(s, arch, idx), idx, client.Cache); err != nil {
			return nil, lock.Arch{}, fmt.Errorf("%s: %s: %w", lockPath, arch, err)
		}
		return idx, *la, nil
	}
	installs, err := solve(idx, world(s, arch, idx))
	if err != nil {
		return nil, lock.Arch{}, fmt.Errorf("%s: %s: %w", specPath, arch, err)
	}
	return idx, repo.LockArch(arch, world(s, arch, idx), idx, installs), nil
}

// world is the spec's world for arch (spec.World) with each boot loader
// the disk adds pinned to the tagged repository that has it when no
// untagged one does: a real Alpine set takes its kernel and boot
// loaders from a kit repository named "@kit DIR", as apk would need
// "syslinux@kit" to install it from there.
func world(s *spec.Spec, arch string, idx []*repo.Index) []apk.Dependency {
	w := s.World(arch)
	if s.Disk == nil {
		return w
	}
	has := func(x *repo.Index, name string) bool {
		return slices.ContainsFunc(x.Packages, func(p *apk.Package) bool { return p.Name == name })
	}
	for _, name := range bootdisk.New(s.Disk, arch).Packages() {
		i := slices.IndexFunc(w, func(d apk.Dependency) bool { return d.Name == name })
		if i < 0 || slices.ContainsFunc(s.Packages, func(d apk.Dependency) bool { return d.Name == name }) {
			continue // named by the spec itself: as written
		}
		if slices.ContainsFunc(idx, func(x *repo.Index) bool { return x.Repository.Tag == "" && has(x, name) }) {
			continue
		}
		if j := slices.IndexFunc(idx, func(x *repo.Index) bool { return has(x, name) }); j >= 0 {
			w[i].Tag = idx[j].Repository.Tag
		}
	}
	return w
}

// checkBootLoaders says clearly when the repositories lack a boot loader
// the disk adds to the world (before the solver names it without a why).
func checkBootLoaders(s *spec.Spec, arch string, idx []*repo.Index) error {
	if s.Disk == nil {
		return nil
	}
	for _, name := range bootdisk.New(s.Disk, arch).Packages() {
		found := slices.ContainsFunc(idx, func(x *repo.Index) bool {
			return slices.ContainsFunc(x.Packages, func(p *apk.Package) bool { return p.Name == name })
		})
		if !found {
			return fmt.Errorf("disk.boot: %s needs the package %s, which the repositories do not have", bootdisk.LoaderName(name), name)
		}
	}
	return nil
}

// specArches checks --arch values against the spec.
func specArches(s *spec.Spec, specPath string, want []string) ([]string, error) {
	if len(want) == 0 {
		return s.Arch, nil
	}
	for _, a := range want {
		if !slices.Contains(s.Arch, a) {
			return nil, fmt.Errorf("--arch %s: the spec %s builds %s", a, specPath, strings.Join(s.Arch, ", "))
		}
	}
	return want, nil
}

func specRepos(s *spec.Spec) []repo.Repository {
	out := make([]repo.Repository, len(s.Repositories))
	for i, r := range s.Repositories {
		out[i] = repo.Repository{URL: r.URL, Tag: r.Tag}
	}
	return out
}

func solve(idx []*repo.Index, world []apk.Dependency) ([]solver.Install, error) {
	repos := make([]solver.Repository, len(idx))
	for i, x := range idx {
		repos[i] = solver.Repository{Name: x.Repository.URL, Tag: x.Repository.Tag, Packages: x.Packages}
	}
	return solver.Solve(repos, world)
}
