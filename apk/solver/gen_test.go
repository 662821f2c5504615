package solver

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand"
	"strings"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/version"
)

// genCase is a small random solver problem: repositories and the
// arguments of an `apk add`.
type genCase struct {
	repos []Repository
	harsh bool
	world []string // apk add arguments
}

var (
	genNames    = []string{"a", "b", "c", "d", "e", "f", "g", "h", "lib-x", "py3-y", "Zed", "k"}
	genVirtuals = []string{"v", "w", "so:libx.so.1", "so:liby.so.2", "cmd:tool"}
	genVersions = []string{"1", "1.0", "1.1", "1.2_rc1", "2", "2.0-r1", "2.0-r2", "3"}
	genOps      = []string{"=", "<", ">", "<=", ">=", "~"}
	genTags     = []string{"edge", "test"}
)

// genRandomCase builds a case exercising versions and constraints,
// conflicts, provides (versioned and virtual) with priorities, install_if,
// replaces, installed size 0, tags and several repositories. A third of the
// cases are harsh (many constraints, most requests fail), a third mild, a
// third acyclic trees, so that many succeed with several packages to order.
func genRandomCase(rng *rand.Rand) genCase {
	profile := rng.Intn(3)
	harsh := profile == 0
	// Tree cases depend only on later names: deep, acyclic, satisfiable.
	tree := profile == 2
	pct := func(harshP, mildP int) bool {
		if harsh {
			return rng.Intn(100) < harshP
		}
		if tree {
			mildP /= 3
		}
		return rng.Intn(100) < mildP
	}
	nNames := 3 + rng.Intn(len(genNames)-2)
	names := append([]string(nil), genNames...)
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	names = names[:nNames]

	randDep := func(allowConflict bool, from int) apk.Dependency {
		pool := names
		if tree && from+1 < len(names) {
			pool = names[from+1:]
		}
		if pct(40, 15) {
			pool = genVirtuals
		}
		d := apk.Dependency{Name: pool[rng.Intn(len(pool))], Op: version.Any}
		if pct(40, 15) {
			d.Op = opFromString(genOps[rng.Intn(len(genOps))])
			d.Version = genVersions[rng.Intn(len(genVersions))]
		}
		if allowConflict && pct(10, 4) {
			d.Conflict = true
		}
		return d
	}

	nRepos := 1 + rng.Intn(2)
	if rng.Intn(8) == 0 {
		nRepos = 3
	}
	c := genCase{harsh: harsh}
	var tagged []string
	for r := 0; r < nRepos; r++ {
		repo := Repository{Name: fmt.Sprintf("r%d", r)}
		if r > 0 && rng.Intn(2) == 0 {
			repo.Tag = genTags[rng.Intn(len(genTags))]
			tagged = append(tagged, repo.Tag)
		}
		c.repos = append(c.repos, repo)
	}
	for ni, n := range names {
		for r := range c.repos {
			if r > 0 && rng.Intn(2) == 0 {
				continue
			}
			nv := 1 + rng.Intn(2)
			for v := 0; v < nv; v++ {
				// Copy a package of an earlier repository (the same
				// package, by checksum) now and then.
				if r > 0 && rng.Intn(4) == 0 {
					if prev := findPkg(c.repos[:r], n); prev != nil {
						c.repos[r].Packages = append(c.repos[r].Packages, prev)
						continue
					}
				}
				p := &apk.Package{
					Name:          n,
					Version:       genVersions[rng.Intn(len(genVersions))],
					Arch:          "x86_64",
					Size:          1,
					InstalledSize: 1 + int64(rng.Intn(100)),
					Checksum:      make([]byte, 20),
				}
				rng.Read(p.Checksum)
				if rng.Intn(10) == 0 {
					p.InstalledSize = 0
				}
				for i, nd := 0, rng.Intn(4)+b2i(tree); i < nd; i++ {
					d := randDep(true, ni)
					if d.Name == n {
						continue
					}
					p.Depends = append(p.Depends, d)
				}
				np := rng.Intn(2)
				if harsh {
					np = rng.Intn(3)
				}
				for i := 0; i < np; i++ {
					pool := genVirtuals
					if pct(25, 10) {
						pool = names
					}
					d := apk.Dependency{Name: pool[rng.Intn(len(pool))], Op: version.Any}
					if pct(50, 70) {
						d.Op = version.Equal
						d.Version = genVersions[rng.Intn(len(genVersions))]
					}
					p.Provides = append(p.Provides, d)
				}
				if rng.Intn(5) == 0 {
					p.ProviderPriority = 1 + rng.Intn(3)
					p.HasProviderPriority = true
				}
				if rng.Intn(6) == 0 {
					for i, nc := 0, 1+rng.Intn(2); i < nc; i++ {
						p.InstallIf = append(p.InstallIf, randDep(harsh && i > 0, ni))
					}
				}
				if rng.Intn(10) == 0 {
					p.Replaces = append(p.Replaces, apk.Dependency{Name: names[rng.Intn(len(names))], Op: version.Any})
				}
				c.repos[r].Packages = append(c.repos[r].Packages, p)
			}
		}
	}
	if !harsh {
		// Mild cases depend only on names something provides.
		provided := map[string]bool{}
		for _, r := range c.repos {
			for _, p := range r.Packages {
				provided[p.Name] = true
				for _, d := range p.Provides {
					provided[d.Name] = true
				}
			}
		}
		for _, r := range c.repos {
			for _, p := range r.Packages {
				var keep []apk.Dependency
				for _, d := range p.Depends {
					if provided[d.Name] || d.Conflict {
						keep = append(keep, d)
					}
				}
				p.Depends = keep
			}
		}
	}
	for r := range c.repos {
		rng.Shuffle(len(c.repos[r].Packages), func(i, j int) {
			ps := c.repos[r].Packages
			ps[i], ps[j] = ps[j], ps[i]
		})
	}

	nWorld := 1 + rng.Intn(3)
	for i := 0; i < nWorld; i++ {
		var s string
		switch {
		case pct(5, 1):
			s = "nonexistent"
		case pct(20, 10):
			s = genVirtuals[rng.Intn(len(genVirtuals))]
		default:
			s = names[rng.Intn(len(names))]
		}
		if len(tagged) > 0 && rng.Intn(3) == 0 {
			s += "@" + tagged[rng.Intn(len(tagged))]
		} else if pct(3, 1) {
			s += "@missing"
		}
		if pct(20, 8) {
			s += genOps[rng.Intn(len(genOps))] + genVersions[rng.Intn(len(genVersions))]
		}
		if pct(7, 3) {
			s = "!" + s
		}
		if rng.Intn(40) == 0 {
			// a package by checksum, as apk add FILE.apk requests it
			r := c.repos[0]
			p := r.Packages[rng.Intn(len(r.Packages))]
			switch rng.Intn(4) {
			case 0:
				s = p.Name + "><X1" + hex.EncodeToString(p.Checksum)
			case 1:
				s = p.Name + "><" + hex.EncodeToString(p.Checksum) // read as MD5
			default:
				s = p.Name + "><Q1" + base64.StdEncoding.EncodeToString(p.Checksum)
			}
		}
		c.world = append(c.world, s)
	}
	return c
}

func findPkg(repos []Repository, n string) *apk.Package {
	for _, r := range repos {
		for _, p := range r.Packages {
			if p.Name == n {
				return p
			}
		}
	}
	return nil
}

func opFromString(s string) version.Op {
	switch s {
	case "=":
		return version.Equal
	case "<":
		return version.Less
	case ">":
		return version.Greater
	case "<=":
		return version.Less | version.Equal
	case ">=":
		return version.Greater | version.Equal
	case "~":
		return version.Equal | version.Fuzzy
	}
	panic("bad op " + s)
}

// parseWorldDep parses an `apk add` argument. apk.ParseDependency takes
// only Q1/Q2 checksums (NAME><Q1...); apk-tools also reads X1 (hex SHA-1)
// and 32 hex digits (MD5), which the generator uses too.
func parseWorldDep(w string) (apk.Dependency, error) {
	d, err := apk.ParseDependency(w)
	if n, sum, ok := strings.Cut(w, "><"); err != nil && ok && !strings.ContainsAny(n, "<>=~!@") {
		return apk.Dependency{Name: n, Op: version.Checksum, Version: sum}, nil
	}
	return d, err
}
