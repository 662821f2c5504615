package version

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// testdata/version.data is apk-tools' own test/version.data.
func TestVersionData(t *testing.T) {
	f, err := os.Open("testdata/version.data")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		a, want, b := fields[0], fields[1], fields[2]
		if got := Compare(a, b).String(); got != want {
			t.Errorf("version.data:%d: %s %s %s, got %s", line, a, want, b, got)
		}
		n++
	}
	if n < 700 {
		t.Fatalf("only %d cases read", n)
	}
}

func TestValid(t *testing.T) {
	for _, v := range []string{"1", "1.0", "1.2.3-r4", "1.0_alpha", "1.0_alpha1_p2", "1.0a", "1.0a-r0", "0.01", "2.0_git20240101", "1_rc1-r10",
		// apk-tools 2.14 accepts these too (`apk version -c` is silent).
		"", "a", "1.0-r", "1..0", "1.0-r1-r2", ".1"} {
		if !Valid(v) {
			t.Errorf("Valid(%q) = false", v)
		}
	}
	for _, v := range []string{"1.0-", "1.0_foo", "1.0bc", "1.0_alpha-r1a", "1234567890123456789", "1.0-r1a"} {
		if Valid(v) {
			t.Errorf("Valid(%q) = true", v)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		have, op, want string
		ok             bool
	}{
		{"1.2", "<", "1.3", true},
		{"1.3", "<", "1.3", false},
		{"1.3", "<=", "1.3", true},
		{"1.3-r1", ">=", "1.3", true},
		{"1.3", "=", "1.3-r0", false},
		{"1.2.3", "~", "1.2", true},
		{"1.3", "~", "1.2", false},
		{"1.2", "~", "1.2.3", true},
		{"1.2_rc1", "~", "1.2", true},
		{"1.4", ">~", "1.2", true},
		{"1.1", ">~", "1.2", false},
	} {
		op, err := ParseOp(c.op)
		if err != nil {
			t.Fatal(err)
		}
		if got := Match(c.have, op, c.want); got != c.ok {
			t.Errorf("Match(%s %s %s) = %v", c.have, c.op, c.want, got)
		}
	}
	if !Match("anything", Any, "") {
		t.Error("Any does not match")
	}
	if Match("1", Checksum, "Q1abc") {
		t.Error("Checksum matched a version")
	}
}

func TestParseOp(t *testing.T) {
	for s, want := range map[string]Op{
		"<": Less, "<=": Less | Equal, "=": Equal, ">=": Greater | Equal, ">": Greater,
		"~": Equal | Fuzzy, "=~": Equal | Fuzzy, "<~": Less | Equal | Fuzzy, ">~": Greater | Equal | Fuzzy,
		"><": Checksum, "<>": Checksum, "<>=": Any &^ Fuzzy, "==": Equal,
	} {
		got, err := ParseOp(s)
		if err != nil || got != want {
			t.Errorf("ParseOp(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "!", "=!", " <", "<=1"} {
		if op, err := ParseOp(bad); err == nil {
			t.Errorf("ParseOp(%q) = %v, want an error", bad, op)
		}
	}
}

// TestOpString checks every set against apk_version_op_string, and that
// the operators apk prints parse back to the same set.
func TestOpString(t *testing.T) {
	want := map[Op]string{
		Less: "<", Less | Equal: "<=", Equal | Fuzzy: "~", Fuzzy: "~", Equal: "=",
		Greater | Equal: ">=", Greater: ">", Checksum: "><",
	}
	for o := Op(0); o <= Any; o++ {
		w, ok := want[o]
		if !ok {
			w = "?"
		}
		if got := o.String(); got != w {
			t.Errorf("Op(%d).String() = %q, want %q", o, got, w)
		}
		if w == "?" || o == Fuzzy {
			continue
		}
		if back, err := ParseOp(w); err != nil || back != o {
			t.Errorf("ParseOp(%q) = %v, %v; want %d", w, back, err, o)
		}
	}
}

// genVersion makes a version string from the whole grammar, sometimes
// invalid, so that comparisons hit every branch.
func genVersion(r *rand.Rand) string {
	var b strings.Builder
	parts := 1 + r.IntN(4)
	for i := 0; i < parts; i++ {
		if i > 0 {
			b.WriteByte('.')
		}
		switch r.IntN(5) {
		case 0:
			b.WriteString("0")
			fmt.Fprint(&b, r.IntN(10))
		case 1:
			fmt.Fprint(&b, r.IntN(3))
		default:
			fmt.Fprint(&b, r.IntN(30))
		}
	}
	if r.IntN(4) == 0 {
		b.WriteByte(byte('a' + r.IntN(3)))
		if r.IntN(3) == 0 { // a letter may be followed by digits: 1.2a3
			fmt.Fprint(&b, r.IntN(5))
		}
	}
	suffixes := []string{"alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"}
	for n := r.IntN(3); n > 0; n-- {
		b.WriteString("_" + suffixes[r.IntN(len(suffixes))])
		if r.IntN(2) == 0 {
			fmt.Fprint(&b, r.IntN(20))
		}
	}
	if r.IntN(2) == 0 {
		fmt.Fprintf(&b, "-r%d", r.IntN(12))
	}
	if r.IntN(40) == 0 { // 17 digits are a number, 18 are invalid
		b.WriteString("." + strings.Repeat("9", 17+r.IntN(2)))
	}
	if r.IntN(25) == 0 { // an invalid tail
		b.WriteString([]string{"-", "_x", "bc", "-r", ".", "-r1a"}[r.IntN(6)])
	}
	return b.String()
}

// TestAgainstRealApk compares Compare with apk-tools' `apk version -t` on
// generated pairs.
func TestAgainstRealApk(t *testing.T) {
	minirootfs.CanChroot(t)
	root := minirootfs.Copy(t)
	r := rand.New(rand.NewPCG(1, 2))
	var pairs [][2]string
	for len(pairs) < 600 {
		a, b := genVersion(r), genVersion(r)
		if r.IntN(8) == 0 {
			b = a // equal pairs too
		}
		pairs = append(pairs, [2]string{a, b})
	}
	var script strings.Builder
	for _, p := range pairs {
		fmt.Fprintf(&script, "/sbin/apk version -t '%s' '%s'\n", p[0], p[1])
		fmt.Fprintf(&script, "/sbin/apk version -c '%s' >/dev/null && echo valid || echo invalid\n", p[0])
	}
	if err := os.WriteFile(filepath.Join(root, "pairs.sh"), []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := chrootSh(root, "/pairs.sh")
	if err != nil {
		t.Fatalf("real apk: %v: %s", err, out)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != 2*len(pairs) {
		t.Fatalf("real apk printed %d lines for %d pairs", len(got), len(pairs))
	}
	invalid := 0
	for i, p := range pairs {
		if ours := Compare(p[0], p[1]).String(); ours != got[2*i] {
			t.Errorf("%s vs %s: apk says %s, we say %s", p[0], p[1], got[2*i], ours)
		}
		if want := got[2*i+1] == "valid"; Valid(p[0]) != want {
			t.Errorf("Valid(%q) = %v, apk says %s", p[0], !want, got[2*i+1])
		}
		if got[2*i+1] == "invalid" {
			invalid++
		}
	}
	if invalid == 0 {
		t.Error("no invalid versions generated")
	}
}

func FuzzCompare(f *testing.F) {
	for _, s := range [][2]string{{"1.0", "1.0"}, {"1.0_alpha", "1.0"}, {"1.01", "1.1"}, {"2.0a-r1", "2.0b"}, {"1.0bc", "1.0"}, {"1_p1", "1_p"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := Compare(a, b), Compare(b, a)
		switch {
		case ab == Equal && ba != Equal, ab == Less && ba != Greater, ab == Greater && ba != Less:
			if Valid(a) && Valid(b) {
				t.Fatalf("not antisymmetric: %q %v %q but %q %v %q", a, ab, b, b, ba, a)
			}
		}
		if Valid(a) && Compare(a, a) != Equal {
			t.Fatalf("%q != itself", a)
		}
		_ = CompareFuzzy(a, b)
	})
}
