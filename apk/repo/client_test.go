package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/index"
	"github.com/alpinist/alpinist/apk/sign"
)

// localRepo writes a signed repository DIR/x86_64 with packages a and b
// (b depends on a) and returns DIR, the key and the index's packages.
func localRepo(t *testing.T, content string) (string, *sign.Key, []*apk.Package) {
	t.Helper()
	k, err := sign.Generate("repo-test", 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeRepo(t, dir, k, content)
	_, pkgs, err := index.Read(mustOpen(t, filepath.Join(dir, "x86_64", index.FileName)), keyring(k), "test")
	if err != nil {
		t.Fatal(err)
	}
	return dir, k, pkgs
}

func writeRepo(t *testing.T, dir string, k *sign.Key, content string) {
	t.Helper()
	arch := filepath.Join(dir, "x86_64")
	var metas []*apk.Package
	for _, name := range []string{"a", "b"} {
		m := &apk.Package{Name: name, Version: "1.0-r0", Arch: "x86_64", Description: name, BuildTime: 1}
		if name == "b" {
			m.Depends, _ = apk.ParseDependencies("a")
		}
		data := content + name
		e := apkfile.Entry{Path: "usr/share/" + name, Type: apkfile.TypeReg, Mode: 0o644, Size: int64(len(data)),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }}
		out, _, err := apkfile.WriteFile(arch, m, nil, []apkfile.Entry{{Path: "usr", Type: apkfile.TypeDir, Mode: 0o755},
			{Path: "usr/share", Type: apkfile.TypeDir, Mode: 0o755}, e}, apkfile.WriteOptions{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		metas = append(metas, out)
	}
	if err := index.WriteFile(filepath.Join(arch, index.FileName), "test", metas, index.WriteOptions{Key: k, Mtime: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
}

func keyring(ks ...*sign.Key) *sign.Keyring {
	kr := sign.NewKeyring()
	for _, k := range ks {
		kr.Add(k.Name, &k.Private.PublicKey)
	}
	return kr
}

func mustOpen(t *testing.T, p string) io.Reader {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func items(r Repository, pkgs []*apk.Package) []Item {
	var it []Item
	for _, p := range pkgs {
		it = append(it, Item{Repository: r, Arch: "x86_64", Package: p})
	}
	return it
}

// cached lists the finished files in the cache.
func cached(t *testing.T, c *Cache) []string {
	m, _ := filepath.Glob(filepath.Join(c.Dir, "packages", "*"))
	return m
}

func TestClientLocal(t *testing.T) {
	dir, k, _ := localRepo(t, "v1 ")
	cache, _ := OpenCache(t.TempDir())
	c := &Client{Keys: keyring(k), Cache: cache}
	r := Repository{URL: dir}
	idx, err := c.Indexes(context.Background(), []Repository{r}, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if idx[0].Description != "test" || len(idx[0].Packages) != 2 {
		t.Fatalf("%+v", idx[0])
	}
	paths, err := c.Fetch(context.Background(), items(r, idx[0].Packages))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || len(cached(t, cache)) != 2 {
		t.Fatalf("paths %v", paths)
	}
	// A second fetch is served from the cache even with the repository gone.
	os.RemoveAll(filepath.Join(dir, "x86_64"))
	if _, err := c.Fetch(context.Background(), items(r, idx[0].Packages)); err != nil {
		t.Errorf("cached fetch: %v", err)
	}
	if _, err := c.Index(context.Background(), r, "x86_64"); err == nil || !strings.Contains(err.Error(), "no index for x86_64") {
		t.Errorf("missing index: %v", err)
	}
}

func TestClientRejects(t *testing.T) {
	ctx := context.Background()
	t.Run("wrong key", func(t *testing.T) {
		dir, _, _ := localRepo(t, "v1 ")
		other, _ := sign.Generate("other", 2048)
		c := &Client{Keys: keyring(other)}
		_, err := c.Index(ctx, Repository{URL: dir}, "x86_64")
		if !errors.Is(err, sign.ErrUntrusted) || !strings.Contains(err.Error(), "APKINDEX.tar.gz") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("index checksum mismatch", func(t *testing.T) {
		// The index lists v1's packages; the files are then rebuilt with
		// other content (validly signed): their checksums no longer match.
		dir, k, pkgs := localRepo(t, "v1 ")
		tmp := t.TempDir()
		writeRepo(t, tmp, k, "v2 ")
		for _, n := range []string{"a-1.0-r0.apk", "b-1.0-r0.apk"} {
			os.Rename(filepath.Join(tmp, "x86_64", n), filepath.Join(dir, "x86_64", n))
		}
		cache, _ := OpenCache(t.TempDir())
		c := &Client{Keys: keyring(k), Cache: cache}
		_, err := c.Fetch(ctx, items(Repository{URL: dir}, pkgs))
		if err == nil || !strings.Contains(err.Error(), "a-1.0-r0") || !strings.Contains(err.Error(), "does not match the index") {
			t.Errorf("got %v", err)
		}
		if n := cached(t, cache); len(n) != 0 {
			t.Errorf("cached after a failure: %v", n)
		}
	})
	t.Run("tampered package", func(t *testing.T) {
		dir, k, pkgs := localRepo(t, "v1 ")
		p := filepath.Join(dir, "x86_64", "b-1.0-r0.apk")
		data, _ := os.ReadFile(p)
		data[len(data)-30] ^= 0xff
		os.WriteFile(p, data, 0o644)
		cache, _ := OpenCache(t.TempDir())
		c := &Client{Keys: keyring(k), Cache: cache}
		_, err := c.Fetch(ctx, items(Repository{URL: dir}, pkgs[1:]))
		if err == nil || !strings.Contains(err.Error(), "b-1.0-r0") {
			t.Errorf("got %v", err)
		}
		if n := cached(t, cache); len(n) != 0 {
			t.Errorf("cached after a failure: %v", n)
		}
		if tmps, _ := os.ReadDir(filepath.Join(cache.Dir, "tmp")); len(tmps) != 0 {
			t.Errorf("temporary files left: %v", tmps)
		}
	})
	t.Run("untrusted package signature", func(t *testing.T) {
		dir, k, pkgs := localRepo(t, "v1 ")
		cache, _ := OpenCache(t.TempDir())
		other, _ := sign.Generate("other", 2048)
		// The index is trusted, the package signatures are not.
		c := &Client{Keys: keyring(other), Cache: cache}
		_ = k
		_, err := c.Fetch(ctx, items(Repository{URL: dir}, pkgs[:1]))
		if !errors.Is(err, sign.ErrUntrusted) || !strings.Contains(err.Error(), "a-1.0-r0") {
			t.Errorf("got %v", err)
		}
	})
}

// TestClientHTTPBrokenTransfer serves a package that is cut short on
// every attempt: the client retries, then fails, caching nothing.
func TestClientHTTPBrokenTransfer(t *testing.T) {
	dir, k, pkgs := localRepo(t, "v1 ")
	attempts := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, ".apk") {
			attempts++
			w.Header().Set("Content-Length", "100000")
			w.Write(data[:len(data)/2])
			return // the connection closes early
		}
		w.Write(data)
	}))
	defer srv.Close()
	cache, _ := OpenCache(t.TempDir())
	c := &Client{Keys: keyring(k), Cache: cache, Transport: Transport{Backoff: time.Millisecond}}
	r := Repository{URL: srv.URL}
	if _, err := c.Index(context.Background(), r, "x86_64"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Fetch(context.Background(), items(r, pkgs[:1]))
	if err == nil || !strings.Contains(err.Error(), "a-1.0-r0") {
		t.Errorf("got %v", err)
	}
	if attempts < 2 {
		t.Errorf("%d attempts, want retries", attempts)
	}
	if n := cached(t, cache); len(n) != 0 {
		t.Errorf("cached after a failure: %v", n)
	}
}

// TestClientSharedCache runs several fetches of the same packages into one
// cache at once, as concurrent builds would: all succeed, one file each.
func TestClientSharedCache(t *testing.T) {
	dir, k, pkgs := localRepo(t, "v1 ")
	cache, _ := OpenCache(t.TempDir())
	r := Repository{URL: dir}
	errs := make(chan error, 6)
	for range 6 {
		go func() {
			c := &Client{Keys: keyring(k), Cache: cache}
			_, err := c.Fetch(context.Background(), items(r, pkgs))
			errs <- err
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := cached(t, cache); len(n) != 2 {
		t.Errorf("cache holds %v", n)
	}
}

// TestClientSharedSource: a Shared source (a registry cache) is asked
// first and its packages are verified as downloads are; a package it
// lacks is downloaded, and one that does not verify (another package's
// bytes, or a tampered copy) is downloaded instead of kept.
func TestClientSharedSource(t *testing.T) {
	dir, k, pkgs := localRepo(t, "v1 ")
	r := Repository{URL: dir}
	file := func(p *apk.Package) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "x86_64", p.Filename()))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := file(pkgs[0]), file(pkgs[1])
	tampered := bytes.Clone(a)
	tampered[len(tampered)-10] ^= 0xff
	for _, c := range []struct {
		name               string
		shared             map[string][]byte // by package name
		fromRepos, fromShr int64
	}{
		{"all shared", map[string][]byte{"a": a, "b": b}, 0, 2},
		{"one shared", map[string][]byte{"b": b}, 1, 1},
		{"other bytes", map[string][]byte{"a": b, "b": b}, 1, 1},
		{"tampered", map[string][]byte{"a": tampered}, 2, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cache, _ := OpenCache(t.TempDir())
			cl := &Client{Keys: keyring(k), Cache: cache, Shared: func(_ context.Context, sum []byte) (io.ReadCloser, error) {
				for _, p := range pkgs {
					if bytes.Equal(p.Checksum, sum) {
						if data, ok := c.shared[p.Name]; ok {
							return io.NopCloser(bytes.NewReader(data)), nil
						}
					}
				}
				return nil, fmt.Errorf("registry: %w", ErrNotShared)
			}}
			paths, err := cl.Fetch(context.Background(), items(r, pkgs))
			if err != nil {
				t.Fatal(err)
			}
			if repos, shr := cl.Fetched(); repos != c.fromRepos || shr != c.fromShr {
				t.Errorf("fetched %d from the repository, %d shared; want %d, %d", repos, shr, c.fromRepos, c.fromShr)
			}
			for i, p := range paths {
				if got, _ := os.ReadFile(p); !bytes.Equal(got, file(pkgs[i])) {
					t.Errorf("%s: the cache holds other bytes", pkgs[i].Name)
				}
			}
		})
	}
}
