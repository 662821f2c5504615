package apkfile

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
)

func listing(t *testing.T, ents []Entry) string {
	t.Helper()
	ka, _ := testKeys(t)
	var b bytes.Buffer
	m := sampleMeta()
	m.Triggers = nil
	if _, err := Write(&b, m, nil, ents, WriteOptions{Key: ka, TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	var out []string
	_, err := Read(bytes.NewReader(b.Bytes()), ReadOptions{Keys: ring(t, ka), Entry: func(h *tar.Header, r io.Reader) error {
		data, _ := io.ReadAll(r)
		out = append(out, typeLetter(h.Typeflag)+h.Name+" "+strings.TrimSpace(string(data))+h.Linkname+" "+fs.FileMode(h.Mode).String())
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

func TestFromFS(t *testing.T) {
	fsys := fstest.MapFS{
		"etc/motd":      {Data: []byte("hi\n"), Mode: 0o644},
		"usr/bin/x":     {Data: []byte("x\n"), Mode: 0o755},
		"usr/bin/y":     {Data: []byte("x"), Mode: fs.ModeSymlink | 0o777},
		"var/tmp":       {Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		"etc/ssh/empty": {Mode: fs.ModeDir | 0o700},
	}
	ents, err := FromFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	got := listing(t, ents)
	for _, want := range []string{"f:etc/motd hi -rw-r--r--", "f:usr/bin/x x -rwxr-xr-x", "s:usr/bin/y x -rwxrwxrwx", "d:etc/ssh/empty  -rwx------"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestFromDir(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a/b"), 0o755)
	os.WriteFile(filepath.Join(dir, "a/b/f"), []byte("content"), 0o644)
	os.Link(filepath.Join(dir, "a/b/f"), filepath.Join(dir, "a-link")) // sorts before a/b/f
	os.Symlink("b/f", filepath.Join(dir, "a/s"))
	os.WriteFile(filepath.Join(dir, "suid"), []byte("s"), 0o755)
	os.Chmod(filepath.Join(dir, "suid"), 0o755|os.ModeSetuid)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, err := FromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := listing(t, ents)
	for _, want := range []string{"f:a-link content", "h:a/b/f a-link", "s:a/s b/f", "f:suid s -rwxr-xr-x", "fifo"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, e := range ents {
		if e.Path == "suid" && e.Mode != 0o4755 {
			t.Errorf("suid mode %o", e.Mode)
		}
		if e.UID != 0 || e.GID != 0 {
			t.Errorf("%s owned by %d:%d", e.Path, e.UID, e.GID)
		}
	}
}
