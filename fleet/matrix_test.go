package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keyPEM stands for a key file: the spec loader only needs it to exist.
const keyPEM = "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAK\n-----END PUBLIC KEY-----\n"

// writeTree writes files (path: content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// fleetTree is a matrix of two specs, one extending a base, with keys
// and a files: source directory.
func fleetTree(t *testing.T) string {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"fleet.yaml": "specs: [web.yaml, db/db.yaml]\narch: [x86_64, aarch64, armv7]\n",
		"base.yaml": `repositories: [https://dl-cdn.alpinelinux.org/alpine/v3.19/main]
keys: [keys/]
packages: [alpine-baselayout, busybox]
`,
		"web.yaml": `name: web
extends: base.yaml
arch: [x86_64]
packages: [nginx]
files:
  - {dst: /etc/motd, src: motd}
  - {dst: /usr/local/bin, src: bin}
`,
		"db/db.yaml": `name: db
arch: [x86_64]
repositories: [https://dl-cdn.alpinelinux.org/alpine/v3.19/main]
keys: [../keys/alpine.rsa.pub]
packages: [postgresql16]
`,
		"keys/alpine.rsa.pub": keyPEM,
		"motd":                "welcome\n",
		"bin/hello.sh":        "#!/bin/sh\necho hello\n",
		"bin/data.bin":        "\xff\xfe\x00binary",
		"unrelated.txt":       "not shipped\n",
	})
	return dir
}

func TestParseMatrix(t *testing.T) {
	m, err := ParseMatrix([]byte("specs:\n  - a.yaml\n  - ./sub/b.yaml\narch: [x86_64, aarch64]\n"), "m.yaml", "/d")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Specs) != 2 || m.Specs[0].Rel != "a.yaml" || m.Specs[1].Rel != "sub/b.yaml" || strings.Join(m.Arch, ",") != "x86_64,aarch64" {
		t.Errorf("parsed %+v", m)
	}
	for _, c := range []struct{ text, want string }{
		{"", "empty"},
		{"- a\n", "a mapping"},
		{"specs: [a.yaml]\n", "arch: no arch listed"},
		{"arch: [x86_64]\n", "specs: no spec listed"},
		{"specs: [a.yaml]\narch: [x86_64]\nregistry: r\n", `m.yaml:3: unknown field "registry"`},
		{"specs: [a.yaml]\narch: [mips]\n", `m.yaml:2: arch:`},
		{"specs: [a.yaml]\narch: [x86_64, x86_64]\n", `"x86_64" listed twice`},
		{"specs: a.yaml\narch: [x86_64]\n", "specs: a list is expected"},
		{"specs: [/abs/a.yaml]\narch: [x86_64]\n", "relative to the matrix's directory"},
		{"specs: [../a.yaml]\narch: [x86_64]\n", "inside the matrix's directory"},
		{"specs: [~/a.yaml]\narch: [x86_64]\n", "relative to the matrix's directory"},
		{"specs: [[a]]\narch: [x86_64]\n", "each item is a non-empty string"},
		{"specs: [a.yaml]\narch: [x86_64]\nspecs: [b.yaml]\n", "m.yaml:3: specs: given twice"},
		{"specs: [a.yaml]\narch: [x86_64]\n---\nspecs: []\n", "more than one YAML document"},
		{"specs: [a.yaml\n", "m.yaml"},
	} {
		_, err := ParseMatrix([]byte(c.text), "m.yaml", "/d")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
}

func TestLoadMatrix(t *testing.T) {
	dir := fleetTree(t)
	m, err := LoadMatrix(filepath.Join(dir, "fleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Specs[0].Spec.Name != "web" || m.Specs[1].Spec.Name != "db" {
		t.Errorf("specs %+v", m.Specs)
	}
	for _, c := range []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"fleet.yaml": "specs: [missing.yaml]\narch: [x86_64]\n"}, "missing.yaml"},
		{map[string]string{"fleet.yaml": "specs: [web.yaml, db/db.yaml]\narch: [x86_64]\n", "db/db.yaml": "name: web\nrepositories: [https://x.org/a]\nkeys: [../keys/]\npackages: [a]\n"},
			`web.yaml and db/db.yaml are both named "web"`},
		{map[string]string{"fleet.yaml": "specs: [db/db.yaml]\narch: [x86_64]\n", "db/db.yaml": "name: Web+1\nrepositories: [https://x.org/a]\nkeys: [../keys/]\npackages: [a]\n"},
			`name "Web+1" names its image`},
	} {
		d := fleetTree(t)
		writeTree(t, d, c.files)
		if _, err := LoadMatrix(filepath.Join(d, "fleet.yaml")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.files, err, c.want)
		}
	}
	if _, err := LoadMatrix(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as the matrix: %v", err)
	}
}

// FuzzParseMatrix: any text gives a matrix or an error naming the file,
// never a panic; a matrix has specs inside its directory and arches.
func FuzzParseMatrix(f *testing.F) {
	for _, s := range []string{
		"specs: [a.yaml, b/c.yaml]\narch: [x86_64, aarch64]\n",
		"specs:\n  - a.yaml\narch:\n  - riscv64\n",
		"specs: [../x]\narch: [x86_64]\n",
		"specs: [a]\narch: [x86_64]\nother: 1\n",
		"{specs: [&a a.yaml, *a], arch: [x86]}",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMatrix(data, "m.yaml", "/d")
		if err != nil {
			if !strings.Contains(err.Error(), "m.yaml") {
				t.Errorf("error without the file: %v", err)
			}
			return
		}
		if len(m.Specs) == 0 || len(m.Arch) == 0 {
			t.Errorf("an empty matrix: %+v", m)
		}
		for _, s := range m.Specs {
			if _, err := specRel(s.Rel); err != nil || s.Rel != filepath.ToSlash(filepath.Clean(s.Rel)) {
				t.Errorf("spec %q: %v", s.Rel, err)
			}
		}
	})
}
