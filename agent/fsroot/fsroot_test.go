package fsroot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEscapes: symlinks in the target pointing out of it (absolute,
// relative, ..) are resolved inside the target by every operation, so a
// hostile package or spec cannot write to the host.
func TestEscapes(t *testing.T) {
	base := t.TempDir()
	rootDir, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{rootDir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o644)
	for name, target := range map[string]string{
		"abs":    outside,
		"rel":    strings.Repeat("../", 8) + strings.TrimPrefix(outside, "/"),
		"up":     "..",
		"secret": filepath.Join(outside, "secret"),
	} {
		if err := os.Symlink(target, filepath.Join(rootDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	uid, gid := os.Getuid(), os.Getgid()
	ops := map[string]func() error{
		"write abs/x":      func() error { return r.WriteFile("abs/x", strings.NewReader("x"), 0o644, uid, gid, nil, 0) },
		"write rel/x":      func() error { return r.WriteFile("rel/x", strings.NewReader("x"), 0o644, uid, gid, nil, 0) },
		"write up/x":       func() error { return r.WriteFile("up/x", strings.NewReader("x"), 0o644, uid, gid, nil, 0) },
		"mkdir abs/d":      func() error { return r.MkdirAll("abs/d/e", 0o755, uid, gid) },
		"symlink rel/l":    func() error { return r.Symlink("rel/l", "/etc/passwd", uid, gid, 0) },
		"link to secret":   func() error { return r.Link("h", "secret") },
		"link abs/secret":  func() error { return r.Link("h2", "abs/secret") },
		"chmod abs/secret": func() error { return r.Chmod("abs/secret", 0o777) },
	}
	for name, op := range ops {
		op() // an error or a file inside the root: either is safe
		ents, _ := os.ReadDir(outside)
		if len(ents) != 1 {
			t.Errorf("%s: wrote outside the root: %v", name, ents)
		}
		if st, _ := os.Stat(filepath.Join(outside, "secret")); st.Mode().Perm() != 0o644 {
			t.Errorf("%s: changed the host's file: %v", name, st.Mode())
		}
	}
	// What went where it could: under the root.
	if _, err := os.Stat(filepath.Join(rootDir, "x")); err != nil {
		t.Errorf("up/x did not land in the root: %v", err)
	}
	if b, err := r.ReadFile("secret"); err == nil {
		t.Errorf("read the host's file through a symlink: %q", b)
	}
}

// TestWriteFile: a file is written with its mode (setuid kept), time and
// content, from a reader or a Range (copied by the kernel), in place or
// over a file that is there (through a temporary file, over one an
// earlier failure left), and no temporary or partial file stays.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("0123456789"), 0o644)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	os.WriteFile(filepath.Join(dir, "root", "b"), []byte("an older b"), 0o600)
	os.WriteFile(filepath.Join(dir, "root", ".apk.b"), []byte("left over"), 0o600)
	uid, gid := os.Getuid(), os.Getgid()
	if err := r.WriteFile("a", strings.NewReader("plain"), 0o4755, uid, gid, nil, 1700000000); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFile("b", &Range{File: f, Off: 2, N: 5}, 0o640, uid, gid, nil, 1700000000); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "plain", "b": "23456"} {
		p := filepath.Join(dir, "root", name)
		got, _ := os.ReadFile(p)
		st, err := os.Stat(p)
		if err != nil || string(got) != want || st.ModTime().Unix() != 1700000000 {
			t.Errorf("%s: %q, %v, %v", name, got, st, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "root", "a")); st.Mode()&os.ModeSetuid == 0 || st.Mode().Perm() != 0o755 {
		t.Errorf("a's mode %v, want setuid 0755", st.Mode())
	}
	if st, _ := os.Stat(filepath.Join(dir, "root", "b")); st.Mode().Perm() != 0o640 {
		t.Errorf("b's mode %v", st.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "root", ".apk.*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := r.WriteFile("c", &Range{File: f, Off: 8, N: 5}, 0o644, uid, gid, nil, 0); err == nil {
		t.Error("a range past the end of its file was written")
	}
	if _, err := os.Lstat(filepath.Join(dir, "root", "c")); err == nil {
		t.Error("the failed write left c")
	}
	if err := r.WriteFile("b", &Range{File: f, Off: 8, N: 5}, 0o644, uid, gid, nil, 0); err == nil {
		t.Error("a range past the end of its file was written over b")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "root", "b")); string(got) != "23456" {
		t.Errorf("a failed write over b changed it: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "root", ".apk.*")); len(left) > 0 {
		t.Errorf("temporary files left after failures: %v", left)
	}
}

// TestWriteFileStat: the status WriteFileStat gives is lstat's after the
// write, for a new name and for a taken one (renamed over: a new ctime).
func TestWriteFileStat(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	os.WriteFile(filepath.Join(dir, "taken"), []byte("old"), 0o600)
	for _, name := range []string{"new", "taken"} {
		var st unix.Stat_t
		if err := r.WriteFileStat(name, strings.NewReader("content"), 0o751, os.Getuid(), os.Getgid(), nil, 1700000000, &st); err != nil {
			t.Fatal(err)
		}
		var want unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, name), &want); err != nil {
			t.Fatal(err)
		}
		if st != want {
			t.Errorf("%s: %+v, lstat says %+v", name, st, want)
		}
		if st.Size != 7 || st.Mode != unix.S_IFREG|0o751 || st.Mtim.Sec != 1700000000 {
			t.Errorf("%s: size %d, mode %o, mtime %d", name, st.Size, st.Mode, st.Mtim.Sec)
		}
	}
}
