package lock

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func sample(dir string) *File {
	repo := filepath.Join(dir, "repo", "main")
	return &File{Name: "demo", Arches: []Arch{{
		Arch:         "x86_64",
		Repositories: []string{repo, "@edge https://example.org/alpine/edge/main"},
		World:        []string{"busybox", "foo@edge"},
		Packages: []Package{
			{Name: "busybox", Version: "1.36.1-r0", Checksum: "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=", Repository: repo, Size: 10},
			{Name: "foo", Version: "2", Checksum: "Q1EyN5AdpAOBJWKMR89pp/C66o+OE=", Repository: "@edge https://example.org/alpine/edge/main"},
		},
	}}}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "demo.lock")
	f := sample(dir)
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Local repositories are stored relative to the lock file.
	if strings.Contains(string(data), dir) || !strings.Contains(string(data), `"repo/main"`) {
		t.Errorf("lock file holds absolute paths:\n%s", data)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := got.Find("x86_64")
	if !ok {
		t.Fatal("x86_64 missing")
	}
	want := f.Arches[0]
	if a.Repositories[0] != want.Repositories[0] || a.Packages[0].Repository != want.Repositories[0] || a.Packages[1] != want.Packages[1] {
		t.Errorf("read back %+v, want %+v", a, want)
	}
	if _, err := a.Packages[0].ChecksumBytes(); err != nil {
		t.Error(err)
	}
	// Writing is deterministic.
	if err := Write(path, got); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(path)
	if string(again) != string(data) {
		t.Errorf("rewrite differs:\n%s\n%s", data, again)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".demo.lock.*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"version": 2, "arches": []}`: "format version 2",
		`{"version": 1, "arches": [{"arch": "x86_64", "repositories": ["r"], "packages": [{"name": "a", "version": "1", "checksum": "bad", "repository": "r"}]}]}`:                            "a-1: checksum",
		`{"version": 1, "arches": [{"arch": "x86_64", "repositories": ["r"], "packages": [{"name": "a", "version": "1", "checksum": "Q1C4uoV7SdMdDhYg4OCVmI71D8HIA=", "repository": "s"}]}]}`: `repository "s" is not in`,
		`{"version": 1, "extra": 1}`:                       "unknown field",
		`{"version": 1, "arches": [{"repositories": []}]}`: "no arch",
	} {
		_, err := Parse(strings.NewReader(in), "x.lock")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestSet(t *testing.T) {
	f := &File{}
	f.Set(Arch{Arch: "x86_64"})
	f.Set(Arch{Arch: "aarch64"})
	f.Set(Arch{Arch: "x86_64", World: []string{"a"}})
	if len(f.Arches) != 2 || f.Arches[0].Arch != "x86_64" || len(f.Arches[0].World) != 1 {
		t.Errorf("Set: %+v", f.Arches)
	}
}

func TestSystemRepositories(t *testing.T) {
	got := SystemRepositories([]string{"/tmp/a/repo/main", "@edge file:///srv/alpine/testing/", "https://dl-cdn.alpinelinux.org/alpine/v3.22/main", "@c https://example.org/custom"})
	want := []string{
		"# main: a local repository of the build host",
		"# @edge testing: a local repository of the build host",
		"https://dl-cdn.alpinelinux.org/alpine/v3.22/main",
		"@c https://example.org/custom",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if u := URL("@c https://example.org/custom"); u != "https://example.org/custom" {
		t.Errorf("URL of a tagged line: %q", u)
	}
	if u := URL("/srv/main"); u != "/srv/main" {
		t.Errorf("URL of a path: %q", u)
	}
}
