package db

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"github.com/alpinist/alpinist/apk"
)

func addSeedFile(f *testing.F, name string) {
	b, err := os.ReadFile(name)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}

// FuzzReadInstalled: the reader never panics, whatever it accepts the
// writer writes, and reading that back gives the same packages and the
// same bytes again.
func FuzzReadInstalled(f *testing.F) {
	addSeedFile(f, "testdata/installed-alpine-3.20.3")
	f.Add([]byte(stanzaHead + "r:a b\nq:1\ns:tag\nf:sx\nF:\nR:x\nF:etc\nM:0:42:2750\nR:a\na:1:2:4755:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=\nZ:0123456789abcdef0123456789abcdef\n\n"))
	f.Add([]byte(stanzaHead + "F:etc\nM:0:0:755\nR:x\na:0:0:644\nZ:X1" + "0123456789abcdef0123456789abcdef01234567\n"))
	f.Add([]byte("\n\n" + stanzaHead + "k:0\nD:a>=1 !b so:c.so.1\np:cmd:x=1\ni:a b\n"))
	// Meta packages whose r:, q:, s: and f: lines apk carries to the next
	// package, or loses after the last one.
	f.Add([]byte(stanzaHead + "r:a\nq:3\ns:t\nf:s\n\n" + stanzaHead + "s:own\nF:etc\n\n" + stanzaHead + "s:0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ReadInstalled(bytes.NewReader(data))
		if err != nil {
			return
		}
		var w1 bytes.Buffer
		if err := WriteInstalled(&w1, pkgs); err != nil {
			t.Fatalf("writing what was read: %v", err)
		}
		again, err := ReadInstalled(bytes.NewReader(w1.Bytes()))
		if err != nil {
			t.Fatalf("reading what was written: %v\n%s", err, w1.Bytes())
		}
		if len(again) != len(pkgs) {
			t.Fatalf("%d packages, then %d", len(pkgs), len(again))
		}
		want := carried(pkgs)
		for i := range pkgs {
			a, b := want[i], again[i]
			if a.RepositoryTag != b.RepositoryTag || a.BrokenFiles != b.BrokenFiles || a.BrokenScript != b.BrokenScript ||
				a.BrokenXattr != b.BrokenXattr || !sameDirs(a.Dirs, b.Dirs) || !bytes.Equal(a.Package.Checksum, b.Package.Checksum) ||
				a.Package.Name != b.Package.Name || a.Package.Version != b.Package.Version ||
				apk.FormatDependencies(a.Package.Replaces) != apk.FormatDependencies(b.Package.Replaces) ||
				a.Package.ReplacesPriority != b.Package.ReplacesPriority {
				t.Fatalf("package %d changed:\n%+v\n%+v", i, a, b)
			}
		}
		// What apk wrote, it writes again the same; a carry moved lines
		// once (the first write of them may repeat an s: or q: line), so
		// the fixed point is the second write.
		var w2 bytes.Buffer
		if err := WriteInstalled(&w2, again); err != nil {
			t.Fatal(err)
		}
		third, err := ReadInstalled(bytes.NewReader(w2.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		var w3 bytes.Buffer
		if err := WriteInstalled(&w3, third); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w2.Bytes(), w3.Bytes()) {
			t.Fatalf("not stable:\n%s", firstDiff(w3.Bytes(), w2.Bytes()))
		}
		if !carries(pkgs) && !bytes.Equal(w1.Bytes(), w2.Bytes()) {
			t.Fatalf("not stable without a carry:\n%s", firstDiff(w2.Bytes(), w1.Bytes()))
		}
	})
}

// carried is what apk reads back after writing pkgs: a package that owns
// no directory hands its r:, q:, s: and f: lines to the next package,
// written before that package's own (so its own q: and s: win, r: lines
// add up and flags join), and after the last package they are lost (see
// writeEntry).
func carried(pkgs []*Installed) []*Installed {
	out := make([]*Installed, len(pkgs))
	var carry Installed
	for i, p := range pkgs {
		c := *p
		c.Package.Replaces = append(append([]apk.Dependency(nil), carry.Package.Replaces...), p.Package.Replaces...)
		if c.Package.ReplacesPriority == 0 {
			c.Package.ReplacesPriority = carry.Package.ReplacesPriority
		}
		if c.RepositoryTag == "" {
			c.RepositoryTag = carry.RepositoryTag
		}
		c.BrokenFiles = c.BrokenFiles || carry.BrokenFiles
		c.BrokenScript = c.BrokenScript || carry.BrokenScript
		c.BrokenXattr = c.BrokenXattr || carry.BrokenXattr
		carry = Installed{}
		if len(c.Dirs) == 0 {
			carry.Package.Replaces = c.Package.Replaces
			carry.Package.ReplacesPriority = c.Package.ReplacesPriority
			carry.RepositoryTag, carry.BrokenFiles, carry.BrokenScript, carry.BrokenXattr =
				c.RepositoryTag, c.BrokenFiles, c.BrokenScript, c.BrokenXattr
			c.Package.Replaces, c.Package.ReplacesPriority = nil, 0
			c.RepositoryTag, c.BrokenFiles, c.BrokenScript, c.BrokenXattr = "", false, false, false
		}
		out[i] = &c
	}
	return out
}

// carries tells whether a package without directories has lines apk
// would carry.
func carries(pkgs []*Installed) bool {
	for _, p := range pkgs {
		if len(p.Dirs) == 0 && (len(p.Package.Replaces) > 0 || p.Package.ReplacesPriority != 0 ||
			p.RepositoryTag != "" || p.BrokenFiles || p.BrokenScript || p.BrokenXattr) {
			return true
		}
	}
	return false
}

// sameDirs compares directories as apk sees them: a default ACL is the
// same as none.
func sameDirs(a, b []Dir) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !sameACL(a[i].ACL, b[i].ACL, &DefaultDirACL) || len(a[i].Files) != len(b[i].Files) {
			return false
		}
		for j := range a[i].Files {
			fa, fb := &a[i].Files[j], &b[i].Files[j]
			if fa.Name != fb.Name || !sameACL(fa.ACL, fb.ACL, &DefaultFileACL) || !bytes.Equal(fa.Checksum, fb.Checksum) {
				return false
			}
		}
	}
	return true
}

func sameACL(a, b, def *ACL) bool {
	if a == nil {
		a = def
	}
	if b == nil {
		b = def
	}
	return a.equal(b)
}

// FuzzReadTriggers: whatever is read writes and reads back the same.
func FuzzReadTriggers(f *testing.F) {
	addSeedFile(f, "testdata/triggers-alpine-3.20.3")
	f.Add([]byte("0123456789abcdef0123456789abcdef\n\nQ1C2zt0frFhGd3dVIHnTsH+Pv6E9Q=  /a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ReadTriggers(bytes.NewReader(data))
		if err != nil {
			return
		}
		var w bytes.Buffer
		if err := WriteTriggers(&w, tr); err != nil {
			t.Fatalf("writing what was read: %v", err)
		}
		back, err := ReadTriggers(bytes.NewReader(w.Bytes()))
		if err != nil || !reflect.DeepEqual(normTriggers(back), normTriggers(tr)) {
			t.Fatalf("read back %+v (%v), want %+v", back, err, tr)
		}
	})
}

func normTriggers(tr []Trigger) []Trigger {
	for i := range tr {
		if len(tr[i].Dirs) == 0 {
			tr[i].Dirs = nil
		}
	}
	return tr
}

// FuzzReadScripts: whatever is read writes and reads back the same.
func FuzzReadScripts(f *testing.F) {
	addSeedFile(f, "testdata/scripts-alpine-3.20.3.tar")
	f.Fuzz(func(t *testing.T, data []byte) {
		scripts, err := ReadScripts(bytes.NewReader(data))
		if err != nil {
			return
		}
		var w bytes.Buffer
		if err := WriteScripts(&w, scripts); err != nil {
			// Names apk would truncate and times outside the header's
			// range are refused; nothing else may be.
			for _, s := range scripts {
				if n, _ := s.Name(); len(n) > 99 || s.MTime < 0 || s.MTime >= 1<<36 {
					return
				}
			}
			t.Fatalf("writing what was read: %v", err)
		}
		back, err := ReadScripts(bytes.NewReader(w.Bytes()))
		if err != nil || !reflect.DeepEqual(back, scripts) {
			t.Fatalf("read back differs (%v)", err)
		}
	})
}
