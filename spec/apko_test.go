package spec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestApkoExample reads testdata/specs/apko-nginx.yaml, apko's complete
// example carried over as data.
func TestApkoExample(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../testdata/specs/apko-nginx.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The example names ../repo/{main,keys}: make them beside a copy.
	os.MkdirAll(filepath.Join(dir, "repo", "main"), 0o755)
	os.MkdirAll(filepath.Join(dir, "repo", "keys"), 0o755)
	os.WriteFile(filepath.Join(dir, "repo", "keys", "alpinist-test.rsa.pub"), []byte("key"), 0o644)
	os.MkdirAll(filepath.Join(dir, "specs"), 0o755)
	s, err := Parse(strings.NewReader(string(data)), "apko-nginx.yaml", filepath.Join(dir, "specs"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		Path:         "apko-nginx.yaml",
		Name:         "apko-nginx",
		Arch:         []string{"x86_64"},
		Repositories: []Repository{{URL: filepath.Join(dir, "repo", "main")}},
		Keys:         []string{filepath.Join(dir, "repo", "keys", "alpinist-test.rsa.pub")},
		Packages:     s.Packages,
		Groups:       []Group{{Name: "nginx", GID: 10000}},
		Users:        []User{{Name: "nginx", UID: 10000, Group: "nginx", Home: "/home/nginx", Shell: "/bin/sh"}},
		Files: []File{
			{Dst: "/run/nginx", Directory: true, Mode: 0o755, DirMode: NoMode, Owner: "10000:10000"},
			{Dst: "/etc/nginx/http.d/default.conf", Hardlink: "/usr/share/alpinist-test/consumer.txt", Mode: 0o644, DirMode: NoMode, Owner: "10000:10000"},
		},
		OCI:      OCI{User: "nginx", Env: map[string]string{"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"}},
		Warnings: s.Warnings,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	if len(s.Packages) != 3 || s.Packages[2].Name != "alpinist-test-consumer" {
		t.Errorf("packages %v", s.Packages)
	}
	if len(s.Warnings) != 2 || !strings.Contains(s.Warnings[0], "apko-nginx.yaml:18:9: entrypoint.type: service-bundle") ||
		!strings.Contains(s.Warnings[1], "entrypoint.services is ignored") {
		t.Errorf("warnings %q", s.Warnings)
	}
}

func TestApkoFields(t *testing.T) {
	dir := t.TempDir()
	s, err := Parse(strings.NewReader(`contents:
  repositories: [/r]
  packages: [busybox]
entrypoint:
  command: /bin/app --name "a b" 'c d'
cmd: --verbose
work-dir: /srv
stop-signal: SIGQUIT
annotations: {org.opencontainers.image.title: t}
volumes: [/data]
accounts:
  groups:
    - {groupname: app, gid: 3000}
    - {groupname: extra, gid: 3001, members: [app]}
  users:
    - {username: app, uid: 3000, gid: 3000, shell: /bin/ash, homedir: /srv}
    - {username: other, uid: 3002}
  run-as: "3000"
archs: [arm64, x86_64, 386]
paths:
  - {path: /tmp/x, type: empty-file, permissions: 0o600}
  - {path: /etc/alt, type: symlink, source: /etc/real}
  - {path: /etc/shadow, type: permissions, permissions: 0640, gid: 42}
vcs-url: https://example.org/x
os-release: {id: x}
`), "app.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.OCI.Entrypoint, "|") != "/bin/app|--name|a b|c d" || s.OCI.Cmd[0] != "--verbose" || s.OCI.WorkDir != "/srv" ||
		s.OCI.StopSignal != "SIGQUIT" || s.OCI.User != "3000" || s.OCI.Volumes[0] != "/data" || s.OCI.Annotations["org.opencontainers.image.title"] != "t" {
		t.Errorf("oci %+v", s.OCI)
	}
	if strings.Join(s.Arch, ",") != "aarch64,x86_64,x86" || s.Name != "app" {
		t.Errorf("arch %v name %q", s.Arch, s.Name)
	}
	wantUsers := []User{
		{Name: "app", UID: 3000, Group: "app", Groups: []string{"extra"}, Home: "/srv", Shell: "/bin/ash"},
		{Name: "other", UID: 3002, Home: "/home/other", Shell: "/bin/sh"},
	}
	if !reflect.DeepEqual(s.Users, wantUsers) {
		t.Errorf("users %+v", s.Users)
	}
	if f := s.Files; len(f) != 3 || !f[0].HasContent || f[0].Mode != 0o600 || f[1].Symlink != "/etc/real" || f[2].Kind() != "permissions" ||
		f[2].Mode != 0o640 || f[2].Owner != "0:42" {
		t.Errorf("files %+v", s.Files)
	}
	if len(s.Warnings) != 2 || !strings.Contains(s.Warnings[0], `app.yaml:24:1: apko field "vcs-url" is ignored`) {
		t.Errorf("warnings %q", s.Warnings)
	}

	for body, want := range map[string]string{
		"contents: {repositories: [/r]}\n":                                                                                 "an apko config needs packages",
		"contents: {repositories: [/r], packages: [a], keyring: [https://k/x.pub]}\n":                                      "alpinist does not download keys",
		"contents: {repositories: [/r], packages: [a]}\narchs: [sparc]\n":                                                  `archs: "sparc" is not an architecture`,
		"contents: {repositories: [/r], packages: [a]}\npaths: [{path: /x, type: fifo}]\n":                                 `type "fifo" is not`,
		"contents: {repositories: [/r], packages: [a]}\npaths: [{path: /x, type: symlink}]\n":                              "a symlink needs source:",
		"contents: {repositories: [/r], packages: [a]}\naccounts: {users: [{username: a, gid: 5}]}\n":                      "gid 5 is not one of accounts.groups",
		"contents: {repositories: [/r], packages: [a]}\naccounts: {groups: [{groupname: g, gid: 5, members: [nobody]}]}\n": "nobody is not one of accounts.users",
		"contents: {repositories: [/r], packages: [a]}\nentrypoint: {command: \"sh 'x\"}\n":                                "unterminated quote",
		"contents: {repositories: [/r], packages: [a], colour: red}\n":                                                     `contents: unknown field "colour"`,
	} {
		_, err := Parse(strings.NewReader(body), "app.yaml", dir)
		if err == nil || !strings.Contains(err.Error(), want) || !posRE.MatchString(err.Error()) {
			t.Errorf("%q: got %v, want %q at file:line:column", body, err, want)
		}
	}
}
