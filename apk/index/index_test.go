package index

import (
	"bytes"
	"errors"
	"github.com/alpinist/alpinist/apk/gzmember"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

func genKey(t testing.TB, name string) *sign.Key {
	t.Helper()
	k, err := sign.Generate(name, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func file(p string, mode int64, data string) apkfile.Entry {
	return apkfile.Entry{Path: p, Type: apkfile.TypeReg, Mode: mode, Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }}
}

func deps(s string) []apk.Dependency {
	d, err := apk.ParseDependencies(s)
	if err != nil {
		panic(err)
	}
	return d
}

// testPackages writes three packages to dir and returns their metadata.
func testPackages(t testing.TB, dir string, k *sign.Key, alg ...sign.Algorithm) []*apk.Package {
	t.Helper()
	const bt = 1704067200
	type pkg struct {
		meta    apk.Package
		scripts map[string][]byte
		ents    []apkfile.Entry
	}
	pkgs := []pkg{
		{apk.Package{Name: "greet-lib", Version: "1.0-r0", Arch: "x86_64", Description: "library", License: "MIT", BuildTime: bt,
			Provides: deps("so:libgreet.so.1=1.0")}, nil,
			[]apkfile.Entry{{Path: "usr", Type: apkfile.TypeDir, Mode: 0o755}, {Path: "usr/lib", Type: apkfile.TypeDir, Mode: 0o755},
				file("usr/lib/libgreet.so.1", 0o755, "not really a library\n")}},
		{apk.Package{Name: "greet", Version: "2.1-r4", Arch: "x86_64", Description: "greeter", License: "MIT", BuildTime: bt,
			Depends: deps("so:libgreet.so.1"), Provides: deps("cmd:greet=2.1-r4"), Triggers: []string{"/usr/share/greet.d"}},
			map[string][]byte{
				"post-install": []byte("#!/bin/sh\necho post-install ran > /post-install.out\n"),
				"trigger":      []byte("#!/bin/sh\necho trigger \"$@\" >> /trigger.out\n"),
			},
			[]apkfile.Entry{{Path: "usr", Type: apkfile.TypeDir, Mode: 0o755}, {Path: "usr/bin", Type: apkfile.TypeDir, Mode: 0o755},
				file("usr/bin/greet", 0o755, "#!/bin/sh\necho hi\n"),
				{Path: "usr/bin/hi", Type: apkfile.TypeSymlink, Mode: 0o777, Linkname: "greet"},
				{Path: "usr/bin/greet2", Type: apkfile.TypeLink, Linkname: "usr/bin/greet"},
				{Path: "usr/share", Type: apkfile.TypeDir, Mode: 0o755}, {Path: "usr/share/greet.d", Type: apkfile.TypeDir, Mode: 0o755},
				{Path: "usr/share/greet-spool", Type: apkfile.TypeDir, Mode: 0o1777},
			}},
		{apk.Package{Name: "greet-extra", Version: "2.1-r4", Arch: "x86_64", Description: "hook", License: "MIT", BuildTime: bt,
			InstallIf: deps("greet"), Replaces: deps("greet-old"), ReplacesPriority: 3}, nil,
			[]apkfile.Entry{{Path: "usr", Type: apkfile.TypeDir, Mode: 0o755}, {Path: "usr/share", Type: apkfile.TypeDir, Mode: 0o755},
				{Path: "usr/share/greet.d", Type: apkfile.TypeDir, Mode: 0o755}, file("usr/share/greet.d/extra", 0o644, "extra\n")}},
	}
	var out []*apk.Package
	for _, p := range pkgs {
		opts := apkfile.WriteOptions{Key: k}
		if len(alg) > 0 {
			opts.Alg = alg[0]
		}
		m, _, err := apkfile.WriteFile(dir, &p.meta, p.scripts, p.ents, opts)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	k := genKey(t, "idx")
	pkgs := testPackages(t, t.TempDir(), k)
	Sort(pkgs)
	for _, alg := range []sign.Algorithm{sign.RSA, sign.RSA256, sign.RSA512} {
		var b bytes.Buffer
		if err := Write(&b, "test repo", pkgs, WriteOptions{Key: k, Alg: alg, Mtime: time.Unix(1704067200, 0)}); err != nil {
			t.Fatal(err)
		}
		kr := sign.NewKeyring()
		kr.Add(k.Name, &k.Private.PublicKey)
		desc, got, err := Read(bytes.NewReader(b.Bytes()), kr, "mem")
		if err != nil {
			t.Fatal(err)
		}
		if desc != "test repo" || len(got) != 3 {
			t.Fatalf("desc %q, %d packages", desc, len(got))
		}
		if got[1].Name != "greet-extra" || apk.FormatDependencies(got[1].Replaces) != "greet-old" || got[1].ReplacesPriority != 3 {
			t.Errorf("replaces not carried: %+v", got[1])
		}
		for i := range got {
			var w1, w2 bytes.Buffer
			apk.WriteIndexEntry(&w1, got[i])
			apk.WriteIndexEntry(&w2, pkgs[i])
			if w1.String() != w2.String() {
				t.Errorf("entry %d:\n%s\nwant\n%s", i, w1.String(), w2.String())
			}
		}
		var b2 bytes.Buffer
		Write(&b2, "test repo", pkgs, WriteOptions{Key: k, Alg: alg, Mtime: time.Unix(1704067200, 0)})
		if !bytes.Equal(b.Bytes(), b2.Bytes()) {
			t.Error("index not deterministic")
		}

		// Tampering, wrong and missing keys.
		// Past the signature member, which only the signature check covers.
		sigEnd, err := gzmember.FirstMemberSize(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for off := int(sigEnd); off < b.Len(); off += b.Len()/100 + 1 {
			bad := bytes.Clone(b.Bytes())
			bad[off] ^= 0x20
			if _, _, err := Read(bytes.NewReader(bad), kr, "mem"); err == nil {
				t.Errorf("byte %d flipped: accepted", off)
			}
		}
		other := genKey(t, "other")
		kr2 := sign.NewKeyring()
		kr2.Add(other.Name, &other.Private.PublicKey)
		if _, _, err := Read(bytes.NewReader(b.Bytes()), kr2, "mem"); !errors.Is(err, sign.ErrUntrusted) || !strings.Contains(err.Error(), "mem") {
			t.Errorf("untrusted: %v", err)
		}
		kr3 := sign.NewKeyring()
		kr3.Add(k.Name, &other.Private.PublicKey)
		if _, _, err := Read(bytes.NewReader(b.Bytes()), kr3, "mem"); !errors.Is(err, sign.ErrBadSignature) {
			t.Errorf("bad signature: %v", err)
		}
	}
}

// TestRealApk has the real apk-tools 2.14 of Alpine's minirootfs install
// a repository written by apkfile and index, with signatures checked:
// packages and index signed as .SIGN.RSA. (SHA-1), .SIGN.RSA256. and
// .SIGN.RSA512., each accepted by apk (and refused without the key).
func TestRealApk(t *testing.T) {
	minirootfs.CanChroot(t)
	for _, alg := range []sign.Algorithm{sign.RSA, sign.RSA256, sign.RSA512} {
		t.Run(alg.String(), func(t *testing.T) { realApk(t, alg) })
	}
}

func realApk(t *testing.T, alg sign.Algorithm) {
	root := minirootfs.Copy(t)
	k := genKey(t, "alpinist-compat")
	repo := filepath.Join(root, "repo", "x86_64")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	pkgs := testPackages(t, repo, k, alg)
	Sort(pkgs)
	if err := WriteFile(filepath.Join(repo, FileName), "compat", pkgs, WriteOptions{Key: k, Alg: alg, Mtime: time.Unix(1704067200, 0)}); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(root, "testkeys")
	os.MkdirAll(keys, 0o755)
	os.WriteFile(filepath.Join(keys, k.Name), k.PublicPEM(), 0o644)
	if err := os.WriteFile(filepath.Join(root, "etc/apk/repositories"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Install into the minirootfs itself, so the scripts have its /bin/sh.
	out, err := minirootfs.Apk(root, "--no-network", "--keys-dir", "/testkeys",
		"-X", "/repo", "add", "greet")
	t.Logf("apk add:\n%s", out)
	if err != nil {
		t.Fatalf("apk add failed: %v", err)
	}
	for _, bad := range []string{"UNTRUSTED", "WARNING", "ERROR", "checksum", "BAD"} {
		if strings.Contains(out, bad) {
			t.Errorf("apk printed %q", bad)
		}
	}
	tgt := root
	for _, f := range []string{"usr/bin/greet", "usr/bin/greet2", "usr/lib/libgreet.so.1", "usr/share/greet.d/extra", "post-install.out", "trigger.out"} {
		if _, err := os.Lstat(filepath.Join(tgt, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if l, _ := os.Readlink(filepath.Join(tgt, "usr/bin/hi")); l != "greet" {
		t.Errorf("symlink %q", l)
	}
	a, _ := os.Stat(filepath.Join(tgt, "usr/bin/greet"))
	b, _ := os.Stat(filepath.Join(tgt, "usr/bin/greet2"))
	if !os.SameFile(a, b) {
		t.Error("hard link not kept")
	}
	if st, _ := os.Stat(filepath.Join(tgt, "usr/share/greet-spool")); st == nil || st.Mode()&os.ModeSticky == 0 {
		t.Error("sticky bit lost")
	}
	out, err = minirootfs.Apk(root, "audit", "--system")
	if err != nil || strings.Contains(out, "greet") {
		t.Errorf("apk audit: %v\n%s", err, out)
	}
	out, err = minirootfs.Apk(root, "--keys-dir", "/testkeys", "verify", "/repo/x86_64/greet-2.1-r4.apk")
	if err != nil || !strings.Contains(out, "OK") {
		t.Errorf("apk verify: %v\n%s", err, out)
	}
	// Without our key the real apk refuses the index.
	os.MkdirAll(filepath.Join(root, "target2"), 0o755)
	out, err = minirootfs.Apk(root, "--root", "/target2", "--initdb", "--no-network", "--keys-dir", "/etc/apk/keys",
		"-X", "/repo", "--arch", "x86_64", "add", "greet")
	if err == nil || !strings.Contains(out, "UNTRUSTED") {
		t.Errorf("apk without our key: %v\n%s", err, out)
	}
}
