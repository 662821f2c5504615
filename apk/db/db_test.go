package db

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"io"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
)

const stanzaHead = "C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\nP:foo\nV:1.0-r0\n"

func TestReadInstalledErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{stanzaHead + "M:0:0:755\n", "line 4: M: permissions outside a directory"},
		{stanzaHead + "R:x\n", "line 4: R: file outside a directory"},
		{stanzaHead + "F:etc\na:0:0:644\n", "line 5: a: permissions outside a file"},
		{stanzaHead + "F:etc\nZ:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\n", "line 5: Z: checksum outside a file"},
		{stanzaHead + "F:etc\nR:x\nF:usr\nZ:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\n", "line 7: Z: checksum outside a file"},
		{stanzaHead + "F:etc\nR:x\nZ:Q2qKcZ+j23xssAXmgQhkOO8dHnbWw=\n", "line 6: Z:"},
		{stanzaHead + "F:etc\nR:x\nZ:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=x\n", "line 6: Z:"},
		{stanzaHead + "F:etc\nM:0:0\n", "line 5: M:"},
		{stanzaHead + "F:etc\nM:0:0:789\n", "line 5: M:"},
		{stanzaHead + "F:etc\nM:-1:0:755\n", "line 5: M:"},
		{stanzaHead + "F:etc\nM:0:0:755:nope\n", "line 5: M: xattr"},
		{stanzaHead + "F:etc\nM:4294967296:0:755\n", "line 5: M:"},
		{stanzaHead + "F:etc\nF:etc\n", "line 5: F: directory \"etc\" listed twice"},
		{stanzaHead + "F:etc\nR:x\nR:x\n", "line 6: R: file \"x\" listed twice"},
		{stanzaHead + "F:/etc\n", "line 4: F:"},
		{stanzaHead + "F:etc/\n", "line 4: F:"},
		{stanzaHead + "F:etc\nR:a/b\n", "line 5: R:"},
		{stanzaHead + "F:etc\nR:\n", "line 5: R:"},
		{stanzaHead + "f:fz\n", "line 4: f: unknown flag 'z'"},
		{stanzaHead + "q:x\n", "line 4: q:"},
		{stanzaHead + "r:foo>=\n", "line 4: r:"},
		{stanzaHead + "y:new\n", "line 4: unknown field 'y'"},
		{stanzaHead + "X:new\n", "line 4: unknown field 'X'"},
		{"C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\nF:etc\n", "line 2: F: directory before the package name"},
		{"\n\nP:foo\nV:1\n", "line 3: package foo-1: want a SHA-1 checksum"},
		{"C:Q2" + strings.Repeat("A", 43) + "=\nP:foo\nV:1\n", "line 1: package foo-1: want a SHA-1"},
		{"C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\nV:1\n", "line 1: package without a name"},
		{"C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\nP:foo\n", "line 1: package foo without a version"},
		{stanzaHead + "S:-1\n", "line 4: "},
		{stanzaHead + "oops\n", "line 4: "},
	} {
		_, err := ReadInstalled(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "installed") {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
}

// A package using every installed-only entry, in the order apk writes
// them, reads and writes back unchanged.
func TestInstalledAllEntries(t *testing.T) {
	in := stanzaHead + "A:x86_64\nS:1\nI:2\nT:desc\nU:url\nL:MIT\nD:bar\n" +
		"r:old-foo other<2\nq:10\ns:edge\nf:fsx\n" +
		"F:\nR:rootfile\n" +
		"F:etc\nM:0:42:2750\nR:a\na:1:2:4755:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\nZ:0123456789abcdef0123456789abcdef\n" +
		"R:b\nZ:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\n" +
		"F:etc/x\nM:0:0:755:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\n\n" +
		stanzaHead + "S:0\nI:0\nT:\nU:\nL:\n\n"
	pkgs, err := ReadInstalled(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 {
		t.Fatalf("%d packages", len(pkgs))
	}
	p := pkgs[0]
	if !p.BrokenFiles || !p.BrokenScript || !p.BrokenXattr || p.RepositoryTag != "edge" ||
		p.Package.ReplacesPriority != 10 || len(p.Package.Replaces) != 2 || len(p.Dirs) != 3 ||
		p.Dirs[0].Name != "" || p.Dirs[1].ACL.GID != 42 || p.Dirs[1].ACL.Mode != 0o2750 ||
		p.Dirs[1].Files[0].ACL.Mode != 0o4755 || len(p.Dirs[1].Files[0].Checksum) != 16 ||
		p.Dirs[1].Files[1].ACL != nil || p.Dirs[2].ACL.XattrChecksum == nil {
		t.Errorf("parsed %+v", p)
	}
	var buf bytes.Buffer
	if err := WriteInstalled(&buf, pkgs); err != nil {
		t.Fatal(err)
	}
	if buf.String() != in {
		t.Errorf("wrote\n%s\nwant\n%s", buf.String(), in)
	}
	// The reader streams.
	ir := NewInstalledReader(strings.NewReader(in))
	for i := 0; i < 2; i++ {
		if _, err := ir.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ir.Next(); err != io.EOF {
		t.Errorf("after the last package: %v", err)
	}
}

// Default permissions are not written, as in apk, even when set
// explicitly; modes lose their file type bits.
func TestWriteInstalledDefaults(t *testing.T) {
	sum := sha1.Sum(nil)
	in := &Installed{Package: apk.Package{Name: "a", Version: "1", Checksum: sum[:]}, Dirs: []Dir{
		{Name: "etc", ACL: &ACL{Mode: 0o40755}, Files: []File{{Name: "x", ACL: &ACL{Mode: 0o100644}}, {Name: "y", ACL: &ACL{Mode: 0o100600}}}},
	}}
	var buf bytes.Buffer
	if err := WriteInstalledEntry(&buf, in); err != nil {
		t.Fatal(err)
	}
	want := "C:Q12jmj7l5rSw0yVb/vlWAYkK/YBwk=\nP:a\nV:1\nS:0\nI:0\nT:\nU:\nL:\nF:etc\nR:x\nR:y\na:0:0:600\n\n"
	if buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
}

func TestWriteInstalledRefuses(t *testing.T) {
	sum := sha1.Sum(nil)
	good := func() *Installed {
		return &Installed{Package: apk.Package{Name: "a", Version: "1", Checksum: sum[:]},
			Dirs: []Dir{{Name: "etc", Files: []File{{Name: "x"}}}}}
	}
	for name, mutate := range map[string]func(*Installed){
		"sha256 package":  func(in *Installed) { in.Package.Checksum = make([]byte, 32) },
		"no checksum":     func(in *Installed) { in.Package.Checksum = nil },
		"newline in tag":  func(in *Installed) { in.RepositoryTag = "a\nb" },
		"newline in dep":  func(in *Installed) { in.Package.Replaces = []apk.Dependency{{Name: "a\nP:b"}} },
		"duplicate dir":   func(in *Installed) { in.Dirs = append(in.Dirs, Dir{Name: "etc"}) },
		"duplicate file":  func(in *Installed) { in.Dirs[0].Files = append(in.Dirs[0].Files, File{Name: "x"}) },
		"slash in file":   func(in *Installed) { in.Dirs[0].Files[0].Name = "a/b" },
		"absolute dir":    func(in *Installed) { in.Dirs[0].Name = "/etc" },
		"newline in dir":  func(in *Installed) { in.Dirs[0].Name = "e\ntc" },
		"sha256 file":     func(in *Installed) { in.Dirs[0].Files[0].Checksum = make([]byte, 32) },
		"bad xattr sum":   func(in *Installed) { in.Dirs[0].ACL = &ACL{XattrChecksum: []byte{1}} },
		"negative uid":    func(in *Installed) { in.Dirs[0].Files[0].ACL = &ACL{UID: -1} },
		"negative q":      func(in *Installed) { in.Package.ReplacesPriority = -1 },
		"newline in desc": func(in *Installed) { in.Package.Description = "a\nb" },
	} {
		in := good()
		if err := WriteInstalledEntry(io.Discard, in); err != nil {
			t.Fatalf("%s: unmodified: %v", name, err)
		}
		mutate(in)
		if err := WriteInstalledEntry(io.Discard, in); err == nil {
			t.Errorf("%s: written", name)
		}
	}
}

func TestACLString(t *testing.T) {
	for _, c := range []struct {
		acl  ACL
		want string
	}{
		{ACL{Mode: 0o755}, "0:0:755"},
		{ACL{UID: 1000, GID: 42, Mode: 0o104755}, "1000:42:4755"},
		{ACL{Mode: 0}, "0:0:0"},
		{ACL{Mode: 0o1777, XattrChecksum: make([]byte, 20)}, "0:0:1777:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
	} {
		if got := c.acl.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.acl, got, c.want)
		}
		back, err := parseACL(c.want)
		if err != nil || !back.equal(&c.acl) {
			t.Errorf("parse %q: %+v %v", c.want, back, err)
		}
	}
}

func TestSortInstalled(t *testing.T) {
	names := []string{"zlib-1", "a-1", "abc-2", "ABC-1", "Abc-1", "py3-b-1", "Py3-a-1", "foo-1.10", "foo-1.9", "foo-1.9_rc1"}
	var pkgs []*Installed
	for _, n := range names {
		i := strings.IndexByte(n, '-')
		if strings.HasPrefix(n, "py3-") || strings.HasPrefix(n, "Py3-") {
			i = 5
		}
		pkgs = append(pkgs, &Installed{Package: apk.Package{Name: n[:i], Version: n[i+1:]}})
	}
	SortInstalled(pkgs)
	var got []string
	for _, p := range pkgs {
		got = append(got, p.Package.String())
	}
	want := "a-1 ABC-1 Abc-1 abc-2 foo-1.9_rc1 foo-1.9 foo-1.10 Py3-a-1 py3-b-1 zlib-1"
	if strings.Join(got, " ") != want {
		t.Errorf("sorted:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}

func TestScriptsTar(t *testing.T) {
	sum := sha1.Sum([]byte("x"))
	scripts := []Script{
		{Package: "foo-1.0-r0", Checksum: sum[:], Type: ScriptPostInstall, MTime: 1700000000, Data: []byte("#!/bin/sh\n")},
		{Package: "foo-1.0-r0", Checksum: sum[:], Type: ScriptTrigger, MTime: 1700000000, Data: bytes.Repeat([]byte("x"), 512)},
		{Package: "bar-2", Checksum: sum[:16], Type: ScriptPreDeinstall, MTime: 1, Data: []byte{}},
	}
	var buf bytes.Buffer
	if err := WriteScripts(&buf, scripts); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%512 != 0 || buf.Len() != 512+512+512+512+512+1024 {
		t.Errorf("archive of %d bytes", buf.Len())
	}
	// Go's tar reader sees what apk_tar_write_entry writes.
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for i := range scripts {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		name, _ := scripts[i].Name()
		if h.Name != name || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" ||
			h.Format != tar.FormatGNU || h.Typeflag != tar.TypeReg || h.Size != int64(len(scripts[i].Data)) || h.ModTime.Unix() != scripts[i].MTime {
			t.Errorf("header %d: %+v", i, h)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the last entry: %v", err)
	}
	back, err := ReadScripts(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 3 || back[2].Package != "bar-2" || len(back[2].Checksum) != 16 || string(back[1].Data) != string(scripts[1].Data) {
		t.Errorf("read back %+v", back)
	}
	if n, err := scripts[0].Name(); n != "foo-1.0-r0.Q1EfatjsUqKYSrqv18O1FlA3hcIHI=.post-install" || err != nil {
		t.Errorf("name %q %v", n, err)
	}

	long := Script{Package: strings.Repeat("p", 60), Checksum: sum[:], Type: ScriptPostDeinstall}
	if err := WriteScripts(io.Discard, []Script{long}); err == nil {
		t.Error("name over 99 bytes written")
	}
	if err := WriteScripts(io.Discard, []Script{{Package: "a-1", Checksum: sum[:], Type: 9}}); err == nil {
		t.Error("invalid type written")
	}
	if err := WriteScripts(io.Discard, []Script{{Package: "a-1", Checksum: sum[:], MTime: -1}}); err == nil {
		t.Error("negative mtime written")
	}
}

// ReadScripts skips what apk skips.
func TestReadScriptsSkips(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, typ byte) {
		data := "#!/bin/sh\n"
		if typ != tar.TypeReg {
			data = ""
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Mode: 0o755, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, data)
	}
	add("foo-1.Q1C2zt0frFhGd3dVIHnTsH+Pv6E9Q=.post-install", tar.TypeDir)
	add("foo-1.Q1C2zt0frFhGd3dVIHnTsH+Pv6E9Q=.post-fun", tar.TypeReg)
	add("foo-1.Q1nonsense.post-install", tar.TypeReg)
	add("post-install", tar.TypeReg)
	add(".post-install", tar.TypeReg)
	add("Q1C2zt0frFhGd3dVIHnTsH+Pv6E9Q=.post-install", tar.TypeReg)
	add("foo-1.0.Q1C2zt0frFhGd3dVIHnTsH+Pv6E9Q=.pre-upgrade", tar.TypeReg)
	tw.Close()
	got, err := ReadScripts(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Package != "foo-1.0" || got[0].Type != ScriptPreUpgrade {
		t.Errorf("read %+v", got)
	}
}

func TestAttachScriptsAndTriggers(t *testing.T) {
	s1, s2 := sha1.Sum([]byte("1")), sha1.Sum([]byte("2"))
	pkgs := []*Installed{
		{Package: apk.Package{Name: "a", Version: "1", Checksum: s1[:]}},
		{Package: apk.Package{Name: "b", Version: "1", Checksum: s2[:], BuildTime: 5}},
	}
	AttachScripts(pkgs, []Script{
		{Checksum: s2[:], Type: ScriptTrigger, Data: []byte("t")},
		{Checksum: s2[:], Type: ScriptPreInstall, Data: []byte("old")},
		{Checksum: s2[:], Type: ScriptPreInstall, Data: []byte("new")},
		{Checksum: make([]byte, 20), Type: ScriptPreInstall, Data: []byte("orphan")},
		{Checksum: s1[:], Type: ScriptPostInstall, Data: []byte{}},
	})
	got := ScriptsOf(pkgs, 99)
	if len(got) != 3 || got[0].Package != "a-1" || got[0].MTime != 99 || got[0].Data == nil ||
		got[1].Type != ScriptPreInstall || string(got[1].Data) != "new" || got[1].MTime != 5 || got[2].Type != ScriptTrigger {
		t.Errorf("ScriptsOf: %+v", got)
	}
	AttachTriggers(pkgs, []Trigger{{Checksum: s2[:], Dirs: []string{"/a"}}, {Checksum: make([]byte, 20), Dirs: []string{"/x"}}, {Checksum: s2[:], Dirs: []string{"/b"}}})
	tr := TriggersOf(pkgs)
	if len(tr) != 1 || strings.Join(tr[0].Dirs, " ") != "/a /b" {
		t.Errorf("TriggersOf: %+v", tr)
	}
}

func TestTriggers(t *testing.T) {
	in := "Q1C2zt0frFhGd3dVIHnTsH+Pv6E9Q= /usr/share/man  /boot\n\n0123456789abcdef0123456789abcdef\n"
	tr, err := ReadTriggers(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 2 || strings.Join(tr[0].Dirs, ",") != "/usr/share/man,/boot" || len(tr[1].Checksum) != 16 || tr[1].Dirs != nil {
		t.Errorf("read %+v", tr)
	}
	var buf bytes.Buffer
	if err := WriteTriggers(&buf, tr); err != nil {
		t.Fatal(err)
	}
	if want := "Q1C2zt0frFhGd3dVIHnTsH+Pv6E9Q= /usr/share/man /boot\n0123456789abcdef0123456789abcdef\n"; buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
	if _, err := ReadTriggers(strings.NewReader("Q1C2zt0frFhGd3dVIHnTsH+Pv6E9Q= /a\nQ1bad /b\n")); err == nil || !strings.Contains(err.Error(), "triggers:2:") {
		t.Errorf("bad checksum: %v", err)
	}
	for _, bad := range []Trigger{{Checksum: []byte{1}}, {Checksum: make([]byte, 20), Dirs: []string{"a b"}}, {Checksum: make([]byte, 20), Dirs: []string{""}}} {
		if err := WriteTriggers(io.Discard, []Trigger{bad}); err == nil {
			t.Errorf("%+v written", bad)
		}
	}
}

func TestXattrChecksum(t *testing.T) {
	if XattrChecksum(nil) != nil {
		t.Error("checksum of no attributes")
	}
	a := []Xattr{{"user.b", []byte("2")}, {"user.a", []byte("1")}}
	b := []Xattr{{"user.a", []byte("1")}, {"user.b", []byte("2")}}
	if !bytes.Equal(XattrChecksum(a), XattrChecksum(b)) || a[0].Name != "user.b" {
		t.Error("order matters or input sorted in place")
	}
	h := sha1.New()
	h.Write([]byte("\x00\x00\x00\x06user.a\x00\x00\x00\x011\x00\x00\x00\x06user.b\x00\x00\x00\x012"))
	if !bytes.Equal(XattrChecksum(a), h.Sum(nil)) {
		t.Error("not apk's encoding")
	}
}
