package repo

import (
	"fmt"
	"slices"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/apk/solver"
)

// LockArch records a solution for arch as a lock file entry. installs come
// from solving world against idx (solver.Install.Repository indexes idx).
func LockArch(arch string, world []apk.Dependency, idx []*Index, installs []solver.Install) lock.Arch {
	a := lock.Arch{Arch: arch}
	for _, x := range idx {
		a.Repositories = append(a.Repositories, x.Repository.String())
	}
	for _, d := range world {
		a.World = append(a.World, d.String())
	}
	for _, in := range installs {
		a.Packages = append(a.Packages, lock.Package{
			Name:       in.Package.Name,
			Version:    in.Package.Version,
			Checksum:   apk.EncodeChecksum(in.Package.Checksum),
			Repository: idx[in.Repository].Repository.String(),
			Size:       in.Package.Size,
		})
	}
	return a
}

// CheckLock verifies that a lock entry still describes this spec: the same
// world, and every locked package either still in its repository's index
// with the same checksum or kept in the cache (Alpine deletes old packages
// from its mirrors; the cache is what makes a lock lock).
func CheckLock(a *lock.Arch, world []apk.Dependency, idx []*Index, cache *Cache) error {
	var want []string
	for _, d := range world {
		want = append(want, d.String())
	}
	if !slices.Equal(a.World, want) {
		return fmt.Errorf("the spec's packages %v differ from the locked world %v; run resolve --lock again", want, a.World)
	}
	byRepo := map[string]*Index{}
	for _, x := range idx {
		byRepo[x.Repository.String()] = x
	}
	for _, p := range a.Packages {
		sum, err := p.ChecksumBytes()
		if err != nil {
			return fmt.Errorf("%s-%s: %w", p.Name, p.Version, err)
		}
		if x := byRepo[p.Repository]; x != nil && x.find(p.Name, p.Version, sum) != nil {
			continue
		}
		if cache != nil {
			if _, ok := cache.Lookup(sum); ok {
				continue
			}
		}
		return fmt.Errorf("%s-%s (%s) is neither in %s nor in the cache", p.Name, p.Version, p.Checksum, p.Repository)
	}
	return nil
}

// find returns the index entry with this name, version and checksum.
func (x *Index) find(name, version string, sum []byte) *apk.Package {
	for _, p := range x.Packages {
		if p.Name == name && p.Version == version && slices.Equal(p.Checksum, sum) {
			return p
		}
	}
	return nil
}

// LockItems turns a lock entry into download items. A package no longer
// in its repository's index is still served when the cache holds it
// (the item then carries only what the lock records).
func LockItems(a *lock.Arch, idx []*Index, cache *Cache) ([]Item, error) {
	byRepo := map[string]*Index{}
	for _, x := range idx {
		byRepo[x.Repository.String()] = x
	}
	var items []Item
	for _, p := range a.Packages {
		sum, err := p.ChecksumBytes()
		if err != nil {
			return nil, fmt.Errorf("%s-%s: %w", p.Name, p.Version, err)
		}
		x := byRepo[p.Repository]
		if x != nil {
			if ip := x.find(p.Name, p.Version, sum); ip != nil {
				items = append(items, Item{Repository: x.Repository, Arch: a.Arch, Package: ip})
				continue
			}
		}
		if cache != nil {
			if _, ok := cache.Lookup(sum); ok {
				items = append(items, Item{Arch: a.Arch, Package: &apk.Package{Name: p.Name, Version: p.Version, Checksum: sum, Size: p.Size}})
				continue
			}
		}
		return nil, fmt.Errorf("%s-%s (%s) is neither in %s nor in the cache", p.Name, p.Version, p.Checksum, p.Repository)
	}
	return items, nil
}
