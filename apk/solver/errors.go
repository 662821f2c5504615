package solver

import (
	"strings"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/version"
)

// Error is returned by Solve when the world cannot be satisfied. Its
// Problems are what apk-tools prints under "ERROR: unable to select
// packages:", in apk's order; Report renders apk's exact text.
type Error struct {
	// MissingTags lists world dependencies naming a repository tag that no
	// repository carries; apk refuses to solve such a world ("Not
	// committing changes due to missing repository tags"). Problems is
	// empty then.
	MissingTags []apk.Dependency
	// Problems explains the failure. It is empty (apk says "Huh? Error
	// reporter did not find the broken constraints.") only when apk's
	// reporter finds nothing to blame.
	Problems []Problem
}

// ProblemKind says what a Problem is about.
type ProblemKind int

const (
	// NoSuchPackage is a required name that nothing provides:
	// "NAME (no such package)".
	NoSuchPackage ProblemKind = iota
	// AmbiguousVirtual is a required name that only virtual providers
	// offer, none of which can be picked automatically: "NAME (virtual)".
	AmbiguousVirtual
	// PackageProblem is a package the solver chose that breaks something
	// or cannot be used: "NAME-VERSION".
	PackageProblem
)

// Problem is one entry of apk's error report.
type Problem struct {
	Kind ProblemKind
	// Name is the name at fault (NoSuchPackage, AmbiguousVirtual) or the
	// package's name (PackageProblem).
	Name string
	// Package is the package at fault (PackageProblem only).
	Package *apk.Package

	// ProvidedBy lists the providers of a virtual name as apk prints them:
	// a package name when all of that name's packages provide it, else
	// NAME-VERSION.
	ProvidedBy []string
	// RequiredBy lists who requires the missing or virtual name (apk
	// names only the first selected provider of each requiring name, and
	// may find none).
	RequiredBy []Requirer

	// MaskedIn lists the repository tags ("@edge") holding the package
	// when the package is not allowed by the pinning that selected it.
	MaskedIn []string
	// Conflicts lists other selected packages clashing with the package.
	Conflicts []Conflict
	// Breaks lists dependencies the package violates.
	Breaks []Requirer
	// Satisfies lists dependencies the package fulfils (reported only
	// alongside another complaint, to show why it was chosen).
	Satisfies []Requirer
}

// Requirer is a dependency and who holds it.
type Requirer struct {
	// Package holds the dependency; nil for the world.
	Package    *apk.Package
	Dependency apk.Dependency
}

// Conflict is another selected package that clashes with a problem
// package: it has the same name, or it provides a name the problem package
// also provides (Provides, the problem package's provides entry).
type Conflict struct {
	Package  *apk.Package
	Provides *apk.Dependency
}

// Error gives the report as apk prints it, without apk's "ERROR: " prefix
// and the final newline; for missing tags, a one-line summary.
func (e *Error) Error() string {
	if len(e.MissingTags) > 0 {
		var b strings.Builder
		b.WriteString("missing repository tags:")
		for _, d := range e.MissingTags {
			b.WriteString(" " + d.Name + "@" + strings.TrimPrefix(d.Tag, "@"))
		}
		return b.String()
	}
	return strings.TrimPrefix(strings.TrimSuffix(e.Report(), "\n"), "ERROR: ")
}

// Report returns exactly what apk-tools 2.14 writes to its standard error
// for this failure when that is not a terminal (lines wrapped at 50
// columns).
func (e *Error) Report() string {
	var b strings.Builder
	if len(e.MissingTags) > 0 {
		for _, d := range e.MissingTags {
			b.WriteString("WARNING: The repository tag for world dependency '" + d.Name + "@" + strings.TrimPrefix(d.Tag, "@") + "' does not exist\n")
		}
		b.WriteString("ERROR: Not committing changes due to missing repository tags. Use --force-broken-world to override.\n")
		return b.String()
	}
	b.WriteString("ERROR: unable to select packages:\n")
	in := indenter{b: &b, width: 50}
	if len(e.Problems) == 0 {
		in.line("Huh? Error reporter did not find the broken constraints.\n")
	}
	for _, p := range e.Problems {
		switch p.Kind {
		case NoSuchPackage:
			in.line("  " + p.Name + " (no such package):\n")
		case AmbiguousVirtual:
			in.line("  " + p.Name + " (virtual):\n")
			in.group("note:", strings.Fields("please select one of the 'provided by' packages explicitly"), false)
			in.group("provided by:", p.ProvidedBy, false)
		default:
			in.line("  " + p.Package.String() + ":\n")
		}
		in.group("masked in:", p.MaskedIn, false)
		var cs []string
		for _, c := range p.Conflicts {
			s := c.Package.String()
			if c.Provides != nil {
				s += "[" + depString(*c.Provides) + "]"
			}
			cs = append(cs, s)
		}
		in.group("conflicts:", cs, false)
		in.group("breaks:", requirerStrings(p.Breaks), false)
		in.group("satisfies:", requirerStrings(p.Satisfies), false)
		if p.Kind != PackageProblem {
			// apk prints this label even when it finds no requirer.
			in.group("required by:", requirerStrings(p.RequiredBy), true)
		}
	}
	return b.String()
}

func requirerStrings(rs []Requirer) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// String formats the requirer as apk does: "world[DEP]" or
// "NAME-VERSION[DEP]".
func (r Requirer) String() string {
	who := "world"
	if r.Package != nil {
		who = r.Package.String()
	}
	return who + "[" + depString(r.Dependency) + "]"
}

// depString is apk_dep_snprintf without a database: [!]NAME[OP VERSION],
// no repository tag.
func depString(d apk.Dependency) string {
	s := d.Name
	if d.Conflict {
		s = "!" + s
	}
	if d.Version != "" && d.Op != version.Any && d.Op != 0 {
		s += opString(d.Op) + d.Version
	}
	return s
}

// opString is apk_version_op_string.
func opString(op version.Op) string {
	switch op {
	case version.Less:
		return "<"
	case version.Less | version.Equal:
		return "<="
	case version.Equal | version.Fuzzy, version.Fuzzy:
		return "~"
	case version.Equal:
		return "="
	case version.Greater | version.Equal:
		return ">="
	case version.Greater:
		return ">"
	case version.Checksum:
		return "><"
	}
	return "?"
}

// indenter is apk's struct apk_indent and its printing functions
// (src/print.c).
type indenter struct {
	b         *strings.Builder
	x, indent int
	width     int
}

// line is apk_print_indented_line.
func (i *indenter) line(s string) {
	i.b.WriteString(s)
	i.x, i.indent = 0, 0
}

// group prints a labelled group ("    LABEL: item item ..."), as apk's
// label_start, apk_print_indented and label_end do; nothing for no items
// unless always.
func (i *indenter) group(label string, items []string, always bool) {
	if len(items) == 0 && !always {
		return
	}
	s := "    " + label
	i.b.WriteString(s)
	i.x = len(s)
	i.indent = i.x + 1
	for _, it := range items {
		i.print(it)
	}
	if i.x != 0 {
		i.b.WriteString("\n")
		i.x, i.indent = 0, 0
	}
}

// print is apk_print_indented.
func (i *indenter) print(s string) {
	switch {
	case i.x <= i.indent:
		i.b.WriteString(strings.Repeat(" ", i.indent-i.x) + s)
		i.x = i.indent + len(s)
	case i.x+len(s)+1 >= i.width:
		i.b.WriteString("\n" + strings.Repeat(" ", i.indent) + s)
		i.x = i.indent + len(s)
	default:
		i.b.WriteString(" " + s)
		i.x += 1 + len(s)
	}
}

// The state bits of apk's error analysis (commit.c).
const (
	statePresent     = 0x80000000
	stateMissing     = 0x40000000
	stateVirtualOnly = 0x20000000
	stateInstallIf   = 0x10000000
	stateCountMask   = 0x0000ffff
)

// reporter is apk_solver_print_errors' struct print_state plus the
// per-package and per-name fields it borrows.
type reporter struct {
	st      *state
	world   []dep
	marked  []bool
	pkgInt  []uint32
	nameInt []uint32
	pkgGen  []int
	gen     int
	probs   []Problem
	cur     *Problem
}

func (st *state) report(world []worldDep) *Error {
	r := &reporter{
		st:      st,
		marked:  make([]bool, len(st.s.pkgs)),
		pkgInt:  make([]uint32, len(st.s.pkgs)),
		nameInt: make([]uint32, st.ov.numNames()),
		pkgGen:  make([]int, len(st.s.pkgs)),
	}
	for i := range world {
		r.world = append(r.world, world[i].dep)
	}
	for _, pk := range st.changes {
		r.marked[pk.id] = true
	}
	r.discoverDeps(r.world)
	r.analyzeDeps(r.world)
	for _, pk := range st.changes {
		r.analyzePackage(pk, st.getTag(st.ps[pk.id].pinningAllowed, pk.repos))
		r.analyzeDeps(pk.depends)
	}
	return &Error{Problems: r.probs}
}

func (r *reporter) nextGen() int {
	r.gen++
	return r.gen
}

// flush keeps the current problem if apk printed anything for it: a
// missing name always, a package only when something is wrong with it.
func (r *reporter) flush() {
	if r.cur == nil {
		return
	}
	p := r.cur
	r.cur = nil
	if p.Kind != PackageProblem || len(p.MaskedIn)+len(p.Conflicts)+len(p.Breaks)+len(p.Satisfies) > 0 {
		r.probs = append(r.probs, *p)
	}
}

func (r *reporter) discoverReverseIif(n *name) {
	for _, n0 := range n.rinstallIf {
		for _, p := range n0.providers {
			pk := p.pkg
			if !r.marked[pk.id] || len(pk.installIf) == 0 {
				continue
			}
			ok := true
			for i := range pk.installIf {
				d := &pk.installIf[i]
				if d.conflict == (r.nameInt[d.name.id]&(statePresent|stateInstallIf) != 0) {
					ok = false
					break
				}
			}
			if ok {
				r.discoverName(pk.name, stateInstallIf)
				for i := range pk.provides {
					r.discoverName(pk.provides[i].name, stateInstallIf)
				}
			}
		}
	}
}

func isNameConcrete(pk *pkg, n *name) bool {
	if pk.name == n {
		return true
	}
	for i := range pk.provides {
		d := &pk.provides[i]
		if d.name != n || d.version == "" {
			continue
		}
		return true
	}
	return false
}

func (r *reporter) discoverName(n *name, pkgState uint32) {
	for _, p := range n.providers {
		pk := p.pkg
		state := pkgState
		if !r.marked[pk.id] {
			continue
		}
		if (state == statePresent || state == stateInstallIf) && pk.providerPriority == 0 && !isNameConcrete(pk, n) {
			state = stateVirtualOnly
		}
		if r.pkgInt[pk.id]&state != 0 {
			continue
		}
		r.pkgInt[pk.id] |= state
		r.nameInt[pk.name.id] |= state
		for i := range pk.provides {
			d := &pk.provides[i]
			ds := state
			if ds == stateInstallIf && d.version == "" {
				ds = stateVirtualOnly
			}
			r.nameInt[d.name.id] |= ds
		}
		r.discoverDeps(pk.depends)
		if state == statePresent || state == stateInstallIf {
			r.discoverReverseIif(pk.name)
			for i := range pk.provides {
				r.discoverReverseIif(pk.provides[i].name)
			}
		}
	}
}

func (r *reporter) discoverDeps(deps []dep) {
	for i := range deps {
		if deps[i].conflict {
			continue
		}
		r.discoverName(deps[i].name, statePresent)
	}
}

func (r *reporter) analyzeDeps(deps []dep) {
	for i := range deps {
		d := &deps[i]
		if d.conflict {
			continue
		}
		if r.nameInt[d.name.id]&(stateInstallIf|statePresent|stateMissing) != 0 {
			continue
		}
		r.nameInt[d.name.id] |= stateMissing
		r.analyzeMissingName(d.name)
	}
}

func (r *reporter) analyzeMissingName(n *name) {
	p := &Problem{Name: n.name, Kind: NoSuchPackage}
	r.cur = p
	if len(n.providers) > 0 {
		p.Kind = AmbiguousVirtual
		for _, p0 := range n.providers {
			r.nameInt[p0.pkg.name.id]++
		}
		for _, p0 := range n.providers {
			n0 := p0.pkg.name
			refs := int(r.nameInt[n0.id] & stateCountMask)
			if refs == len(n0.providers) {
				// name only
				p.ProvidedBy = append(p.ProvidedBy, n0.name)
				r.nameInt[n0.id] &^= stateCountMask
			} else if refs > 0 {
				// individual package
				p.ProvidedBy = append(p.ProvidedBy, p0.pkg.p.String())
				r.nameInt[n0.id]--
			}
		}
	}
	for i := range r.world {
		d := &r.world[i]
		if d.name != n || d.conflict {
			continue
		}
		p.RequiredBy = append(p.RequiredBy, Requirer{Dependency: d.src})
	}
	gen := r.nextGen()
	for _, n0 := range n.rdepends {
		for _, p0 := range n0.providers {
			pk := p0.pkg
			if !r.marked[pk.id] || r.pkgGen[pk.id] == gen {
				continue
			}
			r.pkgGen[pk.id] = gen
			for i := range pk.depends {
				d := &pk.depends[i]
				if d.name != n || d.conflict {
					continue
				}
				p.RequiredBy = append(p.RequiredBy, Requirer{Package: pk.p, Dependency: d.src})
				break
			}
			// apk stops at the first such provider (commit.c tests the
			// loop cursor against NULL, which it never is).
			break
		}
	}
	r.flush()
}

// Results of apk_dep_analyze.
const (
	depIrrelevant = 1
	depSatisfies  = 2
	depConflicts  = 4
)

// depAnalyze is apk_dep_analyze.
func depAnalyze(d *dep, pk *pkg) int {
	if d.name == pk.name {
		if depIsProvided(d, provider{pk, pk.p.Version, true}) {
			return depSatisfies
		}
		return depConflicts
	}
	for i := range pk.provides {
		pv := &pk.provides[i]
		if pv.name != d.name {
			continue
		}
		if depIsProvided(d, provider{pk, pv.version, pv.version != ""}) {
			return depSatisfies
		}
		return depConflicts
	}
	return depIrrelevant
}

func (r *reporter) analyzePackage(pk *pkg, tag int) {
	p := &Problem{Kind: PackageProblem, Name: pk.name.name, Package: pk.p}
	r.cur = p

	// print_pinning_errors: every package is in an available repository.
	st := r.st
	if pk.repos&st.pinningMaskRepos(1|1<<tag) == 0 {
		for i := 0; i < st.ov.numTags(); i++ {
			if t := st.ov.tag(i); pk.repos&t.allowed != 0 {
				p.MaskedIn = append(p.MaskedIn, t.tag)
			}
		}
	}

	// print_conflicts
	for _, p0 := range pk.name.providers {
		if p0.pkg == pk || !r.marked[p0.pkg.id] {
			continue
		}
		p.Conflicts = append(p.Conflicts, Conflict{Package: p0.pkg.p})
	}
	for i := range pk.provides {
		d := &pk.provides[i]
		once := true
		for _, p0 := range d.name.providers {
			if !r.marked[p0.pkg.id] {
				continue
			}
			if d.version == "" && !p0.hasVersion {
				continue
			}
			if once && p0.pkg == pk && p0.hasVersion == (d.version != "") && p0.version == d.version {
				once = false
				continue
			}
			src := d.src
			p.Conflicts = append(p.Conflicts, Conflict{Package: p0.pkg.p, Provides: &src})
		}
	}

	p.Breaks = r.deps(pk, depConflicts)
	if len(p.MaskedIn)+len(p.Conflicts)+len(p.Breaks) > 0 {
		p.Satisfies = r.deps(pk, depSatisfies)
	}
	r.flush()
}

// deps is print_deps: the world's and the selected packages' dependencies
// that pk matches as match says.
func (r *reporter) deps(pk *pkg, match int) []Requirer {
	var out []Requirer
	for i := range r.world {
		d := &r.world[i]
		if depAnalyze(d, pk)&match != 0 {
			out = append(out, Requirer{Dependency: d.src})
		}
	}
	gen := r.nextGen()
	visit := func(rdeps []*name) {
		for _, n0 := range rdeps {
			for _, p0 := range n0.providers {
				pk0 := p0.pkg
				if !r.marked[pk0.id] || r.pkgGen[pk0.id] >= gen {
					continue
				}
				r.pkgGen[pk0.id] = gen
				for i := range pk0.depends {
					d := &pk0.depends[i]
					if depAnalyze(d, pk)&match != 0 {
						out = append(out, Requirer{Package: pk0.p, Dependency: d.src})
					}
				}
			}
		}
	}
	visit(pk.name.rdepends)
	for i := range pk.provides {
		visit(pk.provides[i].name.rdepends)
	}
	return out
}
