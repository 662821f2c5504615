package apk

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk/version"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// sampleIndex is in apk's canonical form, every field present.
const sampleIndex = `C:Q1EyN5AdpAOBJWKMR89pp/C66o+OE=
P:busybox
V:1.36.1-r29
A:x86_64
S:509372
I:946176
T:Size optimized toolkit of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1717003030
c:1f0b1ab4a5f0ba3c3d9a2d2cb06b1b56fcb15e09
k:10
D:so:libc.musl-x86_64.so.1
p:/bin/sh cmd:busybox=1.36.1-r29 cmd:sh=1.36.1-r29
i:foo bar=1

C:Q2AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
P:b
V:1
S:1
I:1
T:
U:
L:

C:000102030405060708090a0b0c0d0e0f
P:old
V:0.1_rc2-r1
A:noarch
S:0
I:0
T:an old MD5-checksummed package
U:
L:MIT
D:!b>=2 so:libc.musl-x86_64.so.1 x@edge~1.2

`

func TestIndexRoundTrip(t *testing.T) {
	pkgs, err := ParseIndex(strings.NewReader(sampleIndex))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 3 {
		t.Fatalf("%d packages", len(pkgs))
	}
	bb := pkgs[0]
	if bb.Name != "busybox" || bb.Size != 509372 || bb.InstalledSize != 946176 || bb.ProviderPriority != 10 || !bb.HasProviderPriority ||
		len(bb.Provides) != 3 || bb.BuildTime != 1717003030 || len(bb.InstallIf) != 2 || bb.Maintainer != "Sören Tempel <soeren+alpine@soeren-tempel.net>" ||
		len(bb.Checksum) != 20 || bb.Provides[1] != (Dependency{Name: "cmd:busybox", Op: version.Equal, Version: "1.36.1-r29"}) {
		t.Errorf("busybox parsed as %+v", bb)
	}
	if len(pkgs[1].Checksum) != 32 || pkgs[1].Checksum[31] != 31 || pkgs[1].HasProviderPriority {
		t.Errorf("b parsed as %+v", pkgs[1])
	}
	if len(pkgs[2].Checksum) != 16 || len(pkgs[2].Depends) != 3 || pkgs[2].Depends[2].Tag != "edge" {
		t.Errorf("old parsed as %+v", pkgs[2])
	}
	var out bytes.Buffer
	for _, p := range pkgs {
		if err := WriteIndexEntry(&out, p); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != sampleIndex {
		t.Errorf("round trip differs:\n%s\nwant:\n%s", out.String(), sampleIndex)
	}
}

// What apk ignores or tolerates in an index.
func TestIndexLenient(t *testing.T) {
	in := "\n\nP:a\nV:1\nZ:unknown upper case\nz:unknown\nr:b\nq:10\nF:usr\nD:x\nD:y z\n\r\nP:b\nV:2\nx\nP:c\nV:3\r\nT:no newline at the end"
	pkgs, err := ParseIndex(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 3 {
		t.Fatalf("%d packages, want 3 (one-byte lines separate stanzas)", len(pkgs))
	}
	if d := FormatDependencies(pkgs[0].Depends); d != "x y z" || FormatDependencies(pkgs[0].Replaces) != "b" || pkgs[0].ReplacesPriority != 10 {
		t.Errorf("a parsed as %+v", pkgs[0])
	}
	if pkgs[2].Version != "3\r" || pkgs[2].Description != "no newline at the end" {
		t.Errorf("c parsed as %+v", pkgs[2])
	}
}

func TestIndexErrors(t *testing.T) {
	for in, want := range map[string]string{
		"P:a\n": "apk: APKINDEX: line 1: package a without a version",
		"C:Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=\nV:1\n":           "line 1: package without a name",
		"P:a\nV:1\nC:Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=\nS:x\n": `line 4: S: "x" is not a non-negative decimal number`,
		"P:a\nV:1\nS:-1\n":   `line 3: S: "-1" is not`,
		"P:a\nV:1\nI:1e3\n":  `line 3: I: "1e3"`,
		"P:a\nbogus\n":       `line 2: expected "X:value", got "bogus"`,
		"\n\nP:a\nD:foo>=\n": `line 4: D: dependency "foo>=": operator ">=" without a version`,
		"C:Q9abc\n":          "line 1: C: checksum \"Q9abc\": want Q1",
		"C:Q1abc\n":          `checksum "Q1abc": malformed`,
		"P:a\nV:1\nT:" + strings.Repeat("x", MaxLineLength+10): "line 3: line longer than",
	} {
		_, err := ParseIndex(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseIndex(%.40q) error %v, want %q", in, err, want)
		}
	}
}

func TestWriteIndexErrors(t *testing.T) {
	sum := make([]byte, 20)
	for _, c := range []struct {
		p    Package
		want string
	}{
		{Package{Version: "1", Checksum: sum}, "without a name"},
		{Package{Name: "a", Version: "1"}, "a-1: no SHA-1"},
		{Package{Name: "a", Version: "1", Checksum: sum[:19]}, "no SHA-1"},
		{Package{Name: "a", Version: "1", Checksum: sum, Description: "two\nlines"}, "contains a newline"},
		{Package{Name: "a", Version: "1", Checksum: sum, Depends: []Dependency{{Name: "x\ny"}}}, "contains a newline"},
		{Package{Name: "a", Version: "1", Checksum: sum, Size: -1}, "negative"},
	} {
		var b bytes.Buffer
		if err := WriteIndexEntry(&b, &c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("WriteIndexEntry(%+v): %v, want %q", c.p, err, c.want)
		}
	}
}

func TestChecksums(t *testing.T) {
	for in, n := range map[string]int{
		"Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=":                 20,
		"X10b8ba857b49d31d0e1620e0e095988ef50fc1c80":     20,
		"Q2AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=": 32,
		"000102030405060708090a0b0c0d0e0f":               16,
	} {
		b, err := DecodeChecksum(in)
		if err != nil || len(b) != n {
			t.Errorf("DecodeChecksum(%q) = %x, %v", in, b, err)
			continue
		}
		if out := EncodeChecksum(b); !strings.HasPrefix(in, "X1") && out != in {
			t.Errorf("EncodeChecksum(DecodeChecksum(%q)) = %q", in, out)
		}
	}
	if x, _ := DecodeChecksum("X10b8ba857b49d31d0e1620e0e095988ef50fc1c80"); EncodeChecksum(x) != "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=" {
		t.Error("X1 and Q1 forms differ")
	}
	for _, bad := range []string{"", "Q1", "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA", "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=x", "X1zz", "Q3AAAA", "000102030405060708090a0b0c0d0e0g"} {
		if b, err := DecodeChecksum(bad); err == nil {
			t.Errorf("DecodeChecksum(%q) = %x", bad, b)
		}
	}
}

// TestStanzaReader checks the low-level reader: fields, stanza ends,
// skipping the rest of a stanza, line numbers.
func TestStanzaReader(t *testing.T) {
	sr := NewStanzaReader(strings.NewReader("\nP:a\nV:1\nF:x\n\n\nP:b\nx\nP:c\n"), "t")
	var got []string
	for n := 0; sr.NextStanza(); n++ {
		for sr.Next() {
			f := sr.Field()
			got = append(got, fmt.Sprintf("%d:%c=%s", f.Line, f.Key, f.Value))
			if n == 0 && f.Key == 'V' {
				break // NextStanza skips the rest
			}
		}
	}
	if err := sr.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"2:P=a", "3:V=1", "7:P=b", "9:P=c"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if sr.Next() || sr.NextStanza() {
		t.Error("reader goes on after the end")
	}
}

// The apk-tools test repositories parse, and writing them is a fixed
// point: they lack T:, U:, L:, which apk always writes, so the first
// writing adds those and changes nothing else.
func TestApkToolsRepos(t *testing.T) {
	files, err := filepath.Glob("testdata/apk-tools/*.repo")
	if err != nil || len(files) < 10 {
		t.Fatalf("apk-tools test repositories: %v, %d files", err, len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pkgs, err := ParseIndex(bytes.NewReader(data))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		var once, twice bytes.Buffer
		for _, p := range pkgs {
			if p.Checksum == nil {
				continue
			}
			if err := WriteIndexEntry(&once, p); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		again, err := ParseIndex(bytes.NewReader(once.Bytes()))
		if err != nil {
			t.Fatalf("%s: re-parse: %v", f, err)
		}
		for _, p := range again {
			if err := WriteIndexEntry(&twice, p); err != nil {
				t.Fatal(err)
			}
		}
		if once.String() != twice.String() {
			t.Errorf("%s: writing is not a fixed point", f)
		}
		// Each written entry has the original's lines, in apk's order,
		// plus T:, U:, L:. Checksums are compared decoded: some have
		// non-zero base64 padding bits (edited by hand), which apk reads
		// and rewrites the same way.
		norm := func(stanza string) []string {
			var ls []string
			for _, l := range strings.Split(stanza, "\n") {
				if l == "" || l == "T:" || l == "U:" || l == "L:" {
					continue
				}
				switch l[0] {
				case 'C':
					sum, _ := DecodeChecksum(l[2:])
					l = fmt.Sprintf("C:%x", sum)
				case 'D', 'p', 'i': // repeated lines add up
					for _, d := range strings.Fields(l[2:]) {
						ls = append(ls, l[:2]+d)
					}
					continue
				}
				ls = append(ls, l)
			}
			slices.Sort(ls)
			return ls
		}
		var orig []string
		for _, st := range strings.Split(string(data), "\n\n") {
			if strings.Contains("\n"+st, "\nC:") { // apk cannot write one without C:
				orig = append(orig, st)
			}
		}
		written := strings.Split(strings.TrimSuffix(once.String(), "\n\n"), "\n\n")
		if len(orig) != len(written) {
			t.Errorf("%s: %d entries, written %d", f, len(orig), len(written))
			continue
		}
		for i := range orig {
			if a, b := norm(orig[i]), norm(written[i]); !slices.Equal(a, b) {
				t.Errorf("%s: entry %d:\n%q\nwritten as\n%q", f, i, a, b)
			}
		}
	}
}

// TestInstalledHeaders checks WriteIndexHeader against text apk-tools
// wrote: each package of the minirootfs's lib/apk/db/installed starts with
// exactly the lines WriteIndexHeader gives for it.
func TestInstalledHeaders(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(minirootfs.Dir(t), "lib/apk/db/installed"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, stanza := range strings.Split(string(data), "\n\n") {
		if stanza == "" || stanza == "\n" {
			continue
		}
		var p Package
		var header strings.Builder
		inHeader := true
		for _, l := range strings.SplitAfter(stanza, "\n") {
			if len(l) < 2 {
				continue
			}
			ok, err := p.SetField(l[0], strings.TrimSuffix(l[2:], "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				inHeader = false
			} else if !inHeader {
				t.Fatalf("index field after database fields: %q", l)
			}
			if inHeader {
				header.WriteString(strings.TrimSuffix(l, "\n") + "\n")
			}
		}
		var out bytes.Buffer
		if err := WriteIndexHeader(&out, &p); err != nil {
			t.Fatal(err)
		}
		if out.String() != header.String() {
			t.Errorf("%s: we write\n%s\napk wrote\n%s", p.Name, out.String(), header.String())
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d packages in the installed database", n)
	}
}

// genPackages makes packages with every index field, whose dependencies
// are satisfied among themselves (so the real apk keeps them installed).
func genPackages(r *rand.Rand, n int) []*Package {
	var pkgs []*Package
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	for i := 0; i < n; i++ {
		p := &Package{
			Name:          fmt.Sprintf("%s%d", pick("pkg", "Pkg", "py3-x", "lib.so+", "a_b"), i),
			Version:       pick("1", "1.2.3-r4", "2.0_rc1-r0", "1.0a", "0.01_p2", "3_git20240101"),
			Checksum:      make([]byte, 20),
			Size:          r.Int64N(1 << 31),
			InstalledSize: r.Int64N(1 << 31),
		}
		for j := range p.Checksum {
			p.Checksum[j] = byte(r.Uint32())
		}
		if r.IntN(4) > 0 {
			p.Arch = pick("x86_64", "noarch")
		}
		if r.IntN(4) > 0 {
			p.Description = pick("A package", "ünïcödé and: colons", "tabs\tand  spaces ")
		}
		if r.IntN(4) > 0 {
			p.URL = "https://example.org/" + p.Name
		}
		if r.IntN(4) > 0 {
			p.License = pick("MIT", "GPL-2.0-only AND (MIT OR BSD-3-Clause)")
		}
		if r.IntN(2) > 0 {
			p.Origin = "origin" + p.Name
		}
		if r.IntN(2) > 0 {
			p.Maintainer = "Someone <someone@example.org>"
		}
		if r.IntN(2) > 0 {
			p.BuildTime = r.Int64N(1 << 31)
		}
		if r.IntN(2) > 0 {
			p.Commit = fmt.Sprintf("%040x", r.Uint64())
		}
		if r.IntN(3) == 0 {
			p.ProviderPriority, p.HasProviderPriority = r.IntN(200), true
		}
		for k := r.IntN(4); k > 0; k-- {
			if i > 0 && r.IntN(2) == 0 {
				q := pkgs[r.IntN(i)]
				op := pick(">=", "=", "~", "<")
				v := q.Version
				if op == "<" {
					v = "99"
				}
				d, _ := ParseDependency(q.Name + op + v)
				p.Depends = append(p.Depends, d)
			} else {
				d, _ := ParseDependency(pick("!absent", "!absent>=2", "!absent~1.2", "!so:libabsent.so.1<3"))
				p.Depends = append(p.Depends, d)
			}
		}
		for _, prefix := range []string{"cmd:", "so:lib", "pc:"} { // one each: a name provided twice conflicts
			if r.IntN(3) == 0 {
				d, _ := ParseDependency(prefix + p.Name + pick("", "="+p.Version))
				p.Provides = append(p.Provides, d)
			}
		}
		if r.IntN(4) == 0 {
			d, _ := ParseDependency("absent-trigger" + pick("", ">=1"))
			p.InstallIf = append(p.InstallIf, d)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestIndexWriterAgainstRealApk writes generated packages as an installed
// database, has the real apk read it and write it back (apk add of nothing
// new commits and rewrites lib/apk/db/installed), and compares: apk must
// write exactly what we wrote, in its order (by name, case-insensitively).
func TestIndexWriterAgainstRealApk(t *testing.T) {
	minirootfs.CanChroot(t)
	root := minirootfs.Copy(t)
	runScript(t, root, ": > /e\n/sbin/apk --root /x --initdb --no-network --repositories-file /e add\n")
	pkgs := genPackages(rand.New(rand.NewPCG(5, 6)), 60)
	var db, world bytes.Buffer
	for _, p := range pkgs {
		if err := WriteIndexEntry(&db, p); err != nil {
			t.Fatal(err)
		}
		world.WriteString(p.Name + "\n")
	}
	x := filepath.Join(root, "x")
	if err := os.WriteFile(filepath.Join(x, "lib/apk/db/installed"), db.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(x, "etc/apk/world"), world.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runScript(t, root, "/sbin/apk --root /x --no-network --repositories-file /e add 2>&1; echo rc=$?\n")
	if !strings.Contains(out, "rc=0") || !strings.Contains(out, fmt.Sprintf("%d packages", len(pkgs))) {
		t.Fatalf("real apk: %s", out)
	}
	got, err := os.ReadFile(filepath.Join(x, "lib/apk/db/installed"))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(pkgs, func(a, b *Package) int {
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	var want bytes.Buffer
	for _, p := range pkgs {
		if err := WriteIndexEntry(&want, p); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("apk rewrote the database differently:\n%s", diffLines(want.String(), string(got)))
	}
	// And what apk wrote parses to the same packages.
	back, err := ParseIndex(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	for i := range back {
		back[i].HasProviderPriority = pkgs[i].HasProviderPriority // k:0 is not written
		if fmt.Sprint(*back[i]) != fmt.Sprint(*pkgs[i]) {
			t.Errorf("package %d: wrote %+v, read back %+v", i, *pkgs[i], *back[i])
		}
	}
}

// diffLines shows the first differing line of two texts.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d: want %q, got %q", i+1, a, b)
		}
	}
	return "identical"
}

func FuzzParseIndex(f *testing.F) {
	f.Add(sampleIndex)
	f.Add("P:a\nV:1\nC:Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=\n\n\nP:b\n")
	f.Add("C:Q2" + strings.Repeat("A", 43) + "=\nP:x\nV:1\nD:a b\nD:c\n")
	f.Add("P:a\nV:1\r\nk:0\nt:5\nx\nZ:zz\nS:18446744073709551616\n")
	for _, name := range []string{"basic.repo", "provides.repo"} {
		if data, err := os.ReadFile(filepath.Join("testdata/apk-tools", name)); err == nil {
			f.Add(string(data))
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		var pkgs []*Package
		err := ReadIndex(strings.NewReader(in), "fuzz", func(p *Package) error {
			pkgs = append(pkgs, p)
			return nil
		})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "apk: fuzz: line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		// Whatever parses and writes, writes canonically: parsing the
		// output and writing again gives the same bytes.
		var out bytes.Buffer
		for _, p := range pkgs {
			if p.Checksum == nil {
				continue
			}
			if err := WriteIndexEntry(&out, p); err != nil {
				if !strings.Contains(err.Error(), "newline") && !strings.Contains(err.Error(), "checksum") {
					t.Fatalf("write %+v: %v", p, err)
				}
				return
			}
		}
		again, err := ParseIndex(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out.String())
		}
		var out2 bytes.Buffer
		for _, p := range again {
			if err := WriteIndexEntry(&out2, p); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatalf("not a fixed point:\n%s\n---\n%s", out.String(), out2.String())
		}
	})
}
