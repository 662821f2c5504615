package solver

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
)

func TestMurmur3(t *testing.T) {
	// Reference values of MurmurHash3_x86_32.
	for _, c := range []struct {
		in   string
		seed uint32
		want uint32
	}{
		{"", 0, 0},
		{"", 1, 0x514e28b7},
		{"hello", 0, 0x248bfa47},
		{"The quick brown fox jumps over the lazy dog", 0, 0x2e4ff723},
		{"abc", 0, 0xb3dd93fa},
		{"abcd", 0x9747b28c, 0xf0478627},
	} {
		if got := murmur3(c.in, c.seed); got != c.want {
			t.Errorf("murmur3(%q, %#x) = %#x, want %#x", c.in, c.seed, got, c.want)
		}
	}
}

func TestHashOrder(t *testing.T) {
	var names []*name
	for i, n := range []string{"a", "b", "c", "busybox", "musl"} {
		names = append(names, &name{id: i, name: n})
	}
	got := hashOrder(names)
	for i := 1; i < len(got); i++ {
		a, b := murmur3(got[i-1].name, 5381)%nameBuckets, murmur3(got[i].name, 5381)%nameBuckets
		if a > b || a == b && got[i-1].id < got[i].id {
			t.Errorf("hash order %v not by bucket, newest first", got)
		}
	}
}

// repo builds a repository from "NAME VERSION [D:deps] [p:provides]
// [i:install_if] [k:prio] [I:size]" lines, with checksums from the line.
func repo(t *testing.T, tag string, lines ...string) Repository {
	t.Helper()
	r := Repository{Name: "test", Tag: tag}
	for _, l := range lines {
		f := strings.Fields(l)
		p := &apk.Package{Name: f[0], Version: f[1], InstalledSize: 1, Checksum: []byte(tag + l)}
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, ":")
			deps, err := apk.ParseDependencies(strings.ReplaceAll(v, ",", " "))
			if err != nil {
				t.Fatal(err)
			}
			switch k {
			case "D":
				p.Depends = deps
			case "p":
				p.Provides = deps
			case "i":
				p.InstallIf = deps
			case "k":
				p.ProviderPriority, p.HasProviderPriority = len(v), true
			case "I":
				p.InstalledSize = 0
			}
		}
		r.Packages = append(r.Packages, p)
	}
	return r
}

func installed(ins []Install) string {
	var s []string
	for _, in := range ins {
		s = append(s, in.String())
	}
	return strings.Join(s, " ")
}

func TestSolveFeatures(t *testing.T) {
	main := repo(t, "",
		"app 1 D:so:libfoo.so.1,cmd:sh",
		"libfoo 1 p:so:libfoo.so.1=1",
		"libfoo 2 p:so:libfoo.so.2=2",
		"busybox 1.36 p:cmd:sh=1.36",
		"busybox 1.37 p:cmd:sh=1.37",
		"app-doc 1 i:app,docs",
		"docs 1",
		"mta-a 1 p:mta",
		"mta-b 1 p:mta",
		"mta-c 1 p:mta k:x",
	)
	edge := repo(t, "edge",
		"busybox 1.38 p:cmd:sh=1.38",
		"newthing 1 D:busybox",
	)
	s, err := New([]Repository{main, edge}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ world, want string }{
		{"app", "libfoo (1) busybox (1.37) app (1)"},
		{"app docs", "libfoo (1) busybox (1.37) app (1) docs (1) app-doc (1)"},
		{"busybox<1.37", "busybox (1.36)"},
		{"busybox@edge", "busybox@edge (1.38)"},
		{"newthing@edge", "busybox (1.37) newthing@edge (1)"},
		{"mta", "mta-c (1)"},
		{"mta-a mta", "mta-a (1)"},
		{"cmd:sh", "busybox (1.37)"},
		{"so:libfoo.so.2", "libfoo (2)"},
	} {
		ins, err := s.Solve(parseWorld(t, strings.Fields(c.world)))
		if err != nil {
			t.Errorf("%s: %v", c.world, err)
			continue
		}
		if got := installed(ins); got != c.want {
			t.Errorf("%s: got %s, want %s", c.world, got, c.want)
		}
	}
	ins, err := s.Solve(parseWorld(t, []string{"newthing@edge"}))
	if err != nil {
		t.Fatal(err)
	}
	if ins[0].Repository != 0 || ins[1].Repository != 1 || ins[1].Tag != "edge" {
		t.Errorf("repositories/tags: %+v", ins)
	}
}

func TestErrorFields(t *testing.T) {
	r := repo(t, "",
		"a 1 D:b,!c",
		"c 1",
		"v1 1 p:virt",
		"v2 1 p:virt",
		"needs 1 D:virt",
	)
	s, err := New([]Repository{r}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Solve(parseWorld(t, []string{"a"}))
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not *Error", err)
	}
	want := []Problem{{
		Kind:       NoSuchPackage,
		Name:       "b",
		RequiredBy: []Requirer{{Package: r.Packages[0], Dependency: r.Packages[0].Depends[0]}},
	}}
	if !reflect.DeepEqual(se.Problems, want) {
		t.Errorf("problems %+v, want %+v", se.Problems, want)
	}
	if got, want := se.Error(), "unable to select packages:\n  b (no such package):\n    required by: a-1[b]"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	_, err = s.Solve(parseWorld(t, []string{"a", "c"}))
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not *Error", err)
	}
	// apk reports in install order: c is emitted for a's conflict before
	// a and its missing dependency.
	if got := se.Report(); got != "ERROR: unable to select packages:\n"+
		"  c-1:\n    breaks: a-1[!c]\n    satisfies: world[c]\n"+
		"  b (no such package):\n    required by: a-1[b]\n" {
		t.Errorf("report:\n%s", got)
	}
	if p := se.Problems[0]; p.Kind != PackageProblem || p.Package != r.Packages[1] || len(p.Breaks) != 1 || p.Breaks[0].Package != r.Packages[0] || !p.Breaks[0].Dependency.Conflict {
		t.Errorf("problem %+v", p)
	}

	_, err = s.Solve(parseWorld(t, []string{"needs"}))
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not *Error", err)
	}
	if p := se.Problems[0]; p.Kind != AmbiguousVirtual || p.Name != "virt" || !reflect.DeepEqual(p.ProvidedBy, []string{"v1", "v2"}) {
		t.Errorf("problem %+v", p)
	}

	_, err = s.Solve(parseWorld(t, []string{"a@nowhere"}))
	if !errors.As(err, &se) || len(se.MissingTags) != 1 || se.MissingTags[0].Name != "a" {
		t.Fatalf("error %#v, want missing tag", err)
	}
	if got := se.Report(); got != "WARNING: The repository tag for world dependency 'a@nowhere' does not exist\n"+
		"ERROR: Not committing changes due to missing repository tags. Use --force-broken-world to override.\n" {
		t.Errorf("report:\n%s", got)
	}
}

func TestForceBrokenWorld(t *testing.T) {
	r := repo(t, "", "a 1 D:b", "b 1", "broken 1 D:missing")
	s, err := New([]Repository{r}, Options{ForceBrokenWorld: true})
	if err != nil {
		t.Fatal(err)
	}
	ins, err := s.Solve(parseWorld(t, []string{"a", "broken", "nothere", "b@nowhere"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := installed(ins); got != "b (1) a (1)" {
		t.Errorf("got %s", got)
	}
}

func TestWorldNormalization(t *testing.T) {
	r := repo(t, "", "a 1", "a 2", "b 1")
	s, err := New([]Repository{r}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A zero Op without a version means any version; a later dependency
	// on a name replaces an earlier one, as `apk add` does.
	ins, err := s.Solve([]apk.Dependency{{Name: "b"}, {Name: "a"}, {Name: "a", Op: opFromString("<"), Version: "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := installed(ins); got != "a (1) b (1)" {
		t.Errorf("got %s", got)
	}
	if _, err := s.Solve([]apk.Dependency{{Name: "a", Op: opFromString("<")}}); err == nil || errors.As(err, new(*Error)) {
		t.Errorf("operator without version: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New([]Repository{{Packages: []*apk.Package{{Name: "x"}}}}, Options{}); err == nil {
		t.Error("package without version accepted")
	}
	if _, err := New([]Repository{{Packages: []*apk.Package{nil}}}, Options{}); err == nil {
		t.Error("nil package accepted")
	}
	if _, err := New(make([]Repository, 32), Options{}); err == nil {
		t.Error("32 repositories accepted")
	}
}

func TestConcurrentSolve(t *testing.T) {
	s, err := New(largeRepos(2000), Options{})
	if err != nil {
		t.Fatal(err)
	}
	world := largeWorld(t)
	want, err := s.Solve(world)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			got, err := s.Solve(world)
			if err == nil && !reflect.DeepEqual(got, want) {
				err = errors.New("different result")
			}
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
