package spec

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/version"
	"github.com/alpinist/alpinist/bootdisk"
)

var posRE = regexp.MustCompile(`\.yaml:\d+:\d+: `)

const minimal = "name: x\nrepositories: [/r]\npackages: [busybox]\n"

// parseOK parses minimal+body in dir, failing the test on an error.
func parseOK(t *testing.T, dir, body string) *Spec {
	t.Helper()
	s, err := Parse(strings.NewReader(minimal+body), "s.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// badSpecs checks that each body (after minimal) fails with an error
// holding want and a s.yaml:LINE:COLUMN position.
func badSpecs(t *testing.T, dir string, cases map[string]string) {
	t.Helper()
	for body, want := range cases {
		_, err := Parse(strings.NewReader(minimal+body), "s.yaml", dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", body, err, want)
			continue
		}
		if !posRE.MatchString(err.Error()) {
			t.Errorf("%q: %v has no file:line:column", body, err)
		}
	}
}

func TestSystemFields(t *testing.T) {
	s := parseOK(t, t.TempDir(), `timezone: Europe/Paris
services:
  boot: [networking, hostname]
  default: sshd
network:
  interfaces:
    - {name: eth0, dhcp: true}
    - name: eth1
      address: [192.168.1.10/24, "2001:db8::10/64"]
      gateway: [192.168.1.1, "2001:db8::1"]
  dns: [1.1.1.1]
disk: {size: 1.5G, table: mbr, boot: [bios], console: ttyS1, cmdline: quiet, boot_partition: 256M, compress: true}
outputs: [tar, qcow2]
`)
	if s.Timezone != "Europe/Paris" {
		t.Errorf("timezone %q", s.Timezone)
	}
	if !reflect.DeepEqual(s.Services, map[string][]string{"boot": {"networking", "hostname"}, "default": {"sshd"}}) {
		t.Errorf("services %v", s.Services)
	}
	wantNet := &Network{Interfaces: []Interface{{Name: "eth0", DHCP: true},
		{Name: "eth1", Addresses: []string{"192.168.1.10/24", "2001:db8::10/64"}, Gateways: []string{"192.168.1.1", "2001:db8::1"}}},
		DNS: []string{"1.1.1.1"}}
	if !reflect.DeepEqual(s.Network, wantNet) {
		t.Errorf("network %+v", s.Network)
	}
	if d := s.Disk; d.Size != 3<<29 || d.Table != "mbr" || d.Boot[0] != "bios" || bootdisk.ConsoleFor(d.Console, "x86_64") != "ttyS1" || d.Cmdline != "quiet" || !d.SeparateBoot || d.BootSize != 256<<20 || !d.Compress {
		t.Errorf("disk %+v", d)
	}
	if bootdisk.ConsoleFor("", "aarch64") != "ttyAMA0" || bootdisk.ConsoleFor("none", "x86_64") != "" {
		t.Error("console defaults")
	}
	if strings.Join(s.Outputs, ",") != "tar,qcow2" {
		t.Errorf("outputs %v", s.Outputs)
	}
	badSpecs(t, t.TempDir(), map[string]string{
		"timezone: ../etc/passwd\n":                                                       `s.yaml:4:11: timezone "../etc/passwd"`,
		"services: [sshd]\n":                                                              "s.yaml:4:11: services: expected a mapping",
		"services: {multiuser: [sshd]}\n":                                                 `s.yaml:4:12: services: unknown runlevel "multiuser"`,
		"services: {default: [sshd, sshd]}\n":                                             "s.yaml:4:28: services.default: sshd listed twice",
		"services: {default: [a/b]}\n":                                                    `"a/b" is not a service name`,
		"network: {interfaces: [{dhcp: true}]}\n":                                         "an interface needs a name",
		"network: {interfaces: [{name: eth0}]}\n":                                         "eth0: give dhcp: true or an address",
		"network: {interfaces: [{name: lo, dhcp: true}]}\n":                               "lo is always configured",
		"network: {interfaces: [{name: e, address: 10.0.0.1}]}\n":                         "not an address with a prefix length",
		"network: {interfaces: [{name: e, dhcp: maybe}]}\n":                               `"maybe" is not true or false`,
		"network: {dns: [one.one]}\n":                                                     `network.dns: "one.one" is not an IP address`,
		"network: {interfaces: [{name: e, dhcp: true, gateway: [10.0.0.1, 10.0.0.2]}]}\n": "at most one gateway per address family",
		"network: {wifi: yes}\n":                                                          `network: unknown field "wifi"`,
		"disk: {size: big}\n":                                                             `disk.size: "big" is not a size`,
		"disk: {boot_partition: huge}\n":                                                  `disk.boot_partition: "huge" is not a size such as 512M, 2G or 1.5GiB (or auto)`,
		"disk: {compress: zstd}\n":                                                        `disk.compress: "zstd" is not true or false`,
		"disk: {boot_partition: 1M}\n":                                                    "below the 16 MiB",
		"disk: {table: gpt2}\n":                                                           `disk.table: "gpt2" is not gpt or mbr`,
		"disk: {boot: [coreboot]}\n":                                                      `disk.boot: "coreboot" is not bios, uefi or ieee1275`,
		"disk: {console: /dev/ttyS0}\n":                                                   "is not a tty name",
		"arch: [aarch64]\ndisk: {boot: [bios]}\n":                                         "bios boots x86 and x86_64 only, not aarch64",
		"arch: [x86_64]\ndisk: {boot: [ieee1275]}\n":                                      "ieee1275 (Open Firmware) boots ppc64le only, not x86_64",
		"arch: [ppc64le]\ndisk: {boot: [uefi]}\n":                                         "ppc64le boots with ieee1275 (GRUB on Open Firmware) only",
		"arch: [x86_64, riscv64]\ndisk: {boot: [bios]}\n":                                 "not riscv64; add uefi",
		"outputs: [floppy]\n":                                                             `outputs: unknown output "floppy"`,
		"outputs: [tar, tar]\n":                                                           "outputs: tar listed twice",
		"oci: {env: {1A: x}}\n":                                                           `oci.env: "1A" is not an environment variable name`,
		"oci: {exposed_ports: [http]}\n":                                                  `"http" is not PORT`,
		"oci: {workdir: app}\n":                                                           "must be an absolute path",
		"oci: {stop_signal: TERM}\n":                                                      "is not a signal",
		"oci: {tag: Bad:Tag}\n":                                                           "is not an image reference",
		"oci: {entrypoint: {a: b}}\n":                                                     "oci.entrypoint: expected a list",
		"users: [{name: root, uid: 5}]\n":                                                 "root exists already",
		"users: [{name: root, groups: [wheel]}]\n":                                        "root exists already",
		"users: [{name: root, password: $6$a$b, x: 1}]\n":                                 `users: unknown field "x"`,
	})
}

func TestOCI(t *testing.T) {
	s := parseOK(t, t.TempDir(), `oci:
  entrypoint: [/bin/sh, -c]
  cmd: echo hi
  env: {LANG: C.UTF-8, PATH: /bin}
  workdir: /srv
  user: "1000:1000"
  labels: {org.example.team: web}
  annotations: {org.opencontainers.image.title: web}
  exposed_ports: [80, 53/udp]
  volumes: [/data]
  stop_signal: SIGQUIT
  tag: example.org:5000/web:1.0
`)
	o := s.OCI
	if strings.Join(o.Entrypoint, " ") != "/bin/sh -c" || o.Cmd[0] != "echo hi" || o.Env["LANG"] != "C.UTF-8" || o.WorkDir != "/srv" ||
		o.User != "1000:1000" || o.Labels["org.example.team"] != "web" || strings.Join(o.ExposedPorts, ",") != "80/tcp,53/udp" ||
		o.Volumes[0] != "/data" || o.StopSignal != "SIGQUIT" || o.Tag != "example.org:5000/web:1.0" {
		t.Errorf("%+v", o)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(p, data string, mode os.FileMode) {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("overlay/etc/motd", "hi\n", 0o644)
	write("app.sh", "#!/bin/sh\n", 0o755)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link-out"))
	os.Symlink("overlay", filepath.Join(dir, "link-in"))

	s := parseOK(t, dir, `files:
  - {src: overlay/, dst: /, dir_mode: 0750}
  - {src: app.sh, dst: /usr/local/bin/app, owner: "app:app", mode: 0o700}
  - {src: link-in, dst: /srv/in}
  - {src: `+filepath.Join(outside, "secret")+`, dst: /etc/secret, mode: 600}
  - {dst: /etc/issue, content: "Welcome\n"}
  - {dst: /var/lib/app/, directory: true, mode: "2770", owner: ":app"}
  - {dst: /usr/bin/vi, symlink: /bin/busybox}
  - {dst: /usr/bin/view, hardlink: /usr/bin/vi}
  - {dst: /etc/shadow, mode: 0640, owner: "0:42"}
`)
	want := []File{
		{Dst: "/", Src: filepath.Join(dir, "overlay"), Mode: NoMode, DirMode: 0o750},
		{Dst: "/usr/local/bin/app", Src: filepath.Join(dir, "app.sh"), Mode: 0o700, DirMode: NoMode, Owner: "app:app"},
		{Dst: "/srv/in", Src: filepath.Join(dir, "overlay"), Mode: NoMode, DirMode: NoMode},
		{Dst: "/etc/secret", Src: filepath.Join(outside, "secret"), Mode: 0o600, DirMode: NoMode},
		{Dst: "/etc/issue", Content: "Welcome\n", HasContent: true, Mode: NoMode, DirMode: NoMode},
		{Dst: "/var/lib/app", Directory: true, Mode: 0o2770, DirMode: NoMode, Owner: ":app"},
		{Dst: "/usr/bin/vi", Symlink: "/bin/busybox", Mode: NoMode, DirMode: NoMode},
		{Dst: "/usr/bin/view", Hardlink: "/usr/bin/vi", Mode: NoMode, DirMode: NoMode},
		{Dst: "/etc/shadow", Mode: 0o640, DirMode: NoMode, Owner: "0:42"},
	}
	if !reflect.DeepEqual(s.Files, want) {
		t.Errorf("files:\n got %+v\nwant %+v", s.Files, want)
	}
	kinds := []string{"copy", "copy", "copy", "copy", "content", "directory", "symlink", "hardlink", "permissions"}
	for i, f := range s.Files {
		if f.Kind() != kinds[i] {
			t.Errorf("%s: kind %s, want %s", f.Dst, f.Kind(), kinds[i])
		}
	}
	badSpecs(t, dir, map[string]string{
		"files: [{src: link-out, dst: /etc/x}]\n":             `"link-out" is outside the spec's directory`,
		"files: [{src: ../x, dst: /etc/x}]\n":                 "files.src:",
		"files: [{src: missing, dst: /x}]\n":                  "no such file",
		"files: [{src: app.sh}]\n":                            "an entry needs dst:",
		"files: [{src: app.sh, dst: etc/x}]\n":                "must be an absolute path in the target",
		"files: [{src: app.sh, dst: /a/../b}]\n":              "without . or .. parts",
		"files: [{src: app.sh, content: x, dst: /x}]\n":       "give only one of",
		"files: [{dst: /x}]\n":                                "/x: give src, content",
		"files: [{dst: /x, content: a, mode: 999}]\n":         `files.mode: "999" is not an octal mode`,
		"files: [{dst: /x, content: a, owner: \"a:b:c\"}]\n":  "files.owner",
		"files: [{dst: /x, content: a, dir_mode: 0700}]\n":    "dir_mode is for the directories copied",
		"files: [{dst: /x, symlink: /y, mode: 0644}]\n":       "a symlink has no mode",
		"files: [{dst: /x, hardlink: y}]\n":                   "must be an absolute path in the target",
		"files: [{dst: /x, content: [a]}]\n":                  "files.content: expected a string",
		"files: [{dst: /x, directory: true, colour: red}]\n":  `files: unknown field "colour"`,
		"files: [/etc/motd]\n":                                "files: expected a mapping",
		"files: [{dst: /x, symlink: /y, directory: true}]\n":  "give only one of",
		"files: [{dst: /x, content: a, owner: \"Root\"}]\n":   "files.owner",
		"files: [{src: overlay/etc/motd, dst: /, mode: x}]\n": "is not an octal mode",
	})
}

func TestExtends(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "base", "keys"), 0o755)
	os.MkdirAll(filepath.Join(dir, "keys"), 0o755)
	os.WriteFile(filepath.Join(dir, "base", "motd"), []byte("hi"), 0o644)
	os.WriteFile(filepath.Join(dir, "base", "base.yaml"), []byte(`arch: [x86_64]
repositories: [repo]
keys: [keys/]
packages: [busybox, openssh<9]
hostname: base
users: [{name: app, uid: 1000}, {name: ops}]
services: {default: [sshd]}
files: [{src: motd, dst: /etc/motd}]
run: ["echo base"]
oci: {env: {A: "1", B: "2"}, cmd: [sh]}
disk: {size: 1G, boot: [uefi], compress: true}
wsl: {user: {default: app}, interop: {enabled: false}}
`), 0o644)
	os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(`name: web
extends: base/base.yaml
arch: [aarch64]
repositories: [repo2, base/repo]
keys: [keys/]
packages: [nginx, openssh>=9]
users: [{name: app, uid: 2000, shell: /bin/ash}]
services: {default: [nginx, sshd], boot: [networking]}
run: ["echo web"]
oci: {env: {B: "3"}, user: app}
disk: {table: mbr, boot_partition: auto, compress: false}
wsl: {user: {default: root}, boot: {systemd: true}}
`), 0o644)
	s, err := Load(filepath.Join(dir, "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	for _, d := range s.Packages {
		pkgs = append(pkgs, d.String())
	}
	var users []string
	for _, u := range s.Users {
		users = append(users, u.Name+":"+u.Shell)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", s.Name, "web"},
		{"arch", s.Arch, []string{"aarch64"}},
		{"repositories", []Repository{{URL: filepath.Join(dir, "base/repo")}, {URL: filepath.Join(dir, "repo2")}}, s.Repositories},
		{"keys", s.Keys, []string{filepath.Join(dir, "base/keys"), filepath.Join(dir, "keys")}},
		{"packages", pkgs, []string{"busybox", "openssh>=9", "nginx"}},
		{"hostname", s.Hostname, "base"},
		{"users", users, []string{"app:/bin/ash", "ops:/bin/sh"}},
		{"uid", s.Users[0].UID, 2000},
		{"services", s.Services, map[string][]string{"default": {"sshd", "nginx"}, "boot": {"networking"}}},
		{"files", s.Files[0].Src, filepath.Join(dir, "base", "motd")},
		{"run", s.Run, []string{"echo base", "echo web"}},
		{"env", s.OCI.Env, map[string]string{"A": "1", "B": "3"}},
		{"cmd", s.OCI.Cmd, []string{"sh"}},
		{"wsl", s.WSL, WSL{"user": {"default": "root"}, "interop": {"enabled": "false"}, "boot": {"systemd": "true"}}},
		{"user", s.OCI.User, "app"},
		{"disk", *s.Disk, Disk{Size: 1 << 30, Table: "mbr", Boot: []string{"uefi"}, SeparateBoot: true, CompressSet: true}},
		{"extends", s.Extends, filepath.Join(dir, "base", "base.yaml")},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}

	// Errors: in the base (named with its own file), a cycle, a missing
	// base, and a required field neither gives.
	os.WriteFile(filepath.Join(dir, "bad-base.yaml"), []byte("packages: [busybox]\nhostname: -x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("name: a\nextends: b.yaml\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("extends: a.yaml\n"), 0o644)
	for body, want := range map[string]string{
		"name: c\nrepositories: [/r]\nextends: bad-base.yaml\n":              "bad-base.yaml:2:11: hostname",
		"name: c\nextends: a.yaml\n":                                         "extends itself",
		"name: c\nextends: nothere.yaml\n":                                   "c.yaml:2:10: extends:",
		"name: c\nextends: base/base.yaml\npackages: []\nrepositories: []\n": "",
		"extends: base/base.yaml\n":                                          `c.yaml:1:1: missing field "name"`,
	} {
		os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(body), 0o644)
		_, err := Load(filepath.Join(dir, "c.yaml"))
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
}

func TestWSL(t *testing.T) {
	dir := t.TempDir()
	s := parseOK(t, dir, `wsl:
  user: {default: alice}
  boot: {systemd: no, command: "/sbin/openrc default"}
  network: {hostname: web, generateResolvConf: off}
`)
	want := `# /etc/wsl.conf, written by alpinist from the spec's wsl section.

[boot]
command = "/sbin/openrc default"
systemd = false

[network]
generateResolvConf = false
hostname = web

[user]
default = alice
`
	if got := string(s.WSL.Conf()); got != want {
		t.Errorf("wsl.conf:\n%s\nwant:\n%s", got, want)
	}
	badSpecs(t, dir, map[string]string{
		"wsl: [user]\n":                   "wsl: expected a mapping of wsl.conf sections",
		"wsl: {wsl2: {memory: 4GB}}\n":    `wsl: unknown wsl.conf section "wsl2"`,
		"wsl: {user: {name: x}}\n":        `wsl.user: unknown key "name" (known: default)`,
		"wsl: {boot: {systemd: maybe}}\n": `wsl.boot.systemd: "maybe" is not true or false`,
		"wsl: {user: {default: [a]}}\n":   "wsl.user.default: expected a string",
		"wsl: {user: x}\n":                "wsl.user: expected a mapping",
		"wsl: {user: {}, user: {}}\n":     "given twice",
		"wsl: {interop: {enabled: 1}}\n":  `wsl.interop.enabled: "1" is not true or false`,
	})
}

func TestBootFor(t *testing.T) {
	for _, tc := range []struct {
		boot      []string
		arch      string
		want      []string
		loaders   string
		worldTail string
	}{
		{nil, "x86_64", []string{"bios", "uefi"}, "syslinux grub-efi", "busybox syslinux grub-efi"},
		{nil, "aarch64", []string{"uefi"}, "grub-efi", "busybox grub-efi"},
		{[]string{"bios"}, "x86_64", []string{"bios"}, "syslinux", "busybox syslinux"},
		{[]string{"bios", "uefi"}, "aarch64", []string{"uefi"}, "grub-efi", "busybox grub-efi"},
		{[]string{"bios"}, "riscv64", []string{}, "", "busybox"},
	} {
		d := &Disk{Boot: tc.boot}
		if got := bootdisk.Firmware(d.Boot, tc.arch); !slices.Equal(got, tc.want) {
			t.Errorf("%v on %s: %v, want %v", tc.boot, tc.arch, got, tc.want)
		}
		if got := strings.Join(bootdisk.New(d, tc.arch).Packages(), " "); got != tc.loaders {
			t.Errorf("%v on %s: loaders %q, want %q", tc.boot, tc.arch, got, tc.loaders)
		}
		s := &Spec{Packages: []apk.Dependency{{Name: "busybox"}}, Disk: d}
		var names []string
		for _, w := range s.World(tc.arch) {
			names = append(names, w.Name)
		}
		if got := strings.Join(names, " "); got != tc.worldTail {
			t.Errorf("%v on %s: world %q, want %q", tc.boot, tc.arch, got, tc.worldTail)
		}
	}
	// A loader the packages name (with a version) is not added again,
	// and the spec's own list is not changed.
	s := &Spec{Packages: []apk.Dependency{{Name: "grub-efi", Op: version.Greater | version.Equal, Version: "2.06"}}, Disk: &Disk{}}
	if w := s.World("aarch64"); len(w) != 1 || w[0].Version != "2.06" {
		t.Errorf("world %+v", w)
	}
	if w := s.World("x86_64"); len(w) != 2 || len(s.Packages) != 1 {
		t.Errorf("world %+v, packages %+v", w, s.Packages)
	}
	if w := (&Spec{Packages: s.Packages}).World("x86_64"); len(w) != 1 {
		t.Errorf("no disk, world %+v", w)
	}
}

// TestCloud: cloud: installs tiny-cloud-CLOUD and enables tiny-cloud's
// services as tiny-cloud --enable does (a -NAME leaves one out); an
// unknown cloud is an error that lists the known ones.
func TestCloud(t *testing.T) {
	s := parseOK(t, t.TempDir(), "cloud: nocloud\nservices: {default: [-tiny-cloud-final, sshd]}\n")
	var world []string
	for _, d := range s.World("x86_64") {
		world = append(world, d.Name)
	}
	if strings.Join(world, " ") != "busybox tiny-cloud-nocloud" {
		t.Errorf("world %v", world)
	}
	named, _ := s.ServicesFor()
	if strings.Join(named["boot"], " ") != "tiny-cloud-boot" || strings.Join(named["default"], " ") != "tiny-cloud-early tiny-cloud-main sshd" {
		t.Errorf("services %v", named)
	}
	if _, err := Parse(strings.NewReader(minimal+"cloud: heroku\n"), "s.yaml", t.TempDir()); err == nil || !strings.Contains(err.Error(), "nocloud, alpine, aws") {
		t.Errorf("an unknown cloud: %v", err)
	}
}
