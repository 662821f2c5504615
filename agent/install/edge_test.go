package install

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/index"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// TestEdgeCasesLikeApk holds the installer to apk-tools on what neither
// real set shows, with packages made here on top of Alpine's busybox:
//   - a protected /etc file a script wrote first: the package's goes
//     beside it as .apk-new; one the same as the script's is not written;
//   - same origin: the later package overwrites silently;
//   - replaces_priority: a package that the owner replaces with a higher
//     priority leaves the owner's file in place;
//   - a file owned by a name the target's passwd gives another id;
//   - a directory a script turns into a symlink out of the target.
func TestEdgeCasesLikeApk(t *testing.T) {
	needRoot(t)
	minirootfs.CanChroot(t)
	real := minirootfs.Real(t)
	dir := t.TempDir()
	k, err := sign.Generate("edge", 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	writeKey(t, keys, k)
	repoDir := filepath.Join(dir, "repo")
	text := func(s string) apkfile.Entry {
		return apkfile.Entry{Size: int64(len(s)), Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }}
	}
	file := func(p, content string, mode int64) apkfile.Entry {
		e := text(content)
		e.Path, e.Type, e.Mode = p, apkfile.TypeReg, mode
		return e
	}
	d := func(p string, mode int64) apkfile.Entry {
		return apkfile.Entry{Path: p, Type: apkfile.TypeDir, Mode: mode}
	}
	type pkg struct {
		meta    apk.Package
		scripts map[string][]byte
		ents    []apkfile.Entry
	}
	dep := func(s string) []apk.Dependency {
		deps, err := apk.ParseDependencies(s)
		if err != nil {
			t.Fatal(err)
		}
		return deps
	}
	away := filepath.Join(dir, "away") // on the host
	if err := os.Mkdir(away, 0o755); err != nil {
		t.Fatal(err)
	}
	owned := file("var/lib/edge/owned", "owned by edgeuser\n", 0o640)
	owned.UID, owned.GID, owned.Uname, owned.Gname = 4242, 4243, "edgeuser", "edgeuser"
	pkgs := []pkg{
		{meta: apk.Package{Name: "edge-maker", Depends: dep("busybox")},
			scripts: map[string][]byte{"post-install": []byte("#!/bin/busybox sh\nmkdir -p /etc/edge\necho local > /etc/edge/changed.conf\necho packaged > /etc/edge/same.conf\n" +
				"echo 'edgeuser:x:900:901::/:/sbin/nologin' >> /etc/passwd\necho 'edgeuser:x:901:' >> /etc/group\n")}},
		{meta: apk.Package{Name: "edge-protected", Depends: dep("edge-maker")},
			ents: []apkfile.Entry{d("etc", 0o755), d("etc/edge", 0o755), file("etc/edge/changed.conf", "packaged\n", 0o644), file("etc/edge/same.conf", "packaged\n", 0o644),
				file("etc/edge/new.conf", "new\n", 0o644), d("var", 0o755), d("var/lib", 0o755), d("var/lib/edge", 0o750), owned}},
		{meta: apk.Package{Name: "edge-a", Origin: "edge-src"}, ents: []apkfile.Entry{d("usr", 0o755), d("usr/share", 0o755), file("usr/share/edge-origin", "a\n", 0o644)}},
		{meta: apk.Package{Name: "edge-b", Origin: "edge-src", Depends: dep("edge-a")}, ents: []apkfile.Entry{d("usr", 0o755), d("usr/share", 0o755), file("usr/share/edge-origin", "b\n", 0o644)}},
		{meta: apk.Package{Name: "edge-owner", Replaces: dep("edge-late"), ReplacesPriority: 10},
			ents: []apkfile.Entry{d("usr", 0o755), d("usr/share", 0o755), file("usr/share/edge-prio", "owner\n", 0o644)}},
		{meta: apk.Package{Name: "edge-late", Replaces: dep("edge-owner"), ReplacesPriority: 1, Depends: dep("edge-owner")},
			ents: []apkfile.Entry{d("usr", 0o755), d("usr/share", 0o755), file("usr/share/edge-prio", "late\n", 0o644), file("usr/share/edge-late", "late\n", 0o644)}},
		// A script turns a directory that earlier files went into into a
		// symlink out of the target: a later package's file under it is
		// left out (apk writes it through the link, on the host).
		{meta: apk.Package{Name: "edge-dir"}, ents: []apkfile.Entry{d("opt", 0o755), d("opt/edge", 0o755), file("opt/edge/early", "early\n", 0o644)}},
		{meta: apk.Package{Name: "edge-link", Depends: dep("edge-dir busybox")},
			scripts: map[string][]byte{"post-install": []byte("#!/bin/busybox sh\nrm -r /opt/edge\nln -s " + away + " /opt/edge\n")}},
		{meta: apk.Package{Name: "edge-under", Depends: dep("edge-link")}, ents: []apkfile.Entry{d("opt", 0o755), d("opt/edge", 0o755), file("opt/edge/late", "late\n", 0o644)}},
	}
	var metas []*apk.Package
	for _, p := range pkgs {
		p.meta.Version, p.meta.Arch, p.meta.BuildTime, p.meta.License = "1.0-r0", "x86_64", 1700000000, "MIT"
		m, _, err := apkfile.WriteFile(filepath.Join(repoDir, "x86_64"), &p.meta, p.scripts, p.ents, apkfile.WriteOptions{Key: k, TempDir: dir})
		if err != nil {
			t.Fatalf("%s: %v", p.meta.Name, err)
		}
		metas = append(metas, m)
	}
	index.Sort(metas)
	if err := index.WriteFile(filepath.Join(repoDir, "x86_64", index.FileName), "edge", metas, index.WriteOptions{Key: k, Mtime: time.Unix(1700000000, 0)}); err != nil {
		t.Fatal(err)
	}
	// The keys: Alpine's and ours, in one directory.
	copyKeys(t, filepath.Join(real, "keys"), keys)
	ours := compareWithApk(t, "edge", []string{filepath.Join(real, "repos", "v3.19"), repoDir}, keys,
		[]string{"busybox", "edge-protected", "edge-b", "edge-late", "edge-under"})
	if got, err := os.ReadFile(filepath.Join(away, "late")); err != nil || string(got) != "late\n" {
		t.Errorf("apk did not write opt/edge/late through the link out of its target: %q %v", got, err)
	}
	if l, err := os.Readlink(filepath.Join(ours, "opt/edge")); err != nil || l != away {
		t.Errorf("opt/edge: %q %v, want a link to %s", l, err, away)
	}
	// What apk did, and so did we (not a vacuous sameness).
	for p, want := range map[string]string{
		"etc/edge/changed.conf": "local\n", "etc/edge/changed.conf.apk-new": "packaged\n", "etc/edge/same.conf": "packaged\n",
		"etc/edge/new.conf": "new\n", "usr/share/edge-origin": "b\n", "usr/share/edge-prio": "owner\n", "usr/share/edge-late": "late\n",
	} {
		if got, err := os.ReadFile(filepath.Join(ours, p)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"etc/edge/same.conf.apk-new", "etc/edge/new.conf.apk-new"} {
		if _, err := os.Lstat(filepath.Join(ours, p)); err == nil {
			t.Errorf("%s exists", p)
		}
	}
	if st, err := os.Stat(filepath.Join(ours, "var/lib/edge/owned")); err != nil || st.Sys().(*syscall.Stat_t).Uid != 900 || st.Sys().(*syscall.Stat_t).Gid != 901 {
		t.Errorf("var/lib/edge/owned: %v %v, want owned by 900:901 (edgeuser in the target)", st, err)
	}
}

func writeKey(t *testing.T, dir string, k *sign.Key) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, k.Name), k.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".pub") {
			b, err := os.ReadFile(filepath.Join(from, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(to, e.Name()), b, 0o644)
		}
	}
}
