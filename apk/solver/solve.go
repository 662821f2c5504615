package solver

import (
	"github.com/alpinist/alpinist/apk/version"
)

// This file is apk-tools 2.14's src/solver.c in Go, restricted to what
// `apk add` on an empty root needs (no installed packages, no solver flags
// such as --upgrade or --latest). Function names follow solver.c so that
// the two can be read side by side.

// nameState is apk's struct apk_solver_name_state.
type nameState struct {
	// chosen is the provider the name is locked to: 1 + its index in
	// name.providers, 0 for none (apk's provider_none). An index keeps
	// this state free of pointers, which the garbage collector would
	// otherwise scan.
	chosen int32

	dirty      link
	unresolved link

	requirers     int
	mergeDepends  int
	mergeProvides int
	maxDepChain   int

	seen               bool
	locked             bool
	inChangeset        bool
	reevaluateDeps     bool
	reevaluateIif      bool
	hasIif             bool
	noIif              bool
	hasOptions         bool
	reverseDepsDone    bool
	hasVirtualProvides bool
	// flagsSet is apk's name->solver_flags_set: the name was given to
	// `apk add` (apk_solver_set_name_flags).
	flagsSet bool
}

// pkgState is apk's struct apk_solver_package_state.
type pkgState struct {
	conflicts        int
	maxDepChain      int
	pinningAllowed   uint32
	pinningPreferred uint32

	seen         bool
	selectable   bool
	tagOK        bool
	tagPreferred bool
	depsUsed     bool
	depsMerged   bool
	inChangeset  bool
	iifTriggered bool
	iifFailed    bool
	err          bool
}

// link is a node of an intrusive doubly linked list of names, as apk's
// struct list_head. Index -1 is the list head.
type link struct {
	prev, next int32
	in         bool
}

// nameList is a list of names threaded through one link of nameState.
type nameList struct {
	head link
	get  func(id int32) *link
}

func (l *nameList) node(id int32) *link {
	if id < 0 {
		return &l.head
	}
	return l.get(id)
}

func (l *nameList) init() { l.head = link{prev: -1, next: -1} }

func (l *nameList) empty() bool { return l.head.next == -1 }

// insert adds id after the node at, as apk's __list_add.
func (l *nameList) insertAfter(id, at int32) {
	n := l.get(id)
	a := l.node(at)
	next := a.next
	n.prev, n.next, n.in = at, next, true
	a.next = id
	l.node(next).prev = id
}

// addHead is apk's list_add.
func (l *nameList) addHead(id int32) { l.insertAfter(id, -1) }

// addTail is apk's list_add_tail.
func (l *nameList) addTail(id int32) { l.insertAfter(id, l.head.prev) }

// del is apk's list_del.
func (l *nameList) del(id int32) {
	n := l.get(id)
	l.node(n.prev).next = n.next
	l.node(n.next).prev = n.prev
	n.prev, n.next, n.in = 0, 0, false
}

// popHead is apk's list_pop.
func (l *nameList) popHead() int32 {
	id := l.head.next
	l.del(id)
	return id
}

// state is apk's struct apk_solver_state plus the per-solve parts of names
// and packages, which apk keeps inside them.
type state struct {
	s  *Solver
	ov *overlay
	ns []nameState // by name id: the Solver's names, then the overlay's
	ps []pkgState

	dirty      nameList
	unresolved nameList

	errors         int
	pinningInherit uint32
	defaultRepos   uint32

	changes []*pkg
}

// buffers are the per-solve arrays, reused through Solver.pool: solving
// against a large index would otherwise allocate megabytes each time.
type buffers struct {
	ns []nameState
	ps []pkgState
}

func newState(s *Solver, ov *overlay) *state {
	st := &state{s: s, ov: ov}
	b, _ := s.pool.Get().(*buffers)
	if b == nil {
		b = &buffers{}
	}
	nn := ov.numNames()
	if cap(b.ns) < nn {
		b.ns = make([]nameState, nn)
	}
	if cap(b.ps) < len(s.pkgs) {
		b.ps = make([]pkgState, len(s.pkgs))
	}
	st.ns, st.ps = b.ns[:nn], b.ps[:len(s.pkgs)]
	return st
}

// release returns the state's arrays for reuse; st is unusable after.
func (st *state) release() {
	st.s.pool.Put(&buffers{st.ns, st.ps})
	st.ns, st.ps = nil, nil
}

// name returns the name with the given id.
func (st *state) name(id int32) *name {
	if int(id) < len(st.s.names) {
		return st.s.names[id]
	}
	return st.ov.names[int(id)-len(st.s.names)]
}

// reset clears the per-solve state (apk's free_name and free_package).
func (st *state) reset() {
	clear(st.ns)
	clear(st.ps)
	st.dirty = nameList{get: func(id int32) *link { return &st.ns[id].dirty }}
	st.unresolved = nameList{get: func(id int32) *link { return &st.ns[id].unresolved }}
	st.dirty.init()
	st.unresolved.init()
	st.errors = 0
	st.pinningInherit = 0
	st.defaultRepos = st.pinningMaskRepos(1)
	st.changes = st.changes[:0]
}

// pinningMaskRepos is apk_db_get_pinning_mask_repos.
func (st *state) pinningMaskRepos(mask uint32) uint32 {
	var repos uint32
	for i := 0; i < st.ov.numTags() && mask != 0; i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		mask &^= 1 << i
		repos |= st.ov.tag(i).allowed
	}
	return repos
}

// getTag is get_tag: the first tag of the pinning mask carrying one of the
// package's repositories.
func (st *state) getTag(mask, repos uint32) int {
	for i := 0; i < st.ov.numTags(); i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		if st.ov.tag(i).allowed&repos != 0 {
			return i
		}
	}
	return 0
}

var providerNone = provider{}

// chosen is the provider n is locked to (providerNone if none).
func (st *state) chosen(n *name) provider {
	if i := st.ns[n.id].chosen; i > 0 {
		return n.providers[i-1]
	}
	return providerNone
}

// depIsProvided is apk_dep_is_provided.
func depIsProvided(d *dep, p provider) bool {
	if p.pkg == nil {
		return d.conflict
	}
	switch d.op {
	case version.Checksum:
		return checksumMatches(d.version, p.pkg.p.Checksum)
	case version.Any:
		return !d.conflict
	default:
		if !p.hasVersion {
			return d.conflict
		}
		if version.Match(p.version, d.op, d.version) {
			return !d.conflict
		}
		return d.conflict
	}
}

func (st *state) markError(p *pkg) {
	if p == nil || st.ps[p.id].err {
		return
	}
	st.ps[p.id].err = true
	st.errors++
}

func (st *state) queueDirty(n *name) {
	ns := &st.ns[n.id]
	if ns.dirty.in || ns.locked || (ns.requirers == 0 && !ns.reevaluateIif) {
		return
	}
	st.dirty.addTail(int32(n.id))
}

func (st *state) queueUnresolved(n *name) {
	ns := &st.ns[n.id]
	if ns.locked {
		return
	}
	want := ns.requirers > 0 || ns.hasIif
	if want && !ns.unresolved.in {
		st.unresolved.addHead(int32(n.id))
	} else if !want && ns.unresolved.in {
		st.unresolved.del(int32(n.id))
	}
}

func (st *state) reevaluateReverseDeps(n *name) {
	for _, n0 := range n.rdepends {
		ns0 := &st.ns[n0.id]
		if !ns0.seen {
			continue
		}
		ns0.reevaluateDeps = true
		st.queueDirty(n0)
	}
}

func (st *state) reevaluateReverseInstallif(n *name) {
	for _, n0 := range n.rinstallIf {
		ns0 := &st.ns[n0.id]
		if !ns0.seen || ns0.noIif {
			continue
		}
		ns0.reevaluateIif = true
		st.queueDirty(n0)
	}
}

func (st *state) reevaluateReverseInstallifPkg(p *pkg) {
	st.reevaluateReverseInstallif(p.name)
	for i := range p.provides {
		st.reevaluateReverseInstallif(p.provides[i].name)
	}
}

func (st *state) disqualifyPackage(p *pkg) {
	st.ps[p.id].selectable = false
	st.reevaluateReverseDeps(p.name)
	for i := range p.provides {
		st.reevaluateReverseDeps(p.provides[i].name)
	}
	st.reevaluateReverseInstallifPkg(p)
}

func (st *state) dependencySatisfiable(d *dep) bool {
	ns := &st.ns[d.name.id]
	if ns.locked {
		return depIsProvided(d, st.chosen(d.name))
	}
	if ns.requirers == 0 && depIsProvided(d, providerNone) {
		return true
	}
	for _, p := range d.name.providers {
		if st.ps[p.pkg.id].selectable && depIsProvided(d, p) {
			return true
		}
	}
	return false
}

func (st *state) discoverName(n *name) {
	ns := &st.ns[n.id]
	if ns.seen {
		return
	}
	ns.seen = true
	ns.noIif = true
	for _, p := range n.providers {
		pk := p.pkg
		ps := &st.ps[pk.id]
		if !ps.seen {
			ps.seen = true
			ps.pinningAllowed = 1
			ps.pinningPreferred = 1
			// Every package comes from an available repository.
			ps.selectable = true
			ps.iifFailed = len(pk.installIf) == 0
			ps.tagPreferred = pk.p.InstalledSize == 0 || pk.repos&st.defaultRepos != 0
			ps.tagOK = ps.tagPreferred
			for i := range pk.depends {
				dn := pk.depends[i].name
				st.discoverName(dn)
				ps.maxDepChain = max(ps.maxDepChain, st.ns[dn.id].maxDepChain+1)
			}
		}
		ns.noIif = ns.noIif && ps.iifFailed
		ns.maxDepChain = max(ns.maxDepChain, ps.maxDepChain)
	}
	for _, p := range n.providers {
		pk := p.pkg
		for _, n0 := range pk.name.rinstallIf {
			st.discoverName(n0)
		}
		for i := range pk.provides {
			dn := pk.provides[i].name
			if st.ns[dn.id].seen {
				continue
			}
			for _, n0 := range dn.rinstallIf {
				st.discoverName(n0)
			}
		}
	}
}

func (st *state) nameRequirersChanged(n *name) {
	st.queueUnresolved(n)
	st.reevaluateReverseInstallif(n)
	st.queueDirty(n)
}

func (st *state) inheritPinningAndFlags(p, pp *pkg) {
	ps := &st.ps[p.id]
	if pp != nil {
		ps.pinningAllowed |= st.ps[pp.id].pinningAllowed
	} else {
		// a world dependency
		ps.pinningAllowed |= st.pinningInherit
		// also prefer main pinnings
		ps.pinningPreferred = st.pinningInherit
		ps.tagPreferred = p.repos&st.pinningMaskRepos(ps.pinningPreferred) != 0
	}
	if p.repos&st.pinningMaskRepos(ps.pinningAllowed) != 0 {
		ps.tagOK = true
	}
}

func (st *state) applyConstraint(pp *pkg, d *dep) {
	n := d.name
	ns := &st.ns[n.id]
	if !d.conflict {
		ns.requirers++
		if ns.requirers == 1 {
			st.nameRequirersChanged(n)
		}
	}
	for _, p0 := range n.providers {
		pk0 := p0.pkg
		ps0 := &st.ps[pk0.id]
		provided := depIsProvided(d, p0)
		if !provided {
			ps0.conflicts++
		}
		if ps0.selectable && ps0.conflicts > 0 {
			st.disqualifyPackage(pk0)
		}
		if provided {
			st.inheritPinningAndFlags(pk0, pp)
		}
	}
}

func (st *state) excludeNonProviders(n, mustProvide *name, skipVirtuals bool) {
	if n == mustProvide {
		return
	}
next:
	for _, p := range n.providers {
		if p.pkg.name == mustProvide || !st.ps[p.pkg.id].selectable || (skipVirtuals && !p.hasVersion) {
			continue
		}
		for i := range p.pkg.provides {
			d := &p.pkg.provides[i]
			if d.name == mustProvide || (skipVirtuals && d.version == "") {
				continue next
			}
		}
		st.disqualifyPackage(p.pkg)
	}
}

func mergeIndex(index *int, numOptions int) bool {
	if *index != numOptions {
		return false
	}
	*index = numOptions + 1
	return true
}

func mergeIndexComplete(index *int, numOptions int) bool {
	ret := *index == numOptions
	*index = 0
	return ret
}

func (st *state) reconsiderName(n *name) {
	ns := &st.ns[n.id]
	reevaluateDeps := ns.reevaluateDeps
	reevaluateIif := ns.reevaluateIif
	ns.reevaluateDeps = false
	ns.reevaluateIif = false

	var firstCandidate *pkg
	numOptions, numTagNotOK := 0, 0
	hasIif, noIif := false, true

	// propagate down by merging common dependencies and applying new
	// constraints
	for _, p := range n.providers {
		// check if this pkg's dependencies have become unsatisfiable
		pk := p.pkg
		ps := &st.ps[pk.id]
		ps.depsMerged = false
		if reevaluateDeps {
			if !ps.selectable {
				continue
			}
			for i := range pk.depends {
				if !st.dependencySatisfiable(&pk.depends[i]) {
					st.disqualifyPackage(pk)
					break
				}
			}
		}
		if !ps.selectable {
			continue
		}

		if reevaluateIif && !ps.iifTriggered && !ps.iifFailed {
			ps.iifTriggered = true
			ps.iifFailed = false
			for i := range pk.installIf {
				d := &pk.installIf[i]
				dns := &st.ns[d.name.id]
				if !dns.locked {
					ps.iifTriggered = false
					ps.iifFailed = false
					break
				}
				if !depIsProvided(d, st.chosen(d.name)) {
					ps.iifTriggered = false
					ps.iifFailed = true
					break
				}
			}
		}
		if reevaluateIif && ps.iifTriggered {
			for i := range pk.installIf {
				st.inheritPinningAndFlags(pk, st.chosen(pk.installIf[i].name).pkg)
			}
		}
		hasIif = hasIif || ps.iifTriggered
		noIif = noIif && ps.iifFailed

		if ns.requirers == 0 {
			continue
		}

		// merge common dependencies
		ps.depsMerged = true
		if firstCandidate == nil {
			firstCandidate = pk
		}
		for i := range pk.depends {
			d := &pk.depends[i]
			if !d.conflict {
				mergeIndex(&st.ns[d.name.id].mergeDepends, numOptions)
			}
		}
		if pns := &st.ns[pk.name.id]; mergeIndex(&pns.mergeProvides, numOptions) {
			pns.hasVirtualProvides = pns.hasVirtualProvides || !p.hasVersion
		}
		for i := range pk.provides {
			d := &pk.provides[i]
			if dns := &st.ns[d.name.id]; mergeIndex(&dns.mergeProvides, numOptions) {
				dns.hasVirtualProvides = dns.hasVirtualProvides || d.version == ""
			}
		}
		if !ps.tagOK {
			numTagNotOK++
		}
		numOptions++
	}
	ns.hasOptions = numOptions > 1 || numTagNotOK > 0
	ns.hasIif = hasIif
	ns.noIif = noIif
	st.queueUnresolved(n)

	if firstCandidate != nil {
		pk := firstCandidate
		for _, p := range n.providers {
			st.ps[p.pkg.id].depsUsed = st.ps[p.pkg.id].depsMerged
		}

		// propagate down common dependencies
		if numOptions == 1 {
			for i := range pk.depends {
				d := &pk.depends[i]
				if mergeIndexComplete(&st.ns[d.name.id].mergeDepends, numOptions) {
					st.applyConstraint(pk, d)
				}
			}
		} else {
			for i := range pk.depends {
				n0 := pk.depends[i].name
				ns0 := &st.ns[n0.id]
				if mergeIndexComplete(&ns0.mergeDepends, numOptions) && ns0.requirers == 0 {
					// common dependency name with all
					ns0.requirers++
					st.nameRequirersChanged(n0)
					for _, p := range n0.providers {
						st.inheritPinningAndFlags(p.pkg, pk)
					}
				}
			}
		}

		// provides transitivity
		if pns := &st.ns[pk.name.id]; mergeIndexComplete(&pns.mergeProvides, numOptions) {
			st.excludeNonProviders(pk.name, n, pns.hasVirtualProvides)
		}
		for i := range pk.provides {
			dn := pk.provides[i].name
			if dns := &st.ns[dn.id]; mergeIndexComplete(&dns.mergeProvides, numOptions) {
				st.excludeNonProviders(dn, n, dns.hasVirtualProvides)
			}
		}

		st.ns[pk.name.id].hasVirtualProvides = false
		for i := range pk.provides {
			st.ns[pk.provides[i].name.id].hasVirtualProvides = false
		}
	}

	ns.reverseDepsDone = true
	for _, n0 := range n.rdepends {
		if ns0 := &st.ns[n0.id]; ns0.seen && !ns0.locked {
			ns.reverseDepsDone = false
			break
		}
	}
}

// compareVersions is apk_version_compare_blob's verdict as compare_providers
// uses it: Less, Greater, or 0 when equal or not comparable (a virtual
// provide has no version).
func compareVersions(a provider, b provider) int {
	if !a.hasVersion || !b.hasVersion {
		return 0
	}
	switch version.Compare(a.version, b.version) {
	case version.Less:
		return -1
	case version.Greater:
		return 1
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (st *state) compareProviders(pA, pB provider) int {
	a, b := pA.pkg, pB.pkg
	// Prefer existing package
	if a == nil || b == nil {
		return b2i(a != nil) - b2i(b != nil)
	}
	sa, sb := &st.ps[a.id], &st.ps[b.id]
	// Prefer without errors
	if r := b2i(sa.selectable) - b2i(sb.selectable); r != 0 {
		return r
	}
	// Prefer those that were in last dependency merging group
	if r := b2i(sa.depsUsed) - b2i(sb.depsUsed); r != 0 {
		return r
	}
	if r := sb.conflicts - sa.conflicts; r != 0 {
		return r
	}
	// Prefer allowed pinning
	if r := b2i(sa.tagOK) - b2i(sb.tagOK); r != 0 {
		return r
	}
	// Prefer preferred pinning
	if r := b2i(sa.tagPreferred) - b2i(sb.tagPreferred); r != 0 {
		return r
	}
	// Select latest by requested name
	if r := compareVersions(pA, pB); r != 0 {
		return r
	}
	// Select latest by principal name
	if a.name == b.name {
		if r := compareVersions(provider{a, a.p.Version, true}, provider{b, b.p.Version, true}); r != 0 {
			return r
		}
	}
	// Prefer highest declared provider priority.
	if r := a.providerPriority - b.providerPriority; r != 0 {
		return r
	}
	// Prefer without errors (mostly if --latest used, and different provider)
	if r := b2i(sa.selectable) - b2i(sb.selectable); r != 0 {
		return r
	}
	// Prefer lowest available repository
	return ffs(b.repos) - ffs(a.repos)
}

// ffs is the C library's ffs: 1 + the index of the lowest set bit, 0 for 0.
func ffs(x uint32) int {
	for i := 0; i < 32; i++ {
		if x&(1<<i) != 0 {
			return i + 1
		}
	}
	return 0
}

func (st *state) assignName(n *name, p provider) {
	ns := &st.ns[n.id]
	if ns.locked {
		chosen := st.chosen(n)
		// If both are providing this name without version, it's ok
		if !p.hasVersion && !chosen.hasVersion {
			return
		}
		// Conflict: providing same name
		st.markError(p.pkg)
		st.markError(chosen.pkg)
		return
	}
	ns.locked = true
	ns.chosen = 0
	if p.pkg != nil {
		for i, p0 := range n.providers {
			if p0 == p {
				ns.chosen = int32(i + 1)
				break
			}
		}
	}
	if ns.unresolved.in {
		st.unresolved.del(int32(n.id))
	}
	if ns.dirty.in {
		st.dirty.del(int32(n.id))
	}

	// disqualify all conflicting packages
	for _, p0 := range n.providers {
		if p0.pkg == p.pkg {
			continue
		}
		if !p.hasVersion && !p0.hasVersion {
			continue
		}
		st.disqualifyPackage(p0.pkg)
	}
	st.reevaluateReverseDeps(n)
	if p.pkg != nil {
		st.reevaluateReverseInstallifPkg(p.pkg)
	} else {
		st.reevaluateReverseInstallif(n)
	}
}

func (st *state) selectPackage(n *name) {
	ns := &st.ns[n.id]
	chosen := providerNone
	if ns.requirers > 0 || ns.hasIif {
		for _, p := range n.providers {
			ps := &st.ps[p.pkg.id]
			// Ensure valid pinning and install-if trigger
			if ns.requirers == 0 && (!ps.iifTriggered || !ps.tagOK) {
				continue
			}
			// Virtual packages without provider_priority cannot be
			// autoselected, unless there is only one provider
			if !p.hasVersion && st.ns[p.pkg.name.id].requirers == 0 && p.pkg.providerPriority == 0 {
				continue
			}
			if st.compareProviders(p, chosen) > 0 {
				chosen = p
			}
		}
	}

	pk := chosen.pkg
	if pk != nil {
		ps := &st.ps[pk.id]
		if !ps.selectable || !ps.tagOK {
			// Selecting broken or unallowed package
			st.markError(pk)
		}
		st.assignName(pk.name, provider{pk, pk.p.Version, true})
		for i := range pk.provides {
			d := &pk.provides[i]
			st.assignName(d.name, provider{pk, d.version, d.version != ""})
		}
		for i := range pk.depends {
			st.applyConstraint(pk, &pk.depends[i])
		}
	} else {
		st.assignName(n, providerNone)
		if ns.requirers > 0 {
			st.errors++
		}
	}
}

// compareNameDequeue is compare_name_dequeue.
func (st *state) compareNameDequeue(a, b *name) int {
	sa, sb := &st.ns[a.id], &st.ns[b.id]
	if r := b2i(sa.flagsSet) - b2i(sb.flagsSet); r != 0 {
		return -r
	}
	if r := a.priority - b.priority; r != 0 {
		return r
	}
	if r := sa.maxDepChain - sb.maxDepChain; r != 0 {
		return -r
	}
	return -(b2i(sa.requirers > 0) - b2i(sb.requirers > 0))
}

// solve is apk_solver_solve for an empty installed database.
func (st *state) solve(world []worldDep, force bool) {
	for {
		st.reset()
		for i := range world {
			st.ns[world[i].name.id].flagsSet = true
		}
		for i := range world {
			if !world[i].broken {
				st.discoverName(world[i].name)
			}
		}
		for i := range world {
			if !world[i].broken {
				st.pinningInherit = 1 << world[i].tag
				st.applyConstraint(nil, &world[i].dep)
			}
		}
		st.pinningInherit = 0

		for {
			for !st.dirty.empty() {
				st.reconsiderName(st.name(st.dirty.popHead()))
			}
			var pick *name
			for id := st.unresolved.head.next; id != -1; id = st.ns[id].unresolved.next {
				n0 := st.name(id)
				ns0 := &st.ns[id]
				if ns0.reverseDepsDone && ns0.requirers > 0 && !ns0.hasOptions {
					pick = n0
					break
				}
				if pick == nil || st.compareNameDequeue(n0, pick) < 0 {
					pick = n0
				}
			}
			if pick == nil {
				break
			}
			st.selectPackage(pick)
		}

		st.generateChangeset(world)

		if st.errors == 0 || !force {
			return
		}
		newlyBroken := false
		for i := range world {
			pk := st.chosen(world[i].name).pkg
			if (pk == nil || st.ps[pk.id].err) && !world[i].broken {
				world[i].broken = true
				newlyBroken = true
			}
		}
		if !newlyBroken {
			// apk would restart forever; the errors stand.
			return
		}
	}
}
