package apk

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk/version"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
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
		{in: "/bin/sh", want: Dependency{Name: "/bin/sh", Op: version.Any}},
		{in: "linux-lts~6.6", want: Dependency{Name: "linux-lts", Op: version.Equal | version.Fuzzy, Version: "6.6"}},
		{in: "foo=~1", want: Dependency{Name: "foo", Op: version.Equal | version.Fuzzy, Version: "1"}, out: "foo~1"},
		{in: "foo>~1", want: Dependency{Name: "foo", Op: version.Greater | version.Equal | version.Fuzzy, Version: "1"}, out: "foo?1"},
		{in: "foo@edge", want: Dependency{Name: "foo", Op: version.Any, Tag: "edge"}},
		{in: "foo@edge>=2.0-r1", want: Dependency{Name: "foo", Op: version.Greater | version.Equal, Version: "2.0-r1", Tag: "edge"}},
		{in: "foo@a@b", want: Dependency{Name: "foo", Op: version.Any, Tag: "a@b"}},
		{in: "!bar<3", want: Dependency{Name: "bar", Op: version.Less, Version: "3", Conflict: true}},
		{in: "a><Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=", want: Dependency{Name: "a", Op: version.Checksum, Version: "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA="}},
		// apk does not check a checksum's text, nor a version under <>=.
		{in: "a><bogus", want: Dependency{Name: "a", Op: version.Checksum, Version: "bogus"}},
		{in: "a<>=1.0bc", want: Dependency{Name: "a", Op: version.Less | version.Greater | version.Equal, Version: "1.0bc"}, out: "a?1.0bc"},
		// Only spaces and newlines separate; other bytes are name bytes.
		{in: "a\tb", want: Dependency{Name: "a\tb", Op: version.Any}},
		{in: "foo!1", want: Dependency{Name: "foo!1", Op: version.Any}},
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
			t.Errorf("ParseDependency(%q).String() = %q, want %q", c.in, s, out)
		}
	}
	for bad, msg := range map[string]string{
		"":          "empty dependency",
		"!":         `dependency "!": no package name`,
		">=1":       `dependency ">=1": no package name`,
		"foo>=":     `dependency "foo>=": operator ">=" without a version`,
		"foo<":      `operator "<" without a version`,
		"foo=1.0bc": `dependency "foo=1.0bc": invalid version "1.0bc"`,
		"foo>=1@e":  `invalid version "1@e"`,
		"foo@":      `dependency "foo@": empty repository tag`,
		"a b":       `dependency "a b": contains a space`,
		"a\n":       "contains a space or newline",
	} {
		d, err := ParseDependency(bad)
		if err == nil {
			t.Errorf("ParseDependency(%q) = %+v, want an error", bad, d)
		} else if !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseDependency(%q): %v, want %q", bad, err, msg)
		}
	}
}

func TestParseDependencies(t *testing.T) {
	deps, err := ParseDependencies("so:libc.musl-x86_64.so.1  busybox>1.0\n!foo \n")
	if err != nil || len(deps) != 3 || FormatDependencies(deps) != "so:libc.musl-x86_64.so.1 busybox>1.0 !foo" {
		t.Fatalf("got %v, %v", deps, err)
	}
	if deps, err := ParseDependencies(" \n "); err != nil || deps != nil {
		t.Fatalf("blank list: %v, %v", deps, err)
	}
	if deps, err := ParseDependencies("a\tb c"); err != nil || len(deps) != 2 || deps[0].Name != "a\tb" {
		t.Fatalf("tab: %v, %v", deps, err)
	}
	if _, err := ParseDependencies("ok bad>="); err == nil || !strings.Contains(err.Error(), `"bad>="`) {
		t.Fatalf("error %v does not name the bad dependency", err)
	}
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		dep, v string
		ok     bool
	}{
		{"busybox<1.36", "1.35.0-r1", true},
		{"busybox<1.36", "1.36.1-r0", false},
		{"busybox", "0", true},
		{"!busybox>=2", "2.1", true}, // Conflict is ignored
		{"linux-lts~6.6", "6.6.30-r0", true},
		{"linux-lts~6.6", "6.7", false},
		{"a=1", "1-r0", false},
		{"a><Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=", "1", false},
	} {
		d, err := ParseDependency(c.dep)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Matches(c.v); got != c.ok {
			t.Errorf("%s Matches(%s) = %v", c.dep, c.v, got)
		}
	}
	sum := []byte("0123456789abcdefghij")
	p := &Package{Name: "a", Version: "1", Checksum: sum}
	for _, s := range []string{EncodeChecksum(sum), "X1" + fmt.Sprintf("%x", sum)} {
		c, err := ParseDependency("a><" + s)
		if err != nil {
			t.Fatal(err)
		}
		if !c.MatchesPackage(p) {
			t.Errorf("a><%s does not match its package", s)
		}
		if c.MatchesPackage(&Package{Name: "a", Version: "1", Checksum: []byte("0123456789abcdefghiX")}) {
			t.Errorf("a><%s matches another checksum", s)
		}
		if c.MatchesPackage(&Package{Name: "b", Version: "1", Checksum: sum}) {
			t.Errorf("a><%s matches another name", s)
		}
	}
	if d, _ := ParseDependency("a>=1"); !d.MatchesPackage(p) {
		t.Error("a>=1 does not match a-1")
	}
}

// genDependency makes a dependency expression, valid or not, from the
// pieces apk_blob_pull_dep tells apart.
func genDependency(r *rand.Rand) string {
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	var b strings.Builder
	if r.IntN(4) == 0 {
		b.WriteString("!")
	}
	b.WriteString(pick("foo", "so:libc.musl-x86_64.so.1", "cmd:sh", "py3-foo", "x.y+z_1", "/bin/sh", "a\tb", "foo!1", ""))
	if r.IntN(4) == 0 {
		b.WriteString(pick("@edge", "@", "@a@b", "@testing"))
	}
	if r.IntN(5) != 0 {
		b.WriteString(pick("<", "<=", "=", ">=", ">", "~", "=~", "<~", ">~", "><", "<>", "<>=", "==", "~~", "=>"))
		b.WriteString(pick("1", "1.2.3-r4", "2.0_rc1", "1.0a", "0.01_p2", "1.0bc", "1.0-", "", "1@e", "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=", "bogus", "1<2"))
	}
	return b.String()
}

// TestDependencyAgainstRealApk gives generated dependencies to the real
// `apk add --force-broken-world`, which either rejects them as invalid or
// writes them, canonically, to /etc/apk/world. ParseDependency must reject
// and accept the same ones, and String must write what apk wrote.
func TestDependencyAgainstRealApk(t *testing.T) {
	minirootfs.CanChroot(t)
	root := minirootfs.Copy(t)
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[string]bool{}
	var deps []string
	for len(deps) < 300 {
		if d := genDependency(r); !seen[d] {
			seen[d] = true
			deps = append(deps, d)
		}
	}
	var script strings.Builder
	script.WriteString(": > /e\n/sbin/apk --root /x --initdb --no-network --repositories-file /e add >/dev/null 2>&1 || echo initdb failed\n")
	for i, d := range deps {
		q := "'" + strings.ReplaceAll(d, "'", `'\''`) + "'"
		fmt.Fprintf(&script, ": > /x/etc/apk/world\n/sbin/apk --root /x --no-network --repositories-file /e --force-broken-world add %s > /out 2>&1\n", q)
		fmt.Fprintf(&script, "if grep -q 'is not a valid world dependency' /out; then echo '@@@ %d invalid'; else echo '@@@ %d world'; cat /x/etc/apk/world; fi\n", i, i)
	}
	out := runScript(t, root, script.String())
	parts := strings.Split(out, "@@@ ")
	if len(parts) != len(deps)+1 {
		t.Fatalf("real apk printed %d results for %d dependencies:\n%s", len(parts)-1, len(deps), out)
	}
	accepted := 0
	for i, d := range deps {
		head, body, _ := strings.Cut(parts[i+1], "\n")
		if head != fmt.Sprintf("%d invalid", i) && head != fmt.Sprintf("%d world", i) {
			t.Fatalf("result %d is %q", i, head)
		}
		ours, err := ParseDependency(d)
		if strings.HasSuffix(head, "invalid") {
			if err == nil {
				t.Errorf("%q: apk rejects it, we parse %+v", d, ours)
			}
			continue
		}
		accepted++
		world := strings.TrimSuffix(body, "\n")
		if err != nil {
			// Documented: apk accepts an empty name or tag, we do not.
			name := strings.TrimPrefix(d, "!")
			if i := strings.IndexAny(name, depComparers); i >= 0 {
				name = name[:i]
			}
			if name == "" || strings.HasPrefix(name, "@") || strings.HasSuffix(name, "@") {
				continue
			}
			t.Errorf("%q: apk accepts it (world %q), we say %v", d, world, err)
			continue
		}
		if s := ours.String(); s != world {
			t.Errorf("%q: apk writes %q, we write %q", d, world, s)
		}
	}
	if accepted < 100 || accepted == len(deps) {
		t.Errorf("%d of %d generated dependencies were valid; the generator is off", accepted, len(deps))
	}
}

// runScript runs a shell script inside root with chroot.
func runScript(t *testing.T, root, script string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, "script.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chroot", root, "/bin/sh", "/script.sh")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script in %s: %v: %s", root, err, out)
	}
	return string(out)
}

func FuzzParseDependency(f *testing.F) {
	for _, s := range []string{"busybox", "!foo>=1.2", "foo@edge~1", "a><Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=", "a<>=x", "so:libc.so=1", "x@y@z<2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDependency(s)
		if err != nil {
			return
		}
		if d.Name == "" || strings.ContainsAny(d.Name, "<>=~@ \n") || (d.Version == "" && d.Op != version.Any) {
			// A version with the Any mask is possible: "a<>~x" is apk's
			// checksum mask plus ~, which is every bit, as apk reads it.
			t.Fatalf("%q parsed as %+v", s, d)
		}
		out := d.String()
		if d.Op.String() == "?" {
			return // apk writes these as "?", which does not read back
		}
		again, err := ParseDependency(out)
		if err != nil || again != d {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, d, out, again, err)
		}
		if list, err := ParseDependencies(s + " " + out); err != nil || len(list) != 2 || list[1] != d {
			t.Fatalf("list of %q: %v, %v", s, list, err)
		}
	})
}
