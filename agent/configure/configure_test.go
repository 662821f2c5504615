package configure

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/alpinist/alpinist/agent/pkgdisk"
)

// target makes a small target root: account files, an inittab with
// Alpine's commented serial line, tzdata's Europe/Paris, one init script.
func target(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("configure sets file owners: run as root (the VM tests in cmd/alpinist cover it unprivileged)")
	}
	dir := t.TempDir()
	files := map[string]string{
		"etc/passwd":                       "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
		"etc/group":                        "root:x:0:root\nshadow:x:42:\nnobody:x:65534:\n",
		"etc/shadow":                       "root:::0:::::\nnobody:!::0:::::\n",
		"etc/inittab":                      "::sysinit:/sbin/openrc sysinit\n# Put a getty on the serial port\n#ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n",
		"etc/securetty":                    "console\ntty1\n",
		"usr/share/zoneinfo/Europe/Paris":  "TZif",
		"etc/init.d/sshd":                  "#!/sbin/openrc-run\n",
		"etc/init.d/networking":            "#!/sbin/openrc-run\n",
		"srv/keep":                         "x",
		"usr/share/alpinist-test/data.txt": "data",
	}
	for p, data := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "root"), 0o700)
	// A symlink that would lead out of the target if followed on the host.
	os.Symlink("/", filepath.Join(dir, "escape"))
	return dir
}

// diskTrees writes cfg's trees to a package disk and returns its reader.
func diskTrees(t *testing.T, cfg pkgdisk.Config, add func(w *pkgdisk.Writer) error) *pkgdisk.Reader {
	var buf bytes.Buffer
	w, err := pkgdisk.NewWriter(&buf, pkgdisk.Manifest{SourceDateEpoch: 1700000000, Config: cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := add(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := pkgdisk.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func read(t *testing.T, dir, p string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func owner(t *testing.T, dir, p string) (int, int, os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(dir, p))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), os.FileMode(st.Mode & 0o7777)
}

func TestApply(t *testing.T) {
	dir := target(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc", "app"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "app", "app.conf"), []byte("port=80\n"), 0o600)
	os.WriteFile(filepath.Join(src, "etc", "app", "run"), []byte("#!/bin/sh\n"), 0o700)
	os.Symlink("app.conf", filepath.Join(src, "etc", "app", "current.conf"))
	cfg := pkgdisk.Config{
		Hostname: "web",
		Timezone: "Europe/Paris",
		Network: &pkgdisk.Network{Interfaces: []pkgdisk.Interface{{Name: "eth0", DHCP: true},
			{Name: "eth1", Addresses: []string{"10.0.0.2/24", "fd00::2/64"}, Gateways: []string{"10.0.0.1"}}}, DNS: []string{"9.9.9.9"}},
		Console: "ttyS0",
		Groups:  []pkgdisk.Group{{Name: "app", GID: 2000}},
		Users: []pkgdisk.User{{Name: "app", UID: 2000, Group: "app", Home: "/home/app", Shell: "/bin/sh"},
			{Name: "root", Shell: "/bin/ash", AuthorizedKeys: []string{"ssh-ed25519 AAAA root@x"}}},
		Files: []pkgdisk.File{
			{Dst: "/", Kind: "copy", Mode: -1, Owner: "app"},
			{Dst: "/etc/motd", Kind: "content", Mode: -1},
			{Dst: "/var/lib/app/cache", Kind: "directory", Mode: 0o2750, Owner: "app:app"},
			{Dst: "/usr/bin/vi", Kind: "symlink", Target: "/bin/busybox", Mode: -1},
			{Dst: "/srv/data.txt", Kind: "hardlink", Target: "/usr/share/alpinist-test/data.txt", Mode: 0o640, Owner: ":shadow"},
			{Dst: "/srv/keep", Kind: "permissions", Mode: 0o600, Owner: "2000:42"},
			{Dst: "/escape/alpinist-configure-test", Kind: "content", Mode: 0o600},
		},
		Services: map[string][]string{"boot": {"networking"}, "default": {"sshd"}},
	}
	trees := diskTrees(t, cfg, func(w *pkgdisk.Writer) error {
		if err := w.AddTree(0, src, -1, -1); err != nil {
			return err
		}
		if err := w.AddContent(1, "Welcome\n", -1); err != nil {
			return err
		}
		return w.AddContent(6, "must stay in the target", -1)
	})
	if err := Apply(dir, cfg, trees, 1700000000, false, io.Discard); err != nil {
		t.Fatal(err)
	}

	checks := map[string]string{
		"etc/hostname":              "web\n",
		"etc/timezone":              "Europe/Paris\n",
		"etc/network/interfaces":    "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n\nauto eth1\niface eth1 inet static\n\taddress 10.0.0.2/24\n\tgateway 10.0.0.1\niface eth1 inet6 static\n\taddress fd00::2/64\n",
		"etc/resolv.conf":           "nameserver 9.9.9.9\n",
		"etc/securetty":             "console\ntty1\nttyS0\n",
		"etc/motd":                  "Welcome\n",
		"etc/app/app.conf":          "port=80\n",
		"root/.ssh/authorized_keys": "ssh-ed25519 AAAA root@x\n",
		"alpinist-configure-test":/* /escape links to / */ "must stay in the target",
		"etc/passwd": "root:x:0:0:root:/root:/bin/ash\nnobody:x:65534:65534:nobody:/:/sbin/nologin\napp:x:2000:2000:Linux User,,,:/home/app:/bin/sh\n",
	}
	for p, want := range checks {
		if got := read(t, dir, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if _, err := os.Stat("/alpinist-configure-test"); err == nil {
		os.Remove("/alpinist-configure-test")
		t.Error("a file was written through the target's symlink to the host's /")
	}
	if !strings.Contains(read(t, dir, "etc/inittab"), "\nttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n") || strings.Contains(read(t, dir, "etc/inittab"), "#ttyS0") {
		t.Errorf("inittab:\n%s", read(t, dir, "etc/inittab"))
	}
	if sh := read(t, dir, "etc/shadow"); !strings.HasPrefix(sh, "root:*:") {
		t.Errorf("root not locked: %q", sh)
	}
	links := map[string]string{
		"etc/localtime":                 "/usr/share/zoneinfo/Europe/Paris",
		"etc/runlevels/boot/networking": "/etc/init.d/networking",
		"etc/runlevels/default/sshd":    "/etc/init.d/sshd",
		"usr/bin/vi":                    "/bin/busybox",
		"etc/app/current.conf":          "app.conf",
	}
	for p, want := range links {
		if got, err := os.Readlink(filepath.Join(dir, p)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", p, got, err, want)
		}
	}
	modes := []struct {
		p        string
		uid, gid int
		mode     os.FileMode
	}{
		{"etc/app", 2000, 2000, 0o755},
		{"etc/app/app.conf", 2000, 2000, 0o644},
		{"etc/app/run", 2000, 2000, 0o755},
		{"etc", 0, 0, 0o755}, // existed: left alone
		{"etc/motd", 0, 0, 0o644},
		{"var/lib/app/cache", 2000, 2000, 0o2750},
		{"var/lib", 0, 0, 0o755},
		{"srv/data.txt", 0, 42, 0o640},
		{"usr/share/alpinist-test/data.txt", 0, 42, 0o640}, // the same inode
		{"srv/keep", 2000, 42, 0o600},
		{"root/.ssh", 0, 0, 0o700},
		{"root/.ssh/authorized_keys", 0, 0, 0o600},
	}
	for _, m := range modes {
		uid, gid, mode := owner(t, dir, m.p)
		if uid != m.uid || gid != m.gid || mode != m.mode {
			t.Errorf("%s: %d:%d %o, want %d:%d %o", m.p, uid, gid, mode, m.uid, m.gid, m.mode)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  pkgdisk.Config
		want string
	}{
		{"zone", pkgdisk.Config{Timezone: "Mars/Olympus"}, "no /usr/share/zoneinfo/Mars/Olympus; add tzdata"},
		{"service", pkgdisk.Config{Services: map[string][]string{"default": {"nginx"}}}, "services: default: nginx: no /etc/init.d/nginx in the target; the installed packages provide: networking, sshd"},
		{"owner", pkgdisk.Config{Files: []pkgdisk.File{{Dst: "/x", Kind: "directory", Mode: -1, Owner: "ghost"}}}, "files: /x: owner ghost: no user ghost"},
		{"group", pkgdisk.Config{Files: []pkgdisk.File{{Dst: "/x", Kind: "directory", Mode: -1, Owner: ":ghosts"}}}, "no group ghosts"},
		{"permissions", pkgdisk.Config{Files: []pkgdisk.File{{Dst: "/nothing", Kind: "permissions", Mode: 0o600}}}, "files: /nothing: nothing there"},
		{"hardlink", pkgdisk.Config{Files: []pkgdisk.File{{Dst: "/x", Kind: "hardlink", Target: "/missing", Mode: -1}}}, "files: /x: link /x to /missing"},
		{"tree", pkgdisk.Config{Files: []pkgdisk.File{{Dst: "/x", Kind: "content", Mode: -1}}}, "its content is missing"},
		// The spec refuses these; the agent refuses them again.
		{"passwd injection", pkgdisk.Config{Users: []pkgdisk.User{{Name: "bob", Home: "/home/bob", Shell: "/bin/sh\nroot2::0:0::/:/bin/sh"}}}, "refusing a field with ':' or a newline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := target(t)
			trees := diskTrees(t, tc.cfg, func(*pkgdisk.Writer) error { return nil })
			err := Apply(dir, tc.cfg, trees, 0, false, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
