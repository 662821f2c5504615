package apk

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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

C:Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=
P:b
V:1
S:1
I:1
T:
U:
L:
r:a c
q:100

`

func TestIndexRoundTrip(t *testing.T) {
	pkgs, err := ParseIndex(strings.NewReader(sampleIndex))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 {
		t.Fatalf("%d packages", len(pkgs))
	}
	bb := pkgs[0]
	if bb.Name != "busybox" || bb.Size != 509372 || bb.ProviderPriority != 10 || len(bb.Provides) != 3 || bb.BuildTime != 1717003030 || len(bb.InstallIf) != 2 {
		t.Errorf("busybox parsed as %+v", bb)
	}
	if pkgs[1].ReplacesPriority != 100 || len(pkgs[1].Replaces) != 2 {
		t.Errorf("b parsed as %+v", pkgs[1])
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

// The apk-tools test repositories parse; those written in apk's canonical
// form (all of T, U, L present) round-trip byte for byte.
func TestApkToolsRepos(t *testing.T) {
	files, _ := filepath.Glob("solver/testdata/*.repo")
	if len(files) == 0 {
		t.Skip("no apk-tools test repositories in apk/solver/testdata")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseIndexNamed(bytes.NewReader(data), f); err != nil {
			t.Errorf("%v", err)
		}
	}
}

func TestIndexErrors(t *testing.T) {
	for in, want := range map[string]string{
		"P:a\n": "APKINDEX:1: package a without a version",
		"C:Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=\nV:1\n":           "without a name",
		"P:a\nV:1\nC:Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=\nS:x\n": "APKINDEX:4: S: \"x\" is not a non-negative number",
		"P:a\nbogus\n":   "APKINDEX:2: expected \"X:value\"",
		"P:a\nD:foo>=\n": "APKINDEX:2: D: dependency \"foo>=\"",
		"C:Q9abc\n":      "want Q1",
	} {
		_, err := ParseIndex(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseIndex(%q) error %v, want %q", in, err, want)
		}
	}
}

func FuzzParseIndex(f *testing.F) {
	f.Add(sampleIndex)
	f.Add("P:a\nV:1\nC:Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=\n\n\nP:b\n")
	f.Add("C:Q2" + strings.Repeat("A", 43) + "=\nP:x\nV:1\n")
	f.Fuzz(func(t *testing.T, in string) {
		pkgs, err := ParseIndex(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parses writes out and parses back to the same packages.
		var out bytes.Buffer
		for _, p := range pkgs {
			if strings.ContainsAny(p.Name+p.Version+p.Description+p.URL+p.License+p.Origin+p.Maintainer+p.Commit+p.Arch, "\n\r") {
				return
			}
			if err := WriteIndexEntry(&out, p); err != nil {
				t.Fatal(err)
			}
		}
		again, err := ParseIndex(&out)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out.String())
		}
		if len(again) != len(pkgs) {
			t.Fatalf("%d packages became %d", len(pkgs), len(again))
		}
	})
}
