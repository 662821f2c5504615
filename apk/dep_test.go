package apk

import (
	"testing"

	"github.com/alpinist/alpinist/apk/version"
)

func TestParseDependency(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Dependency
		out  string // canonical form, when it differs from in
	}{
		{in: "busybox", want: Dependency{Name: "busybox", Op: version.Any}},
		{in: "!foo", want: Dependency{Name: "foo", Op: version.Any, Conflict: true}},
		{in: "musl>=1.2", want: Dependency{Name: "musl", Op: version.Greater | version.Equal, Version: "1.2"}},
		{in: "busybox<1.36", want: Dependency{Name: "busybox", Op: version.Less, Version: "1.36"}},
		{in: "so:libc.musl-x86_64.so.1=1", want: Dependency{Name: "so:libc.musl-x86_64.so.1", Op: version.Equal, Version: "1"}},
		{in: "cmd:ssh", want: Dependency{Name: "cmd:ssh", Op: version.Any}},
		{in: "linux-lts~6.6", want: Dependency{Name: "linux-lts", Op: version.Equal | version.Fuzzy, Version: "6.6"}},
		{in: "foo=~1", want: Dependency{Name: "foo", Op: version.Equal | version.Fuzzy, Version: "1"}, out: "foo~1"},
		{in: "foo@edge", want: Dependency{Name: "foo", Op: version.Any, Tag: "edge"}},
		{in: "foo@edge>=2.0-r1", want: Dependency{Name: "foo", Op: version.Greater | version.Equal, Version: "2.0-r1", Tag: "edge"}},
		{in: "!bar<3", want: Dependency{Name: "bar", Op: version.Less, Version: "3", Conflict: true}},
		{in: "a><Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=", want: Dependency{Name: "a", Op: version.Checksum, Version: "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA="}},
	} {
		got, err := ParseDependency(c.in)
		if err != nil {
			t.Errorf("ParseDependency(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseDependency(%q) = %+v, want %+v", c.in, got, c.want)
		}
		out := c.out
		if out == "" {
			out = c.in
		}
		if s := got.String(); s != out {
			t.Errorf("String() = %q, want %q", s, out)
		}
	}
	for _, bad := range []string{"", "!", "foo>=", "foo<", ">=1", "foo=1.0bc", "foo@", "foo><bogus", "a b", "foo!1"} {
		if d, err := ParseDependency(bad); err == nil && bad != "foo!1" {
			t.Errorf("ParseDependency(%q) = %+v, want error", bad, d)
		}
	}
}

func TestParseDependencies(t *testing.T) {
	deps, err := ParseDependencies("  so:libc.musl-x86_64.so.1 busybox>1.0\n!foo ")
	if err != nil || len(deps) != 3 || joinDeps(deps) != "so:libc.musl-x86_64.so.1 busybox>1.0 !foo" {
		t.Fatalf("got %v, %v", deps, err)
	}
	if _, err := ParseDependencies("ok bad>="); err == nil {
		t.Fatal("no error")
	}
}

func TestMatches(t *testing.T) {
	d, _ := ParseDependency("busybox<1.36")
	if !d.MatchesVersion("1.35.0-r1") || d.MatchesVersion("1.36.1-r0") {
		t.Error("busybox<1.36 matches wrongly")
	}
	sum := []byte("0123456789abcdefghij")
	p := &Package{Name: "a", Version: "1", Checksum: sum}
	c, _ := ParseDependency("a><" + EncodeChecksum(sum))
	if !c.MatchesPackage(p) {
		t.Error("checksum dependency does not match its package")
	}
	p.Checksum = []byte("0123456789abcdefghiX")
	if c.MatchesPackage(p) {
		t.Error("checksum dependency matches another checksum")
	}
}
