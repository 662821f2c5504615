package testrepo

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
)

// Generated returns the generated repository (ALPINIST_TESTREPO, else
// MODULE/testdata/repo, which make testrepo links). When it is missing a
// test fails under CI (CI set: make test always generates it) and is
// skipped otherwise.
func Generated(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("ALPINIST_TESTREPO")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "repo")
	}
	if _, err := os.Stat(filepath.Join(dir, "main", "x86_64", "APKINDEX.tar.gz")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the generated test repository is missing (make test runs make testrepo first): %v", err)
		}
		t.Skipf("run make testrepo first: %v", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// Extract verifies the generated repository's package NAME for arch and
// copies the file at path (e.g. "boot/vmlinuz-virt") out of it into a test
// temporary directory, returning its host path.
func Extract(t testing.TB, arch, name, path string) string {
	t.Helper()
	repo := Generated(t)
	pkgs, _ := filepath.Glob(filepath.Join(repo, "main", arch, name+"-[0-9]*.apk"))
	if len(pkgs) != 1 {
		t.Fatalf("package %s for %s: found %v", name, arch, pkgs)
	}
	keys, err := sign.LoadKeyring(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pkgs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	found := false
	_, err = apkfile.Read(f, apkfile.ReadOptions{Keys: keys, Entry: func(h *tar.Header, r io.Reader) error {
		if h.Name != path {
			return nil
		}
		found = true
		w, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, r)
		return errors.Join(err, w.Close())
	}})
	if err != nil {
		t.Fatalf("%s: %v", pkgs[0], err)
	}
	if !found {
		t.Fatalf("%s has no %s", pkgs[0], path)
	}
	return out
}
