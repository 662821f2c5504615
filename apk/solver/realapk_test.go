package solver

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

var (
	realCases = flag.Int("realapk.cases", 600, "number of random cases TestAgainstRealAPK compares")
	realSeed  = flag.Int64("realapk.seed", 20240611, "seed of TestAgainstRealAPK's random cases")
)

// TestAgainstRealAPK generates random repositories and requests (fixed
// seed) and requires the solver to give exactly what the real apk-tools
// 2.14 prints for `apk add --simulate` on an empty root: the same packages,
// versions, pinning tags and order, or the same error report.
func TestAgainstRealAPK(t *testing.T) {
	minirootfs.CanChroot(t)
	root := minirootfs.Copy(t)
	n := *realCases
	if testing.Short() {
		n = min(n, 100)
	}
	rng := rand.New(rand.NewSource(*realSeed))
	var cases []genCase
	var labels []string
	for i := 0; i < n; i++ {
		cases = append(cases, genRandomCase(rng))
		labels = append(labels, fmt.Sprintf("random case %d", i))
	}
	// apk-tools' own cases, in real rather than test mode.
	files, err := filepath.Glob("testdata/apk-tools/*.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		c, err := readAPKTest(file)
		if err != nil {
			t.Fatal(err)
		}
		if c.skip != "" {
			continue
		}
		var repos []Repository
		for _, r := range c.repos {
			repos = append(repos, Repository{Name: r.file, Tag: r.tag, Packages: loadIndex(t, r.file)})
		}
		cases = append(cases, genCase{repos: repos, world: c.world})
		labels = append(labels, file)
	}
	// alpine-base against a 20000-package index.
	cases = append(cases, genCase{repos: largeRepos(20000), world: []string{"busybox", "alpine-base"}})
	labels = append(labels, "large repository")

	outs := runRealAPK(t, root, cases)
	if last := outs[len(outs)-1]; !strings.HasPrefix(last, "(1/22) Installing ") {
		t.Errorf("apk did not install alpine-base from the large repository:\n%s", last)
	}
	failures := 0
	for i, c := range cases {
		got := solveCase(t, c)
		if got != outs[i] {
			failures++
			if failures <= 5 {
				desc := describeRepos(c.repos)
				if len(desc) > 20000 {
					desc = desc[:20000] + "..."
				}
				t.Errorf("%s: apk add %s\nrepositories:\n%s\nours:\n%s\napk:\n%s", labels[i], strings.Join(c.world, " "), desc, got, outs[i])
			}
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d cases differ from apk", failures, len(cases))
	}
}

// solveCase runs our solver on a case and renders the result as apk does.
func solveCase(t testing.TB, c genCase) string {
	t.Helper()
	s, err := New(c.repos, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var world []apk.Dependency
	for _, w := range c.world {
		d, err := parseWorldDep(w)
		if err != nil {
			t.Fatalf("world %q: %v", w, err)
		}
		world = append(world, d)
	}
	return apkOutput(s.Solve(world))
}

func describeRepos(repos []Repository) string {
	var b strings.Builder
	for i, r := range repos {
		fmt.Fprintf(&b, "--- repository %d tag %q\n", i, r.Tag)
		for _, p := range r.Packages {
			if err := apk.WriteIndexEntry(&b, p); err != nil {
				fmt.Fprintf(&b, "(%v)\n", err)
			}
		}
	}
	return b.String()
}

// runRealAPK writes every case's repositories into root and runs the real
// apk once per case inside a single chroot, returning each one's output.
func runRealAPK(t *testing.T, root string, cases []genCase) []string {
	t.Helper()
	var script strings.Builder
	script.WriteString("#!/bin/sh\nmkdir -p /x\n: > /cases/empty\n")
	script.WriteString("/sbin/apk --root /x --initdb --no-network --repositories-file /cases/empty add >/dev/null 2>&1 || echo initdb failed\n")
	for i, c := range cases {
		dir := fmt.Sprintf("/cases/%d", i)
		var repoLines strings.Builder
		for j, r := range c.repos {
			rdir := fmt.Sprintf("%s/r%d", dir, j)
			if err := writeAPKINDEX(filepath.Join(root, rdir, "x86_64", "APKINDEX.tar.gz"), r.Packages); err != nil {
				t.Fatal(err)
			}
			if r.Tag != "" {
				repoLines.WriteString("@" + r.Tag + " ")
			}
			repoLines.WriteString(rdir + "\n")
		}
		if err := os.WriteFile(filepath.Join(root, dir, "repositories"), []byte(repoLines.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&script, "echo '@@@ CASE %d'\n/sbin/apk --root /x --no-network --allow-untrusted --repositories-file %s/repositories --simulate add", i, dir)
		for _, w := range c.world {
			script.WriteString(" '" + w + "'")
		}
		script.WriteString(" 2>&1\n")
	}
	script.WriteString("echo '@@@ END'\n")
	if err := os.WriteFile(filepath.Join(root, "cases", "run.sh"), []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chroot", root, "/bin/sh", "/cases/run.sh")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running apk: %v\n%s", err, out)
	}
	text := string(out)
	if strings.HasPrefix(text, "initdb failed") {
		t.Fatalf("apk --initdb failed:\n%s", text)
	}
	outs := make([]string, len(cases))
	parts := strings.Split(text, "@@@ CASE ")
	if len(parts) != len(cases)+1 {
		t.Fatalf("apk output has %d cases, want %d:\n%s", len(parts)-1, len(cases), text)
	}
	for i, p := range parts[1:] {
		head, body, _ := strings.Cut(p, "\n")
		if head != fmt.Sprint(i) {
			t.Fatalf("apk output: case %q where %d expected", head, i)
		}
		if i == len(cases)-1 {
			body, _, _ = strings.Cut(body, "@@@ END\n")
		}
		outs[i] = body
	}
	return outs
}

// writeAPKINDEX writes an unsigned APKINDEX.tar.gz: a gzip'ed tar holding
// the index text as APKINDEX.
func writeAPKINDEX(path string, pkgs []*apk.Package) error {
	var idx bytes.Buffer
	for _, p := range pkgs {
		if len(p.Checksum) == 0 {
			// apk-tools' .repo cases have no C:, which apk index always
			// writes; name-version stands in for the control hash.
			c := *p
			sum := sha1.Sum([]byte(p.String()))
			c.Checksum = sum[:]
			p = &c
		}
		if err := apk.WriteIndexEntry(&idx, p); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "APKINDEX", Mode: 0o644, Size: int64(idx.Len()), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(idx.Bytes()); err != nil {
		return err
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
