package solver

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/alpinist/alpinist/apk"
)

// The changeset is apk's commit order: generate_changeset walks the world
// in sorted order and emits each chosen package after its dependencies,
// then any install_if package whose conditions are all emitted.

func (st *state) generateChangeset(world []worldDep) {
	st.changes = st.changes[:0]
	for i := range world {
		st.csetGenDep(nil, &world[i].dep)
	}
}

func (st *state) csetGenDep(pp *pkg, d *dep) {
	chosen := st.chosen(d.name)
	pk := chosen.pkg
	if !depIsProvided(d, chosen) {
		st.markError(pp)
	}
	st.csetGenNameChange(d.name)
	if pk != nil && st.ps[pk.id].err {
		st.markError(pp)
	}
}

// csetGenNameRemoveOrphan only marks the name: nothing is installed.
func (st *state) csetGenNameRemoveOrphan(n *name) {
	st.ns[n.id].inChangeset = true
}

func (st *state) csetGenNameChange(n *name) {
	if st.ns[n.id].inChangeset {
		return
	}
	st.csetGenNameRemoveOrphan(n)
	pk := st.chosen(n).pkg
	if pk == nil || st.ps[pk.id].inChangeset {
		return
	}
	st.ps[pk.id].inChangeset = true
	st.csetGenNameRemoveOrphan(pk.name)
	for i := range pk.provides {
		st.csetGenNameRemoveOrphan(pk.provides[i].name)
	}
	for i := range pk.depends {
		st.csetGenDep(pk, &pk.depends[i])
	}
	st.changes = append(st.changes, pk)
	st.csetCheckByReverseIif(pk)
}

func (st *state) csetCheckByReverseIif(pk *pkg) {
	for _, n := range pk.name.rinstallIf {
		st.csetCheckInstallByIif(n)
	}
	for i := range pk.provides {
		for _, n := range pk.provides[i].name.rinstallIf {
			st.csetCheckInstallByIif(n)
		}
	}
}

func (st *state) csetCheckInstallByIif(n *name) {
	ns := &st.ns[n.id]
	pk := st.chosen(n).pkg
	if pk == nil || !ns.seen || ns.inChangeset {
		return
	}
	for i := range pk.installIf {
		d := &pk.installIf[i]
		if !st.ns[d.name.id].inChangeset || !depIsProvided(d, st.chosen(d.name)) {
			return
		}
	}
	st.csetGenNameChange(n)
}

// checksumMatches is apk_dep_match_checksum: the dependency's version is
// a checksum as apk-tools 2.14 reads one (apk_blob_pull_csum): "Q1" and
// base64 or "X1" and hex for SHA-1, 32 hex digits for MD5; anything else
// is no checksum, which matches only a package without one.
func checksumMatches(want string, have []byte) bool {
	return bytes.Equal(depChecksum(want), have)
}

func depChecksum(s string) []byte {
	if len(s) < 2 {
		return nil
	}
	if isHex(s[0]) {
		if len(s) < 32 {
			return nil
		}
		b, err := hex.DecodeString(s[:32])
		if err != nil {
			return nil
		}
		return b
	}
	if s[1] != '1' {
		return nil
	}
	switch s[0] {
	case 'X':
		if b, err := hex.DecodeString(s[2:min(len(s), 42)]); err == nil && len(b) == 20 {
			return b
		}
	case 'Q':
		if b, err := base64.StdEncoding.DecodeString(s[2:min(len(s), 30)]); err == nil && len(b) == 20 {
			return b
		}
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Solve resolves world as `apk add` would on an empty root and returns the
// packages to install in apk's install order. World dependencies are
// deduplicated by name (a later one replaces an earlier one) as `apk add`
// does. When the world cannot be satisfied the error is an *Error.
func (s *Solver) Solve(world []apk.Dependency) ([]Install, error) {
	ov, w, err := s.prepareWorld(world)
	if err != nil {
		return nil, err
	}
	// apk_db_check_world: every tag named by the world must exist.
	if !s.opts.ForceBrokenWorld {
		var missing []apk.Dependency
		for _, d := range w {
			if d.tag != 0 && ov.tag(d.tag).allowed == 0 {
				missing = append(missing, d.src)
			}
		}
		if len(missing) > 0 {
			return nil, &Error{MissingTags: missing}
		}
	}
	sortWorld(w)
	st := newState(s, ov)
	defer st.release()
	st.solve(w, s.opts.ForceBrokenWorld)
	if st.errors > 0 {
		return nil, st.report(w)
	}
	out := make([]Install, len(st.changes))
	for i, pk := range st.changes {
		tag := st.getTag(st.ps[pk.id].pinningAllowed, pk.repos)
		out[i] = Install{
			Package:    pk.p,
			Repository: ffs(pk.repos) - 1,
			Tag:        strings.TrimPrefix(ov.tag(tag).tag, "@"),
		}
	}
	return out, nil
}

// String formats an install as apk's progress line does, without the
// counter: "NAME[@TAG] (VERSION)".
func (in Install) String() string {
	t := ""
	if in.Tag != "" {
		t = "@" + in.Tag
	}
	return fmt.Sprintf("%s%s (%s)", in.Package.Name, t, in.Package.Version)
}
