package solver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
)

// byteSource is a rand.Source drawing from the fuzzer's bytes, so that
// mutations of the input change the generated problem locally; when they
// run out it continues with a splitmix64 sequence (a constant stream would
// make math/rand loop forever).
type byteSource struct {
	b     []byte
	state uint64
}

func (s *byteSource) Int63() int64 { return int64(s.Uint64() >> 1) }

func (s *byteSource) Uint64() uint64 {
	if len(s.b) >= 8 {
		v := binary.LittleEndian.Uint64(s.b)
		s.b = s.b[8:]
		s.state ^= v
		return v
	}
	s.b = nil
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (s *byteSource) Seed(int64) {}

// FuzzSolve solves random repositories and requests: the solver must not
// panic, must be deterministic, and every solution must satisfy the
// request (see checkSolution); every failure must be an *Error.
func FuzzSolve(f *testing.F) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 16; i++ {
		b := make([]byte, 64+rng.Intn(512))
		rng.Read(b)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := genRandomCase(rand.New(&byteSource{b: data}))
		if err := checkCase(c); err != nil {
			t.Fatalf("%v\nworld: %s\n%s", err, strings.Join(c.world, " "), describeRepos(c.repos))
		}
	})
}

// TestSolutionsAreValid runs the FuzzSolve checks on many generated cases.
func TestSolutionsAreValid(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 500
	}
	rng := rand.New(rand.NewSource(42))
	solved := 0
	for i := 0; i < n; i++ {
		c := genRandomCase(rng)
		if err := checkCase(c); err != nil {
			t.Fatalf("case %d: %v\nworld: %s\n%s", i, err, strings.Join(c.world, " "), describeRepos(c.repos))
		}
		if s, _ := New(c.repos, Options{}); s != nil {
			if ins, err := s.Solve(parseWorld(t, c.world)); err == nil && len(ins) > 1 {
				solved++
			}
		}
	}
	if solved < n/4 {
		t.Errorf("only %d of %d cases solved with more than one package; the generator is too hostile to check much", solved, n)
	}
}

func parseWorld(t testing.TB, ws []string) []apk.Dependency {
	t.Helper()
	var out []apk.Dependency
	for _, w := range ws {
		d, err := parseWorldDep(w)
		if err != nil {
			t.Fatalf("world %q: %v", w, err)
		}
		out = append(out, d)
	}
	return out
}

func checkCase(c genCase) error {
	var world []apk.Dependency
	for _, w := range c.world {
		d, err := parseWorldDep(w)
		if err != nil {
			return fmt.Errorf("world %q: %w", w, err)
		}
		world = append(world, d)
	}
	s, err := New(c.repos, Options{})
	if err != nil {
		return err
	}
	ins, err := s.Solve(world)
	ins2, err2 := s.Solve(world)
	if fmt.Sprint(ins, err) != fmt.Sprint(ins2, err2) {
		return fmt.Errorf("not deterministic:\n%v %v\n%v %v", ins, err, ins2, err2)
	}
	if err != nil {
		var se *Error
		if !errors.As(err, &se) {
			return fmt.Errorf("error is %T, not *Error: %v", err, err)
		}
		r := se.Report()
		if !strings.HasPrefix(r, "ERROR: ") && !strings.HasPrefix(r, "WARNING: ") || err.Error() == "" {
			return fmt.Errorf("bad report %q", r)
		}
		return nil
	}
	return checkSolution(s, world, ins)
}

// checkSolution verifies a solution independently of the solver: world and
// package dependencies are met, no name is provided twice unless only
// virtually, tagged packages are allowed by a world tag, repositories are
// right, and dependencies come first unless apk's walk explains otherwise.
func checkSolution(s *Solver, world []apk.Dependency, ins []Install) error {
	idx := map[*apk.Package]int{}
	providers := map[string][]provider{}
	var pkgs []*pkg
	for i, in := range ins {
		if _, dup := idx[in.Package]; dup {
			return fmt.Errorf("%s installed twice", in.Package)
		}
		idx[in.Package] = i
		var pk *pkg
		for _, p := range s.pkgs {
			if p.p == in.Package {
				pk = p
			}
		}
		if pk == nil {
			return fmt.Errorf("%s is not a repository package", in.Package)
		}
		pkgs = append(pkgs, pk)
		providers[pk.name.name] = append(providers[pk.name.name], provider{pk, pk.p.Version, true})
		for _, d := range pk.provides {
			providers[d.name.name] = append(providers[d.name.name], provider{pk, d.version, d.version != ""})
		}
		if in.Repository != ffs(pk.repos)-1 {
			return fmt.Errorf("%s: repository %d, want %d", in.Package, in.Repository, ffs(pk.repos)-1)
		}
		inDefault := pk.repos&s.tags[0].allowed != 0
		if !inDefault && pk.p.InstalledSize != 0 && in.Tag == "" {
			return fmt.Errorf("%s is only in tagged repositories but was installed untagged", in.Package)
		}
		if in.Tag != "" {
			ok := false
			for _, d := range world {
				ok = ok || strings.TrimPrefix(d.Tag, "@") == in.Tag
			}
			if !ok {
				return fmt.Errorf("%s installed from @%s, which no world dependency names", in.Package, in.Tag)
			}
			if id := s.tagIndex[in.Tag]; pk.repos&s.tags[id].allowed == 0 {
				return fmt.Errorf("%s tagged @%s but not in such a repository", in.Package, in.Tag)
			}
		}
	}
	for n, ps := range providers {
		if len(ps) < 2 {
			continue
		}
		for _, p := range ps {
			if p.hasVersion {
				return fmt.Errorf("name %s provided by %d packages, %s with a version", n, len(ps), p.pkg.p)
			}
		}
	}
	satisfied := func(d dep) bool {
		ps := providers[d.name.name]
		if d.conflict {
			for _, p := range ps {
				if !depIsProvided(&d, p) {
					return false
				}
			}
			return true
		}
		for _, p := range ps {
			if depIsProvided(&d, p) {
				return true
			}
		}
		return false
	}
	// A later world dependency on a name replaces an earlier one.
	last := map[string]int{}
	for i, w := range world {
		last[w.Name] = i
	}
	ov := &overlay{s: s}
	for i, w := range world {
		if last[w.Name] != i {
			continue
		}
		d, err := ov.dep(w)
		if err != nil {
			return err
		}
		if !satisfied(d) {
			return fmt.Errorf("world dependency %s not satisfied", depString(w))
		}
	}
	// Order: a package's dependencies come before it unless the package
	// was emitted while the dependency was being processed, which apk's
	// depth-first walk does only for packages the dependency leads to
	// through dependencies (and conflicts) and install_if triggers. A trigger is checked
	// by name: emitting a package that provides R re-examines every name N
	// some provider of which has install_if on R, and emits N's chosen
	// package if that package's own install_if (possibly empty) is met.
	triggers := map[*pkg][]*pkg{}
	for _, y := range s.pkgs {
		for _, d := range y.installIf {
			for _, r := range providers[d.name.name] {
				for _, n := range append([]dep{{name: y.name}}, y.provides...) {
					for _, x := range providers[n.name.name] {
						triggers[r.pkg] = append(triggers[r.pkg], x.pkg)
					}
				}
			}
		}
	}
	reaches := func(from, to *pkg) bool {
		seen := map[*pkg]bool{from: true}
		stack := []*pkg{from}
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if p == to {
				return true
			}
			// apk's walk follows conflicts too: it emits the
			// package chosen for a name a conflict refers to.
			for _, d := range p.depends {
				for _, q := range providers[d.name.name] {
					if !seen[q.pkg] {
						seen[q.pkg] = true
						stack = append(stack, q.pkg)
					}
				}
			}
			for _, x := range triggers[p] {
				if !seen[x] {
					seen[x] = true
					stack = append(stack, x)
				}
			}
		}
		return false
	}
	for i, pk := range pkgs {
		for _, d := range pk.depends {
			if !satisfied(d) {
				return fmt.Errorf("%s: dependency %s not satisfied", pk.p, depString(d.src))
			}
			if d.conflict {
				continue
			}
			ok := false
			var late *pkg
			for _, q := range providers[d.name.name] {
				if !depIsProvided(&d, q) {
					continue
				}
				if idx[q.pkg.p] < i || reaches(q.pkg, pk) {
					ok = true
				} else {
					late = q.pkg
				}
			}
			if !ok {
				return fmt.Errorf("%s installed before its dependency %s", pk.p, late.p)
			}
		}
	}
	return nil
}
