package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/arch"
)

func TestParseValid(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := `name: web
arch: [x86_64, aarch64]
repositories:
  - repo/main
  - "@edge https://dl-cdn.alpinelinux.org/alpine/edge/main"
  - file:///srv/alpine
keys: [keys/]
packages:
  - busybox<1.36
  - so:libz.so.1
  - cmd:ssh
  - foo@edge
`
	s, err := Parse(strings.NewReader(src), "web.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "web" || strings.Join(s.Arch, ",") != "x86_64,aarch64" {
		t.Errorf("name/arch = %q %v", s.Name, s.Arch)
	}
	want := []Repository{
		{URL: filepath.Join(dir, "repo/main")},
		{URL: "https://dl-cdn.alpinelinux.org/alpine/edge/main", Tag: "edge"},
		{URL: "/srv/alpine"},
	}
	if len(s.Repositories) != len(want) {
		t.Fatalf("repositories = %v", s.Repositories)
	}
	for i := range want {
		if s.Repositories[i] != want[i] {
			t.Errorf("repositories[%d] = %+v, want %+v", i, s.Repositories[i], want[i])
		}
	}
	if len(s.Keys) != 1 || s.Keys[0] != filepath.Join(dir, "keys") {
		t.Errorf("keys = %v", s.Keys)
	}
	var got []string
	for _, d := range s.Packages {
		got = append(got, d.String())
	}
	if strings.Join(got, " ") != "busybox<1.36 so:libz.so.1 cmd:ssh foo@edge" {
		t.Errorf("packages = %v", got)
	}
}

func TestDefaultArch(t *testing.T) {
	s, err := Parse(strings.NewReader("name: a\nrepositories: [/r]\npackages: [busybox]\n"), "a.yaml", "/")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Arch) != 1 || s.Arch[0] != arch.Host() {
		t.Errorf("arch = %v, want [%s]", s.Arch, arch.Host())
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown field", "name: a\nrepositories: [/r]\npackages: [x]\nservice: {}\n", `a.yaml:4:1: unknown field "service"`},
		{"bad arch", "name: a\narch: [x86_64, amd64]\nrepositories: [/r]\npackages: [x]\n", `a.yaml:2:16: arch "amd64" is not an Alpine architecture`},
		{"dup arch", "name: a\narch: [x86_64, x86_64]\nrepositories: [/r]\npackages: [x]\n", `a.yaml:2:16: arch "x86_64" listed twice`},
		{"bad package", "name: a\nrepositories: [/r]\npackages:\n  - busybox\n  - \"foo>=\"\n", `a.yaml:5:5: packages:`},
		{"missing name", "repositories: [/r]\npackages: [x]\n", `a.yaml:1:1: missing field "name"`},
		{"missing repos", "name: a\npackages: [x]\n", `missing field "repositories"`},
		{"bad name", "name: a/b\nrepositories: [/r]\npackages: [x]\n", `a.yaml:1:7: name "a/b"`},
		{"bad scheme", "name: a\nrepositories: [ftp://x]\npackages: [x]\n", `a.yaml:2:16: repositories: "ftp://x": unsupported scheme`},
		{"bad pin", "name: a\nrepositories: [\"@edge\"]\npackages: [x]\n", `a.yaml:2:16: repositories: "@edge": a pinned repository`},
		{"missing key", "name: a\nrepositories: [/r]\nkeys: [nokeys/]\npackages: [x]\n", `a.yaml:3:8: keys:`},
		{"not a mapping", "- a\n- b\n", `a.yaml:1: the spec must be a mapping`},
		{"syntax", "name: [a\n", `a.yaml: line`},
		{"duplicate", "name: a\nname: b\nrepositories: [/r]\npackages: [x]\n", `a.yaml:2:`},
		{"empty", "", `a.yaml: empty spec`},
		{"wrong type", "name: {a: b}\nrepositories: [/r]\npackages: [x]\n", `a.yaml:1:7: name: expected a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.src), "a.yaml", t.TempDir())
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("name: a\narch: [x86_64]\nrepositories: [/r, \"@t http://x\"]\npackages: [busybox, so:libc.so=1, \"!foo\"]\n")
	f.Add("name: [a\n")
	f.Add("- a\n")
	f.Add("name: a\nrepositories: [/r]\npackages: [b]\ntimezone: UTC\nservices: {default: [sshd]}\nnetwork: {interfaces: [{name: eth0, address: [10.0.0.2/24], gateway: 10.0.0.1}], dns: [1.1.1.1]}\n" +
		"disk: {size: 1G, boot: [uefi], console: ttyS0}\noci: {env: {A: b}, exposed_ports: [80], tag: x/y:1}\noutputs: [tar]\n" +
		"files: [{dst: /x, content: y, mode: 0644, owner: \"a:b\"}, {dst: /l, symlink: /x}]\nusers: [{name: root, password: $6$a$b}]\n")
	f.Add("contents: {repositories: [/r], packages: [b]}\nentrypoint: {command: \"/bin/sh -c 'a b'\"}\naccounts: {groups: [{groupname: g, gid: 5, members: [u]}], users: [{username: u, uid: 5, gid: 5}], run-as: u}\narchs: [amd64]\npaths: [{path: /d, type: directory, uid: 5, permissions: 0o755}]\n")
	f.Add("name: a\nextends: /nonexistent/base.yaml\n")
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse(strings.NewReader(src), "f.yaml", "/nonexistent")
		if err == nil && (s.Name == "" || len(s.Arch) == 0) {
			t.Fatalf("accepted spec without name or arch: %q", src)
		}
	})
}

func TestInstaller(t *testing.T) {
	dir := t.TempDir()
	mini := filepath.Join(dir, "mini.tar.gz")
	os.WriteFile(mini, []byte("x"), 0o644)
	base := "name: x\nrepositories: [/r]\npackages: [busybox]\n"
	s, err := Parse(strings.NewReader(base+"installer:\n  type: apk-tools\n  minirootfs: mini.tar.gz\n  sha256: "+strings.Repeat("ab", 32)+"\n"), "s.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Installer.Type != "apk-tools" || s.Installer.Minirootfs != mini || s.Installer.SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("%+v", s.Installer)
	}
	for body, want := range map[string]string{
		"installer: apk\n":                               `"apk" is not alpinist or apk-tools`,
		"installer: apk-tools\n":                         "needs a minirootfs",
		"installer:\n  type: apk-tools\n":                "needs minirootfs",
		"installer:\n  minirootfs: https://x/y.tar.gz\n": "URLs are not supported",
		"installer:\n  minirootfs: nope.tar.gz\n":        "no such file",
		"installer:\n  sha256: 12\n":                     "64 hex digits",
		"installer:\n  flavour: x\n":                     `unknown field "flavour"`,
		"installer: [a]\n":                               "expected alpinist or a mapping",
	} {
		_, err := Parse(strings.NewReader(base+body), "s.yaml", dir)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "s.yaml:") {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
}

func TestHostnameAndRun(t *testing.T) {
	base := "name: x\nrepositories: [/r]\npackages: [busybox]\n"
	s, err := Parse(strings.NewReader(base+"hostname: web-1.example.org\nrun:\n  - echo hi\n  - rc-update add sshd\n"), "s.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "web-1.example.org" || len(s.Run) != 2 || s.Run[1] != "rc-update add sshd" {
		t.Errorf("%q %q", s.Hostname, s.Run)
	}
	for body, want := range map[string]string{
		"hostname: -bad\n": `s.yaml:4:11: hostname "-bad"`,
		"hostname: a_b\n":  `hostname "a_b"`,
		"run: {a: b}\n":    "s.yaml:4:6: run:",
		"run:\n  - [a]\n":  "s.yaml:5:5: run: expected a string",
	} {
		if _, err := Parse(strings.NewReader(base+body), "s.yaml", t.TempDir()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
}

func TestAccounts(t *testing.T) {
	base := "name: x\nrepositories: [/r]\npackages: [busybox]\n"
	s, err := Parse(strings.NewReader(base+"groups: [devs, {name: ops, gid: 2001}]\nusers:\n  - name: alice\n    groups: [devs]\n    password: $6$s$h\n  - {name: bob, uid: 1200, shell: /bin/ash, home: /srv/bob}\n"), "s.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Groups) != 2 || s.Groups[1].GID != 2001 || len(s.Users) != 2 || s.Users[0].Home != "/home/alice" || s.Users[0].Shell != "/bin/sh" ||
		s.Users[1].UID != 1200 || s.Users[1].Home != "/srv/bob" || s.Users[0].Password != "$6$s$h" {
		t.Errorf("%+v %+v", s.Groups, s.Users)
	}
	for body, want := range map[string]string{
		"users: [{name: a, password: hunter2}]\n":            "never the password itself",
		"users: [{name: Alice}]\n":                           `"Alice" is not a valid user name`,
		"users: [{name: a, uid: 0}]\n":                       "users.uid",
		"users: [{name: a, colour: red}]\n":                  `users: unknown field "colour"`,
		"users: [{name: a, home: rel}]\n":                    "must be an absolute path",
		"users: [{name: a, ssh_authorized_keys: [hello]}]\n": "OpenSSH public key",
		"groups: [{gid: 5}]\n":                               "a group needs a name",
	} {
		if _, err := Parse(strings.NewReader(base+body), "s.yaml", t.TempDir()); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "s.yaml:") {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
}

// TestSpecFilesBounded: a spec (or a base it extends) is read only when
// it is a regular file, never past 4 MiB, and a file that is not a spec
// (a shadow file parses as YAML) is refused without quoting a byte of it.
func TestSpecFilesBounded(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "shadow")
	os.WriteFile(secret, []byte("root:$6$secretsalt$secrethash:20228:0:99999:7:::\n"), 0o600)
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, []byte("name: x\n"+strings.Repeat("# padding\n", 500_000)), 0o644)
	for _, tc := range []struct{ base, want string }{
		{secret, "not an alpinist spec"},
		{big, "larger than 4194304 bytes"},
		{"/dev/zero", "not a regular file"},
		{dir, "not a regular file"},
	} {
		spec := filepath.Join(dir, "s.yaml")
		os.WriteFile(spec, []byte("name: s\nextends: "+tc.base+"\nrepositories: [/r]\npackages: [busybox]\n"), 0o644)
		_, err := Load(spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("extends %s: %v, want %q (and nothing of the file)", tc.base, err, tc.want)
		}
		if _, err := Load(tc.base); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("load %s: %v, want %q", tc.base, err, tc.want)
		}
	}
}
