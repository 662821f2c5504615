package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
)

// TestBuildEveryField builds (x86_64, in a VM under TCG) a spec that uses
// every field of the spec, through a base spec it extends, and checks
// the rootfs tar: accounts, homes, runlevel links, files with their
// modes and owners, timezone, network, console, and what the run step
// wrote after everything else was applied.
func TestBuildEveryField(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	repoDir, _ := filepath.Abs(filepath.Join(td, "repo"))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "base.yaml"), `arch: [aarch64]
repositories: [`+repoDir+`/main]
keys: [`+repoDir+`/keys/]
packages: [alpine-base, busybox>=1.30]
hostname: base-host
groups: [{name: devs, gid: 2000}]
run: ["echo base >> /etc/run-log"]
oci: {env: {LANG: C.UTF-8}}
`, 0o644)
	writeFile(t, filepath.Join(dir, "overlay", "etc", "app", "app.conf"), "port=8080\n", 0o600)
	writeFile(t, filepath.Join(dir, "overlay", "usr", "local", "bin", "app"), "#!/bin/sh\necho app\n", 0o755)
	if err := os.Symlink("app.conf", filepath.Join(dir, "overlay", "etc", "app", "current.conf")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "motd"), "Welcome to the web host\n", 0o644)
	spec := filepath.Join(dir, "web.yaml")
	writeFile(t, spec, `name: web
extends: base.yaml
arch: [x86_64]
packages: [tzdata, `+testrepo.ServicePackage+`]
installer: alpinist
hostname: web
timezone: Europe/Paris
users:
  - name: app
    uid: 1500
    groups: [devs]
    ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIexample app@host"]
  - {name: root, password: $6$salt$rootrootrootroot}
services:
  default: [`+testrepo.ServiceName+`]
files:
  - {src: overlay/, dst: /, owner: app}
  - {src: motd, dst: /etc/motd, mode: 0640, owner: ":devs"}
  - {dst: /etc/issue.net, content: "web\n"}
  - {dst: /var/lib/app, directory: true, mode: 0750, owner: "app:devs"}
  - {dst: /usr/bin/app-link, symlink: /usr/local/bin/app}
  - {dst: /etc/app/hard.conf, hardlink: /etc/app/app.conf}
  - {dst: /etc/hostname, mode: 0600}
network:
  interfaces: [{name: eth0, address: 192.0.2.10/24, gateway: 192.0.2.1}]
  dns: [192.0.2.53]
disk: {console: ttyS1, cmdline: quiet}
oci: {cmd: [/usr/local/bin/app]}
outputs: [tar, tar.zst]
run:
  - echo web >> /etc/run-log
  - "ls -ln /etc/app/app.conf /var/lib/app -d | awk '{print $1, $3, $4, $9}' > /etc/run-step"
  - echo "$SOURCE_DATE_EPOCH" > /etc/run-epoch
`, 0o644)
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", spec, "-o", out, "--cache", t.TempDir())
	// outputs: the tar and its zstd flavour, the same bytes inside.
	plain, err := os.ReadFile(filepath.Join(out, "web-x86_64.tar"))
	if err != nil {
		t.Fatal(err)
	}
	zf, err := os.Open(filepath.Join(out, "web-x86_64.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zr, err := zstd.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if zst, err := io.ReadAll(zr); err != nil || !bytes.Equal(zst, plain) {
		t.Errorf("web-x86_64.tar.zst: %v, %d bytes, want the %d of the tar", err, len(zst), len(plain))
	}
	hs, data := tarIndex(t, filepath.Join(out, "web-x86_64.tar"), "etc/passwd", "etc/group", "etc/shadow", "etc/hostname",
		"etc/timezone", "etc/network/interfaces", "etc/resolv.conf", "etc/inittab", "etc/run-log", "etc/run-step", "etc/run-epoch",
		"etc/motd", "etc/issue.net", "etc/app/app.conf", "home/app/.ssh/authorized_keys")
	// Run steps see the build's SOURCE_DATE_EPOCH: the date of every
	// file they write.
	if h := hs["etc/run-epoch"]; h == nil || strings.TrimSpace(string(data["etc/run-epoch"])) != strconv.FormatInt(h.ModTime.Unix(), 10) {
		t.Errorf("run step's SOURCE_DATE_EPOCH %q, the build's %v", data["etc/run-epoch"], h)
	}
	want := map[string][]string{
		"etc/passwd":                    {"app:x:1500:1500:Linux User,,,:/home/app:/bin/sh\n", "root:x:0:0:"},
		"etc/group":                     {"devs:x:2000:app\n", "app:x:1500:\n"},
		"etc/shadow":                    {"root:$6$salt$rootrootrootroot:", "app:*:"},
		"etc/hostname":                  {"web\n"},
		"etc/timezone":                  {"Europe/Paris\n"},
		"etc/network/interfaces":        {"auto eth0\niface eth0 inet static\n\taddress 192.0.2.10/24\n\tgateway 192.0.2.1\n"},
		"etc/resolv.conf":               {"nameserver 192.0.2.53\n"},
		"etc/inittab":                   {"\nttyS1::respawn:/sbin/getty -L ttyS1 115200 vt100\n"},
		"etc/run-log":                   {"base\nweb\n"},
		"etc/run-step":                  {"-rw-r--r-- 1500 1500 /etc/app/app.conf\n", "drwxr-x--- 1500 2000 /var/lib/app\n"},
		"etc/motd":                      {"Welcome to the web host\n"},
		"etc/issue.net":                 {"web\n"},
		"etc/app/app.conf":              {"port=8080\n"},
		"home/app/.ssh/authorized_keys": {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIexample app@host\n"},
	}
	for file, ws := range want {
		for _, w := range ws {
			if !strings.Contains(string(data[file]), w) {
				t.Errorf("%s lacks %q:\n%s", file, w, data[file])
			}
		}
	}
	type attr struct {
		typ      byte
		mode     int64
		uid, gid int
		link     string
	}
	for name, w := range map[string]attr{
		"home/app":                        {tar.TypeDir, 0o755, 1500, 1500, ""},
		"home/app/.ssh":                   {tar.TypeDir, 0o700, 1500, 1500, ""},
		"home/app/.ssh/authorized_keys":   {tar.TypeReg, 0o600, 1500, 1500, ""},
		"etc/localtime":                   {tar.TypeSymlink, 0o777, 0, 0, "/usr/share/zoneinfo/Europe/Paris"},
		"usr/share/zoneinfo/Europe/Paris": {tar.TypeReg, 0o644, 0, 0, ""},
		"etc/runlevels/default/" + testrepo.ServiceName: {tar.TypeSymlink, 0o777, 0, 0, testrepo.ServiceScript},
		"etc/app":              {tar.TypeDir, 0o755, 1500, 1500, ""},
		"etc/app/app.conf":     {tar.TypeReg, 0o644, 1500, 1500, ""},
		"etc/app/current.conf": {tar.TypeSymlink, 0o777, 1500, 1500, "app.conf"},
		"etc/app/hard.conf":    {tar.TypeLink, 0o644, 1500, 1500, "etc/app/app.conf"},
		"usr/local/bin/app":    {tar.TypeReg, 0o755, 1500, 1500, ""},
		"usr/local":            {tar.TypeDir, 0o755, 0, 0, ""},
		"etc/motd":             {tar.TypeReg, 0o640, 0, 2000, ""},
		"etc/issue.net":        {tar.TypeReg, 0o644, 0, 0, ""},
		"var/lib/app":          {tar.TypeDir, 0o750, 1500, 2000, ""},
		"usr/bin/app-link":     {tar.TypeSymlink, 0o777, 0, 0, "/usr/local/bin/app"},
		"etc/hostname":         {tar.TypeReg, 0o600, 0, 0, ""},
		"etc":                  {tar.TypeDir, 0o755, 0, 0, ""},
	} {
		h := hs[name]
		if h == nil {
			t.Errorf("%s missing", name)
			continue
		}
		got := attr{h.Typeflag, h.Mode & 0o7777, h.Uid, h.Gid, h.Linkname}
		if h.Typeflag == tar.TypeSymlink {
			got.mode = 0o777
		}
		if got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
}

// TestBuildApkoExample builds testdata/specs/apko-nginx.yaml, apko's
// complete example carried over as data: the accounts, the environment,
// the paths; the warning about the s6 service bundle.
func TestBuildApkoExample(t *testing.T) {
	td := generatedRepo(t)
	vmtest.Binary(t, "x86_64")
	out := t.TempDir()
	code, stdout, stderr := cli(t, "build", filepath.Join(td, "specs", "apko-nginx.yaml"), "-o", out, "--cache", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "apko-nginx.yaml:18:9: entrypoint.type: service-bundle") {
		t.Errorf("no warning about the service bundle:\n%s", stderr)
	}
	hs, data := tarIndex(t, filepath.Join(out, "apko-nginx-x86_64.tar"), "etc/passwd", "etc/group")
	if !strings.Contains(string(data["etc/passwd"]), "nginx:x:10000:10000:Linux User,,,:/home/nginx:/bin/sh\n") ||
		!strings.Contains(string(data["etc/group"]), "nginx:x:10000:\n") {
		t.Errorf("accounts:\n%s\n%s", data["etc/passwd"], data["etc/group"])
	}
	if h := hs["run/nginx"]; h == nil || h.Typeflag != tar.TypeDir || h.Uid != 10000 || h.Gid != 10000 || h.Mode&0o7777 != 0o755 {
		t.Errorf("/run/nginx: %+v", h)
	}
	// The hard link and its source are one inode: the later name in the
	// tar is the link.
	a, b := hs["etc/nginx/http.d/default.conf"], hs["usr/share/alpinist-test/consumer.txt"]
	if a == nil || b == nil {
		t.Fatalf("hard link or source missing: %v %v", a, b)
	}
	link, file := a, b
	if a.Typeflag != tar.TypeLink {
		link, file = b, a
	}
	if link.Typeflag != tar.TypeLink || file.Uid != 10000 || file.Mode&0o7777 != 0o644 {
		t.Errorf("hard link %+v, file %+v", link, file)
	}
}
