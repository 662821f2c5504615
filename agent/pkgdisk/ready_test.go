package pkgdisk

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTestDisk writes a disk with m's packages (prepared or .apk files,
// each "data of NAME"), then the file trees of m.Config.Files from dir.
func writeTestDisk(t *testing.T, w *Writer, m Manifest, dir string) {
	t.Helper()
	if m.Tools {
		if err := w.AddTools(strings.NewReader("tools"), 5); err != nil {
			t.Fatal(err)
		}
	}
	switch {
	case w.plan:
		if err := w.SkipPackages(); err != nil {
			t.Fatal(err)
		}
	default:
		for _, p := range m.Packages {
			data := "data of " + p.Name
			var err error
			if m.Prepared {
				err = w.AddPrepared([]byte("control "+p.Name), func(w io.Writer) error { _, err := io.WriteString(w, data); return err })
			} else {
				err = w.Add(strings.NewReader(data), int64(len(data)))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, f := range m.Config.Files {
		var err error
		if f.Kind == "content" {
			err = w.AddContent(i, "content "+f.Dst, -1)
		} else {
			err = w.AddTree(i, dir, -1, -1)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPlan: a plan's identity is the disk's, whatever the installer and
// whether there are file trees, and it changes with what it covers; its
// size is the disk's but the packages.
func TestPlan(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("tree file"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := map[string][]byte{"k.rsa.pub": []byte("K")}
	pkgs := []Package{{Name: "a", Version: "1-r0", Checksum: "Q1x"}, {Name: "b", Version: "2-r0", Checksum: "Q1y"}}
	files := []File{{Dst: "/etc/x", Kind: "content", Mode: -1}, {Dst: "/opt", Kind: "copy", Mode: -1}}
	for _, c := range []struct {
		name string
		m    Manifest
	}{
		{"prepared", Manifest{Arch: "x86_64", Prepared: true, Packages: pkgs}},
		{"prepared with trees", Manifest{Arch: "x86_64", Prepared: true, Packages: pkgs, Config: Config{Files: files}}},
		{"apk-tools", Manifest{Arch: "x86_64", Installer: "apk-tools", Tools: true, Packages: pkgs, Config: Config{Files: files}}},
		{"no packages", Manifest{Arch: "x86_64", Prepared: true, Config: Config{Files: files}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan, err := Plan(c.m, keys)
			if err != nil {
				t.Fatal(err)
			}
			writeTestDisk(t, plan, c.m, dir)
			f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w, err := NewWriter(f, c.m, keys)
			if err != nil {
				t.Fatal(err)
			}
			writeTestDisk(t, w, c.m, dir)
			if !bytes.Equal(plan.Identity(), w.Identity()) {
				t.Error("the plan's identity is not the disk's")
			}
			st, _ := f.Stat()
			if plan.Size() <= 0 || plan.Size() > st.Size() {
				t.Errorf("the plan's size %d, the disk's %d", plan.Size(), st.Size())
			}
			if len(c.m.Packages) == 0 && plan.Size() != st.Size() {
				t.Errorf("no packages: the plan's size %d, the disk's %d", plan.Size(), st.Size())
			}
			m2 := c.m
			m2.SourceDateEpoch = 1
			other, _ := Plan(m2, keys)
			writeTestDisk(t, other, m2, dir)
			if bytes.Equal(other.Identity(), plan.Identity()) {
				t.Error("the identity does not depend on the manifest")
			}
			if len(c.m.Config.Files) > 0 {
				os.WriteFile(filepath.Join(dir, "f"), []byte("tree file changed"), 0o644)
				other, _ := Plan(c.m, keys)
				writeTestDisk(t, other, c.m, dir)
				os.WriteFile(filepath.Join(dir, "f"), []byte("tree file"), 0o644)
				if bytes.Equal(other.Identity(), plan.Identity()) {
					t.Error("the identity does not depend on the file trees")
				}
			}
		})
	}
	plan, _ := Plan(Manifest{Packages: pkgs, Prepared: true}, nil)
	if err := plan.AddPrepared(nil, func(io.Writer) error { return nil }); err == nil {
		t.Error("a plan took a package")
	}
}

// TestHoldFirst: the disk is not Ready before Release, and after it is
// the disk NewWriter would have written; a disk beyond the limit fails.
func TestHoldFirst(t *testing.T) {
	m := Manifest{Arch: "x86_64", Prepared: true, Packages: []Package{{Name: "a", Version: "1-r0", Checksum: "Q1x"}}}
	path := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	hf := NewHoldFirst(f, 1<<20)
	w, err := NewWriter(hf, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeTestDisk(t, w, m, "")
	block := make([]byte, blockSize)
	if _, err := f.ReadAt(block, 0); err != nil {
		t.Fatal(err)
	}
	if Ready(block) {
		t.Fatal("ready before Release")
	}
	if err := hf.Release(); err != nil {
		t.Fatal(err)
	}
	f.ReadAt(block, 0)
	if !Ready(block) {
		t.Fatal("not ready after Release")
	}
	r, err := NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	p, control, data, _, err := r.NextPrepared()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(data)
	if p.Name != "a" || string(control) != "control a" || string(b) != "data of a" {
		t.Errorf("read back %s %q %q", p.Name, control, b)
	}
	// Open: the same, read at offsets, what is not read skipped.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	_, control2, data2, off2, err := r2.NextPrepared()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := data2.(io.Seeker); !ok {
		t.Error("Open gives a data tar that cannot seek")
	}
	b2, _ := io.ReadAll(data2)
	if string(control2) != "control a" || string(b2) != "data of a" || r2.Disk() != f {
		t.Errorf("Open read back %q %q", control2, b2)
	}
	if _, _, _, _, err := r2.NextPrepared(); err != io.EOF {
		t.Errorf("after the last package: %v", err)
	}
	got := make([]byte, len(b2))
	f.ReadAt(got, off2)
	if string(got) != "data of a" {
		t.Errorf("at the offset given: %q", got)
	}
	if Ready(make([]byte, blockSize)) || Ready(block[:100]) {
		t.Error("zeros or a short block are ready")
	}
	small := NewHoldFirst(f, 2048)
	_, err = small.Write(make([]byte, 4096))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("a disk beyond its limit: %v", err)
	}
}
