package builder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/repo"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/apk/solver"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/spec"
)

// Session is what resolve, fetch and build share: the spec, the arches
// to work on, a client trusting the spec's keys, and the lock when
// given.
type Session struct {
	Spec     *spec.Spec
	SpecPath string
	Arches   []string
	Client   *repo.Client
	// Locked is the lock file at LockPath, nil without one.
	Locked   *lock.File
	LockPath string
}

// OpenOptions say how to open a spec.
type OpenOptions struct {
	// Arches are the --arch values (default: the spec's).
	Arches []string
	// LockPath is a lock file to build exactly ("": resolve).
	LockPath string
	// CacheDir is the package cache; with NeedCache its default
	// location when empty, else no cache when empty.
	CacheDir  string
	NeedCache bool
	// AnyArch builds Arches even where the spec does not list them (a
	// fleet's matrix names the arches of all its specs).
	AnyArch bool
	Log     *slog.Logger
}

// Open loads a spec and prepares a client.
func Open(specPath string, o OpenOptions) (*Session, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := spec.Load(specPath)
	if err != nil {
		return nil, err
	}
	for _, w := range s.Warnings {
		log.Warn(w)
	}
	sess := &Session{Spec: s, SpecPath: specPath, LockPath: o.LockPath}
	if o.AnyArch && len(o.Arches) > 0 {
		sess.Arches = o.Arches
	} else if sess.Arches, err = specArches(s, specPath, o.Arches); err != nil {
		return nil, err
	}
	if len(s.Keys) == 0 {
		return nil, errors.New("no trusted keys: list key directories or .rsa.pub files under keys: in the spec")
	}
	keys, err := sign.LoadKeyring(s.Keys...)
	if err != nil {
		return nil, err
	}
	sess.Client = &repo.Client{Keys: keys, Log: log}
	cacheDir := o.CacheDir
	if cacheDir == "" && o.NeedCache {
		if cacheDir, err = repo.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	if cacheDir != "" {
		if sess.Client.Cache, err = repo.OpenCache(cacheDir); err != nil {
			return nil, err
		}
	}
	if o.LockPath != "" {
		if sess.Locked, err = lock.Read(o.LockPath); err != nil {
			return nil, err
		}
	}
	return sess, nil
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

// Resolved is one arch's package list.
type Resolved struct {
	Arch string
	// Indexes are the spec's repositories' indexes, in its order.
	Indexes []*repo.Index
	// Entry is the lock's entry: solved, or checked against the lock.
	Entry lock.Arch
	// World is what was asked for (spec.World, boot loaders pinned).
	World []apk.Dependency
}

// Resolve reads the spec's indexes for arch and either solves the
// spec's packages or, with a lock, checks and returns the locked entry.
func (s *Session) Resolve(ctx context.Context, arch string) (*Resolved, error) {
	idx, err := s.Client.Indexes(ctx, s.Spec.Repositories, arch)
	if err != nil {
		return nil, err
	}
	if err := checkBootLoaders(s.Spec, arch, idx); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", s.SpecPath, arch, err)
	}
	r := &Resolved{Arch: arch, Indexes: idx, World: world(s.Spec, arch, idx)}
	if s.Locked != nil {
		la, ok := s.Locked.Find(arch)
		if !ok {
			return nil, fmt.Errorf("%s: no entry for %s; run resolve --lock again", s.LockPath, arch)
		}
		if err := repo.CheckLock(la, r.World, idx, s.Client.Cache); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", s.LockPath, arch, err)
		}
		r.Entry = *la
		return r, nil
	}
	repos := make([]solver.Repository, len(idx))
	for i, x := range idx {
		repos[i] = solver.Repository{Name: x.Repository.URL, Tag: x.Repository.Tag, Packages: x.Packages}
	}
	installs, err := solver.Solve(repos, r.World)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", s.SpecPath, arch, err)
	}
	r.Entry = repo.LockArch(arch, r.World, idx, installs)
	return r, nil
}

// Items are the entry's packages as the indexes have them, each looked
// up once.
func (r *Resolved) Items(cache *repo.Cache) ([]repo.Item, error) {
	return repo.LockItems(&r.Entry, r.Indexes, cache)
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

// ReadKeys reads the public keys of the spec's key directories and
// files (name -> PEM), to put into the target.
func ReadKeys(paths []string) (map[string][]byte, error) {
	keys := map[string][]byte{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		files := []string{p}
		if st.IsDir() {
			ents, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			files = nil
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".pub") {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
		slices.Sort(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			keys[filepath.Base(f)] = data
		}
	}
	return keys, nil
}
