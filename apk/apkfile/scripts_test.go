package apkfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadScripts(t *testing.T) {
	if s, err := ReadScripts("", "x"); s != nil || err != nil {
		t.Errorf("no dir: %v %v", s, err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "post-install"), []byte("a"), 0o755)
	os.WriteFile(filepath.Join(dir, "web.pre-deinstall"), []byte("b"), 0o755)
	os.WriteFile(filepath.Join(dir, ".trigger"), []byte("c"), 0o755)
	s, err := ReadScripts(dir, "web")
	if err != nil || string(s["post-install"]) != "a" || string(s["pre-deinstall"]) != "b" || string(s["trigger"]) != "c" || len(s) != 3 {
		t.Errorf("scripts %v, %v", s, err)
	}
	os.WriteFile(filepath.Join(dir, ".post-install"), []byte("d"), 0o755)
	if _, err := ReadScripts(dir, "web"); err == nil || !strings.Contains(err.Error(), "post-install given twice") {
		t.Errorf("twice: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "install"), []byte("e"), 0o755)
	if _, err := ReadScripts(dir, "web"); err == nil || !strings.Contains(err.Error(), "install: not an install script name") {
		t.Errorf("bad name: %v", err)
	}
	if _, err := ReadScripts(filepath.Join(dir, "none"), "web"); err == nil {
		t.Error("missing dir: no error")
	}
}

func TestNewestMtime(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755)
	p := filepath.Join(dir, "a", "b", "f")
	os.WriteFile(p, nil, 0o644)
	for _, q := range []string{dir, filepath.Join(dir, "a"), filepath.Join(dir, "a", "b")} {
		os.Chtimes(q, time.Unix(100, 0), time.Unix(100, 0))
	}
	os.Chtimes(p, time.Unix(5000, 0), time.Unix(5000, 0))
	if n, err := NewestMtime(dir); err != nil || n != 5000 {
		t.Errorf("NewestMtime = %d, %v", n, err)
	}
}
