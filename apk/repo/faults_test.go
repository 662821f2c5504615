package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/gzmember"
	"github.com/alpinist/alpinist/apk/index"
	"github.com/alpinist/alpinist/apk/sign"
)

// TestClientHTTPFaults: what a broken or hostile server does, each
// failing the fetch fast with an error naming the package or index and
// the problem, and caching nothing.
func TestClientHTTPFaults(t *testing.T) {
	dir, k, pkgs := localRepo(t, "v1 ")
	signed, err := os.ReadFile(filepath.Join(dir, "x86_64", "APKINDEX.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	// The same index with its signature member cut off.
	gz := gzmember.NewReader(bytes.NewReader(signed))
	first, _ := gz.Next()
	io.Copy(io.Discard, first)
	unsigned := signed[gz.Offset():]

	for _, tc := range []struct {
		name string
		// serve answers a package request (index requests get the good
		// index unless index is set).
		serve func(w http.ResponseWriter, data []byte)
		index func(w http.ResponseWriter)
		want  string
		is    error
	}{
		{name: "stall before the headers", serve: func(w http.ResponseWriter, data []byte) { time.Sleep(2 * time.Second) },
			want: "a-1.0-r0.apk: the server sent nothing for 200ms (stalled) (after 2 attempts)"},
		{name: "stall in the body", serve: func(w http.ResponseWriter, data []byte) {
			w.Header().Set("Content-Length", "100000")
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			time.Sleep(2 * time.Second)
		}, want: "stalled"},
		{name: "html", serve: func(w http.ResponseWriter, data []byte) {
			w.Write([]byte("<html><body>502 Bad Gateway</body></html>\n"))
		}, want: "x86_64/a-1.0-r0.apk): not a valid APK v2 package: gzip member at byte 0: gzip: invalid header"},
		{name: "gone after the index", serve: func(w http.ResponseWriter, data []byte) { w.WriteHeader(http.StatusNotFound) },
			want: "x86_64/a-1.0-r0.apk: not found"},
		{name: "index html", index: func(w http.ResponseWriter) { w.Write([]byte("<html>captive portal</html>")) },
			want: "APKINDEX.tar.gz: gzip member at byte 0: gzip: invalid header"},
		{name: "index unsigned", index: func(w http.ResponseWriter) { w.Write(unsigned) },
			want: "APKINDEX.tar.gz: UNTRUSTED signature: not signed", is: sign.ErrUntrusted},
		{name: "index gone", index: func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) },
			want: "has no index for x86_64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
				if err != nil {
					http.NotFound(w, r)
					return
				}
				if strings.HasSuffix(r.URL.Path, ".apk") && tc.serve != nil {
					requests.Add(1)
					tc.serve(w, data)
					return
				}
				if strings.HasSuffix(r.URL.Path, "APKINDEX.tar.gz") && tc.index != nil {
					tc.index(w)
					return
				}
				w.Write(data)
			}))
			defer srv.Close()
			cache, _ := OpenCache(t.TempDir())
			c := &Client{Keys: keyring(k), Cache: cache, Transport: Transport{Backoff: time.Millisecond, Attempts: 2, IdleTimeout: 200 * time.Millisecond}}
			r := Repository{URL: srv.URL}
			start := time.Now()
			_, err := c.Index(context.Background(), r, "x86_64")
			if tc.index == nil {
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Fetch(context.Background(), items(r, pkgs[:1]))
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v\nwant %q", err, tc.want)
			}
			if strings.HasPrefix(tc.name, "stall") && !strings.Contains(err.Error(), "stalled") {
				t.Errorf("a stall is not named as one: %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			if n := cached(t, cache); len(n) != 0 {
				t.Errorf("cached after a failure: %v", n)
			}
		})
	}
}

// TestClientIndexLies: an index whose entry does not describe the
// package it points at (checksum and name right, dependencies or sizes
// not) is refused: the solver and the VM's sizing trust the index.
func TestClientIndexLies(t *testing.T) {
	for _, tc := range []struct {
		name string
		lie  func(p *apk.Package)
		want string
	}{
		{"installed size", func(p *apk.Package) { p.InstalledSize = 999999999 }, "installed size 999999999, the package says"},
		{"depends", func(p *apk.Package) { p.Depends, _ = apk.ParseDependencies("evil-helper") }, `depends "evil-helper", the package says ""`},
		{"provides", func(p *apk.Package) { p.Provides, _ = apk.ParseDependencies("cmd:sudo=1") }, `provides "cmd:sudo=1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, k, pkgs := localRepo(t, "v1 ")
			lied := *pkgs[0]
			tc.lie(&lied)
			if err := index.WriteFile(filepath.Join(dir, "x86_64", index.FileName), "test", []*apk.Package{&lied, pkgs[1]}, index.WriteOptions{Key: k, Mtime: time.Unix(1, 0)}); err != nil {
				t.Fatal(err)
			}
			cache, _ := OpenCache(t.TempDir())
			c := &Client{Keys: keyring(k), Cache: cache}
			r := Repository{URL: dir}
			idx, err := c.Index(context.Background(), r, "x86_64")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Fetch(context.Background(), []Item{{Repository: r, Arch: "x86_64", Package: idx.Packages[0]}})
			if err == nil || !strings.Contains(err.Error(), "a-1.0-r0") || !strings.Contains(err.Error(), "the index does not describe this package: "+tc.want) {
				t.Errorf("%v\nwant %q", err, tc.want)
			}
			if n := cached(t, cache); len(n) != 0 {
				t.Errorf("cached: %v", n)
			}
		})
	}
}

// TestClientQ2: an index entry with a SHA-256 (Q2) checksum, which APK v2
// packages are not identified by, is refused saying so.
func TestClientQ2(t *testing.T) {
	dir, k, pkgs := localRepo(t, "v1 ")
	q2 := *pkgs[0]
	q2.Checksum = bytes.Repeat([]byte{7}, 32)
	cache, _ := OpenCache(t.TempDir())
	c := &Client{Keys: keyring(k), Cache: cache}
	r := Repository{URL: dir}
	_, err := c.Fetch(context.Background(), []Item{{Repository: r, Arch: "x86_64", Package: &q2}})
	if err == nil || !strings.Contains(err.Error(), "a-1.0-r0") || !strings.Contains(err.Error(), "identified by the SHA-1 of its control part (Q1)") {
		t.Errorf("%v", err)
	}
}
