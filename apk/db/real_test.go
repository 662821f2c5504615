package db

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// realDB returns a reader of the real database files: the minirootfs's
// when fromFixture, else the copies in testdata (the same files, kept for
// machines without the fixture and as fuzz seeds).
func realDB(t *testing.T, fromFixture bool) func(name string) []byte {
	dir, names := "testdata", map[string]string{
		"installed":   "installed-alpine-3.20.3",
		"scripts.tar": "scripts-alpine-3.20.3.tar",
		"triggers":    "triggers-alpine-3.20.3",
	}
	if fromFixture {
		dir = filepath.Join(minirootfs.Dir(t), "lib", "apk", "db")
		names = nil
	}
	return func(name string) []byte {
		t.Helper()
		if n, ok := names[name]; ok {
			name = n
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func forRealDB(t *testing.T, test func(t *testing.T, readReal func(string) []byte)) {
	t.Run("testdata", func(t *testing.T) { test(t, realDB(t, false)) })
	t.Run("minirootfs", func(t *testing.T) { test(t, realDB(t, true)) })
}

// The minirootfs's database, written by the real apk 2.14, reads and
// writes back byte for byte.
func TestRealInstalledRoundTrip(t *testing.T) { forRealDB(t, testRealInstalledRoundTrip) }

func testRealInstalledRoundTrip(t *testing.T, readReal func(string) []byte) {
	data := readReal("installed")
	pkgs, err := ReadInstalled(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 14 {
		t.Errorf("%d packages, want 14", len(pkgs))
	}
	var buf bytes.Buffer
	if err := WriteInstalled(&buf, pkgs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("written database differs from the real one:\n%s", firstDiff(buf.Bytes(), data))
	}

	// apk wrote the packages in SortInstalled's order.
	shuffled := append([]*Installed(nil), pkgs...)
	rand.New(rand.NewSource(1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	SortInstalled(shuffled)
	for i := range pkgs {
		if shuffled[i] != pkgs[i] {
			t.Fatalf("SortInstalled: position %d is %s, apk wrote %s", i, &shuffled[i].Package, &pkgs[i].Package)
		}
	}

	// Spot checks of what was parsed.
	base := pkgs[0]
	if base.Package.Name != "alpine-baselayout" || base.Package.ReplacesPriority != 1000 {
		t.Errorf("first package %s q:%d", &base.Package, base.Package.ReplacesPriority)
	}
	var crontab *File
	var tmp *Dir
	for _, in := range pkgs {
		for i := range in.Dirs {
			d := &in.Dirs[i]
			if d.Name == "tmp" {
				tmp = d
			}
			for j := range d.Files {
				if d.Name == "etc/crontabs" && d.Files[j].Name == "root" {
					crontab = &d.Files[j]
				}
			}
		}
	}
	if crontab == nil || crontab.ACL == nil || !crontab.ACL.equal(&ACL{Mode: 0o600}) || len(crontab.Checksum) != 20 {
		t.Errorf("etc/crontabs/root: %+v", crontab)
	}
	if tmp == nil || tmp.ACL == nil || tmp.ACL.Mode != 0o1777 {
		t.Errorf("tmp: %+v", tmp)
	}
}

func TestRealScriptsRoundTrip(t *testing.T) { forRealDB(t, testRealScriptsRoundTrip) }

func testRealScriptsRoundTrip(t *testing.T, readReal func(string) []byte) {
	data := readReal("scripts.tar")
	scripts, err := ReadScripts(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) != 7 || scripts[0].Package != "busybox-1.36.1-r29" || scripts[0].Type != ScriptPostInstall ||
		scripts[2].Type != ScriptTrigger || scripts[0].MTime != 1718003507 {
		t.Errorf("scripts: %d, first %s %s %d", len(scripts), scripts[0].Package, scripts[0].Type, scripts[0].MTime)
	}
	var buf bytes.Buffer
	if err := WriteScripts(&buf, scripts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("written scripts.tar differs from the real one:\n%s", firstDiff(buf.Bytes(), data))
	}

	// Attached to the installed packages and listed again in installation
	// order (busybox before alpine-baselayout), they give the same archive.
	pkgs, err := ReadInstalled(bytes.NewReader(readReal("installed")))
	if err != nil {
		t.Fatal(err)
	}
	AttachScripts(pkgs, scripts)
	var order []*Installed
	seen := map[*Installed]bool{}
	for _, s := range scripts {
		for _, in := range pkgs {
			if bytes.Equal(in.Package.Checksum, s.Checksum) && !seen[in] {
				seen[in] = true
				order = append(order, in)
			}
		}
	}
	buf.Reset()
	if err := WriteScripts(&buf, ScriptsOf(order, 0)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("scripts.tar from ScriptsOf differs from the real one:\n%s", firstDiff(buf.Bytes(), data))
	}
}

func TestRealTriggersRoundTrip(t *testing.T) { forRealDB(t, testRealTriggersRoundTrip) }

func testRealTriggersRoundTrip(t *testing.T, readReal func(string) []byte) {
	data := readReal("triggers")
	triggers, err := ReadTriggers(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(triggers) != 1 || len(triggers[0].Dirs) != 5 || triggers[0].Dirs[4] != "/lib/modules/*" {
		t.Errorf("triggers: %+v", triggers)
	}
	var buf bytes.Buffer
	if err := WriteTriggers(&buf, triggers); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("written triggers differ:\n%s", firstDiff(buf.Bytes(), data))
	}

	pkgs, err := ReadInstalled(bytes.NewReader(readReal("installed")))
	if err != nil {
		t.Fatal(err)
	}
	AttachTriggers(pkgs, triggers)
	buf.Reset()
	if err := WriteTriggers(&buf, TriggersOf(pkgs)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("triggers from TriggersOf differ:\n%s", firstDiff(buf.Bytes(), data))
	}
}

// firstDiff shows where two byte strings part.
func firstDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-80)
	return fmt.Sprintf("at byte %d (lengths %d, %d)\ngot:  %q\nwant: %q", i, len(got), len(want),
		got[lo:min(len(got), i+80)], want[lo:min(len(want), i+80)])
}
