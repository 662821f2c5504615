// Package solver resolves a world (the dependencies a system asks for)
// against repository indexes the way apk-tools 2.14 does for `apk add` on an
// empty root: it picks the same packages and versions, refuses the same
// requests with the same explanation, and lists the result in apk's install
// order (dependencies before their dependents).
//
// The algorithm is apk-tools' src/solver.c: an up- and down-propagating
// deductive solver that never backtracks. Names are resolved one at a time
// in apk's priority order; each choice is final. This package keeps apk's
// data layout where it decides the outcome (provider order, reverse
// dependency order, the order of the work queues), so that ties are broken
// exactly as apk breaks them.
//
// What the solver does with each part of a package's metadata:
//
//   - depends (D:): version constraints (=, <, >, <=, >=, ~, ><checksum) and
//     conflicts (!name) restrict the providers of a name.
//   - provides (p:): a versioned provide (name=1.0) makes the package a
//     provider of that name at that version and excludes every other
//     package providing the name; an unversioned (virtual) provide only
//     satisfies unversioned dependencies and can coexist with other virtual
//     providers. A virtual provider is picked only if it has a provider
//     priority (k:) or its own name is required too; otherwise apk refuses,
//     even for a single candidate, with "NAME (virtual): ... provided by:".
//   - provider_priority (k:) decides between providers whose versions do
//     not.
//   - install_if (i:): the package is installed when every condition is met
//     by the packages already chosen.
//   - replaces (r:) is ignored: apk only consults it when two packages
//     install the same file, which is not the solver's concern.
//   - installed size (I:) 0 marks a package as virtual for pinning: such a
//     package is eligible even from a tagged repository.
//
// Among the eligible providers of a name apk prefers, in order: packages
// still allowed by the constraints seen so far, packages allowed by the
// pinning and preferred by it, the highest version of the requested name,
// then of the package's own name, the highest provider priority, and last
// the earliest repository. The same package (same checksum) in several
// repositories is one package. Packages of a tagged repository (an "@tag
// URL" line in /etc/apk/repositories) are eligible only for world
// dependencies that name the tag (name@tag), for the dependencies of the
// packages chosen for them, and for install_if packages they trigger.
//
// The world is taken as `apk add` builds it: a later dependency on a name
// replaces an earlier one.
package solver

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/version"
)

// Repository is one repository as configured in /etc/apk/repositories.
type Repository struct {
	// Name identifies the repository in messages (its URL, typically).
	Name string
	// Tag is the pinning tag without the "@" ("edge" for "@edge URL"), or
	// empty for an untagged repository.
	Tag string
	// Packages is the repository's index, in index order.
	Packages []*apk.Package
}

// Options adjust the solver.
type Options struct {
	// ForceBrokenWorld is apk's --force-broken-world: world dependencies
	// that cannot be satisfied are dropped and the rest is solved.
	ForceBrokenWorld bool

	// testMode reproduces apk-tools' test build (--test-repo), whose
	// repositories are loaded after the database is opened: reverse
	// dependencies are recorded per package in load order and every name
	// has dequeue priority 0. apk's own test expectations depend on it.
	testMode bool
}

// Install is one package of a solution.
type Install struct {
	Package *apk.Package
	// Repository is the index (into the repositories given to New) of the
	// first repository holding the package, the one apk downloads it from.
	Repository int
	// Tag is the pinning tag apk records for the package and prints after
	// its name ("Installing foo@edge (1.0)"), without the "@"; empty for
	// the default (untagged) repositories.
	Tag string
}

// Solver holds the indexes of a set of repositories, ready to solve worlds
// against them. It is safe for concurrent use.
type Solver struct {
	opts     Options
	names    []*name // in creation order; name.id indexes it
	byName   map[string]*name
	pkgs     []*pkg // unique packages in load order; pkg.id indexes it
	tags     []tagInfo
	tagIndex map[string]int // tag without "@" to its id
	pool     sync.Pool      // *buffers
}

// tagInfo is apk's struct apk_repository_tag.
type tagInfo struct {
	tag     string // "@edge"; empty for the default tag
	allowed uint32 // repositories carrying the tag
}

// name is apk's struct apk_name: a package name or a provided name.
type name struct {
	id         int
	name       string
	providers  []provider
	rdepends   []*name // names with a provider depending on this name
	rinstallIf []*name // names with a provider whose install_if names this
	// priority orders the solver's queue: 0 when all providers carry the
	// name as their own, 1 when mixed, 2 when all providers are virtual.
	priority int
}

// provider is one package offering a name: as its own name or a provides.
type provider struct {
	pkg *pkg
	// version is the provided version; virtual (unversioned) provides have
	// hasVersion false, apk's apk_atom_null.
	version    string
	hasVersion bool
}

// dep is a resolved dependency.
type dep struct {
	name     *name
	op       version.Op
	version  string // "" when none (apk_atom_null)
	conflict bool
	tag      int // repository tag id (world dependencies only)
	src      apk.Dependency
}

// pkg is apk's struct apk_package: one unique package (by checksum).
type pkg struct {
	id        int
	p         *apk.Package
	name      *name
	depends   []dep
	provides  []dep
	installIf []dep
	repos     uint32 // bit i: present in repository i
	// providerPriority is apk's unsigned short provider_priority.
	providerPriority int
}

const (
	maxRepos = 31 // apk: 32 bits, bit 0 is the cache
	maxTags  = 16 // apk: APK_MAX_TAGS
)

// New indexes repos for solving. Packages are identified by checksum, as
// apk does: a package found in several repositories is one package,
// available from each (the first copy's metadata is kept). Packages
// without a checksum are all distinct.
func New(repos []Repository, opts Options) (*Solver, error) {
	if len(repos) > maxRepos {
		return nil, fmt.Errorf("solver: %d repositories, apk supports at most %d", len(repos), maxRepos)
	}
	s := &Solver{
		opts:     opts,
		byName:   make(map[string]*name),
		tagIndex: make(map[string]int),
		tags:     []tagInfo{{}},
	}
	bySum := make(map[string]*pkg)
	for ri, r := range repos {
		tag := 0
		if r.Tag != "" {
			var err error
			if tag, err = s.tagID(r.Tag); err != nil {
				return nil, fmt.Errorf("solver: repository %d (%s): %w", ri, r.Name, err)
			}
		}
		s.tags[tag].allowed |= 1 << ri
		for pi, ap := range r.Packages {
			if ap == nil {
				return nil, fmt.Errorf("solver: repository %d (%s): package %d is nil", ri, r.Name, pi)
			}
			p, err := s.newPkg(ap)
			if err != nil {
				return nil, fmt.Errorf("solver: repository %d (%s): %w", ri, r.Name, err)
			}
			if len(ap.Checksum) > 0 {
				key := string(ap.Checksum)
				if old := bySum[key]; old != nil {
					old.repos |= 1 << ri
					continue
				}
				bySum[key] = p
			}
			p.repos = 1 << ri
			p.id = len(s.pkgs)
			s.pkgs = append(s.pkgs, p)
			p.name.providers = append(p.name.providers, provider{p, ap.Version, true})
			for _, d := range p.provides {
				d.name.providers = append(d.name.providers, provider{p, d.version, d.version != ""})
			}
			if opts.testMode {
				s.addRdepends(p)
			}
		}
	}
	if !opts.testMode {
		s.computeRdepends()
	}
	return s, nil
}

// Solve resolves world against the repositories of a new Solver; see
// Solver.Solve.
func Solve(repos []Repository, world []apk.Dependency) ([]Install, error) {
	s, err := New(repos, Options{})
	if err != nil {
		return nil, err
	}
	return s.Solve(world)
}

// getName returns the name, creating it (apk_db_get_name).
func (s *Solver) getName(n string) *name {
	if nm := s.byName[n]; nm != nil {
		return nm
	}
	nm := &name{id: len(s.names), name: n}
	s.names = append(s.names, nm)
	s.byName[n] = nm
	return nm
}

// tagID returns the id of a repository tag, creating it (apk_db_get_tag_id).
func (s *Solver) tagID(tag string) (int, error) {
	tag = strings.TrimPrefix(tag, "@")
	if id, ok := s.tagIndex[tag]; ok {
		return id, nil
	}
	if len(s.tags) >= maxTags {
		return 0, fmt.Errorf("too many repository tags (apk supports %d): @%s", maxTags-1, tag)
	}
	id := len(s.tags)
	s.tags = append(s.tags, tagInfo{tag: "@" + tag})
	s.tagIndex[tag] = id
	return id, nil
}

// newPkg resolves a package's names in the order apk creates them while
// reading an index entry (P:, then D:, p:, i:, as apk index writes them).
func (s *Solver) newPkg(ap *apk.Package) (*pkg, error) {
	if ap.Name == "" {
		return nil, errors.New("package without a name")
	}
	if ap.Version == "" {
		return nil, fmt.Errorf("package %s has no version", ap.Name)
	}
	p := &pkg{p: ap, name: s.getName(ap.Name), providerPriority: int(uint16(ap.ProviderPriority))}
	var err error
	if p.depends, err = s.deps(ap.Depends); err != nil {
		return nil, fmt.Errorf("%s: depends: %w", ap, err)
	}
	if p.provides, err = s.deps(ap.Provides); err != nil {
		return nil, fmt.Errorf("%s: provides: %w", ap, err)
	}
	if p.installIf, err = s.deps(ap.InstallIf); err != nil {
		return nil, fmt.Errorf("%s: install_if: %w", ap, err)
	}
	return p, nil
}

func (s *Solver) deps(ds []apk.Dependency) ([]dep, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	out := make([]dep, len(ds))
	for i, d := range ds {
		r, err := s.dep(d)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// dep resolves a dependency's name and tag, creating them.
func (s *Solver) dep(d apk.Dependency) (dep, error) {
	return resolveDep(d, s.getName, s.tagID)
}

// resolveDep checks a dependency and resolves its name and tag with the
// given functions. A zero Op with no version is taken as version.Any.
func resolveDep(d apk.Dependency, getName func(string) *name, tagID func(string) (int, error)) (dep, error) {
	if d.Name == "" {
		return dep{}, errors.New("dependency without a name")
	}
	op := d.Op
	if op == 0 && d.Version == "" {
		op = version.Any
	}
	if op != version.Any && d.Version == "" {
		return dep{}, fmt.Errorf("dependency %s: operator without a version", d.Name)
	}
	r := dep{op: op, version: d.Version, conflict: d.Conflict, src: d}
	if op == version.Any {
		r.version = ""
	}
	if d.Tag != "" {
		id, err := tagID(d.Tag)
		if err != nil {
			return dep{}, err
		}
		r.tag = id
	}
	r.name = getName(d.Name)
	return r, nil
}

// addRdepends records p's reverse dependencies as apk does for a package
// added after the database is open (apk_db_pkg_rdepends).
func (s *Solver) addRdepends(p *pkg) {
	add := func(a []*name, n *name) []*name {
		for _, x := range a {
			if x == n {
				return a
			}
		}
		return append(a, n)
	}
	for _, d := range p.depends {
		d.name.rdepends = add(d.name.rdepends, p.name)
	}
	for _, d := range p.installIf {
		d.name.rinstallIf = add(d.name.rinstallIf, p.name)
	}
}

// computeRdepends records reverse dependencies and name priorities as apk
// does when it opens its database (apk_db_name_rdepends), visiting the
// names in the order of apk's name hash table.
func (s *Solver) computeRdepends() {
	touched := make([]uint8, len(s.names))
	var list []*name
	for _, n := range hashOrder(s.names) {
		virtual := 0
		list = list[:0]
		for _, p := range n.providers {
			if p.pkg.name != n {
				virtual++
			}
			for _, d := range p.pkg.depends {
				if touched[d.name.id]&1 == 0 {
					touched[d.name.id] |= 1
					list = append(list, d.name)
					d.name.rdepends = append(d.name.rdepends, n)
				}
			}
			for _, d := range p.pkg.installIf {
				if touched[d.name.id]&2 == 0 {
					touched[d.name.id] |= 2
					list = append(list, d.name)
					d.name.rinstallIf = append(d.name.rinstallIf, n)
				}
			}
		}
		switch {
		case virtual == 0:
			n.priority = 0
		case virtual != len(n.providers):
			n.priority = 1
		default:
			n.priority = 2
		}
		for _, t := range list {
			touched[t.id] = 0
		}
	}
}

// worldDep is a world dependency as the solver uses it.
type worldDep struct {
	dep
	broken bool
}

// prepareWorld resolves the world as `apk add` builds it: a later
// dependency on a name replaces an earlier one (apk_deps_add). World names
// that the
// repositories do not know are created in a private overlay so that the
// Solver itself is not modified.
func (s *Solver) prepareWorld(world []apk.Dependency) (*overlay, []worldDep, error) {
	ov := &overlay{s: s}
	var out []worldDep
	for _, d := range world {
		r, err := ov.dep(d)
		if err != nil {
			return nil, nil, fmt.Errorf("solver: world dependency %q: %w", d.Name, err)
		}
		replaced := false
		for i := range out {
			if out[i].name == r.name {
				out[i].dep = r
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, worldDep{dep: r})
		}
	}
	return ov, out, nil
}

// sortWorld sorts the world as apk_solver_solve does, by name
// (apk_name_cmp_display).
func sortWorld(w []worldDep) {
	sort.SliceStable(w, func(i, j int) bool { return nameLess(w[i].name.name, w[j].name.name) })
}

// nameLess is apk_name_cmp_display: case-insensitive, then bytewise.
func nameLess(a, b string) bool { return apk.CompareNames(a, b) < 0 }

// overlay extends the Solver's names and tags with those only the world
// mentions, without touching the shared Solver.
type overlay struct {
	s     *Solver
	names []*name
	tags  []tagInfo // tags beyond s.tags
}

func (o *overlay) numNames() int { return len(o.s.names) + len(o.names) }

func (o *overlay) tag(id int) tagInfo {
	if id < len(o.s.tags) {
		return o.s.tags[id]
	}
	return o.tags[id-len(o.s.tags)]
}

func (o *overlay) numTags() int { return len(o.s.tags) + len(o.tags) }

func (o *overlay) dep(d apk.Dependency) (dep, error) {
	return resolveDep(d, o.getName, o.tagID)
}

func (o *overlay) getName(n string) *name {
	if nm := o.s.byName[n]; nm != nil {
		return nm
	}
	for _, nm := range o.names {
		if nm.name == n {
			return nm
		}
	}
	nm := &name{id: o.numNames(), name: n}
	o.names = append(o.names, nm)
	return nm
}

func (o *overlay) tagID(tag string) (int, error) {
	tag = "@" + strings.TrimPrefix(tag, "@")
	if id, ok := o.s.tagIndex[tag[1:]]; ok {
		return id, nil
	}
	for i, t := range o.tags {
		if t.tag == tag {
			return len(o.s.tags) + i, nil
		}
	}
	if o.numTags() >= maxTags {
		return 0, fmt.Errorf("too many repository tags (apk supports %d): %s", maxTags-1, tag)
	}
	o.tags = append(o.tags, tagInfo{tag: tag})
	return o.numTags() - 1, nil
}
