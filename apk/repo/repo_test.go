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
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestURLs(t *testing.T) {
	r := Repository{URL: "https://dl-cdn.alpinelinux.org/alpine/v3.22/main/"}
	if got := r.IndexURL("x86_64"); got != "https://dl-cdn.alpinelinux.org/alpine/v3.22/main/x86_64/APKINDEX.tar.gz" {
		t.Error(got)
	}
	if got := r.PackageURL("aarch64", "c++-1.0.apk"); got != "https://dl-cdn.alpinelinux.org/alpine/v3.22/main/aarch64/c++-1.0.apk" {
		t.Error(got)
	}
	local := Repository{URL: "file:///srv/repo"}
	if got := local.IndexURL("x86_64"); got != "/srv/repo/x86_64/APKINDEX.tar.gz" {
		t.Error(got)
	}
	if got := (Repository{URL: "/srv/r", Tag: "edge"}).String(); got != "@edge /srv/r" {
		t.Error(got)
	}
}

func TestTransportRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if calls.Add(1) < 3 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		case "/broken":
			http.Error(w, "no", http.StatusInternalServerError)
		case "/forbidden":
			http.Error(w, "no", http.StatusForbidden)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tr := &Transport{Backoff: time.Millisecond}
	ctx := context.Background()

	body, err := tr.Open(ctx, srv.URL+"/flaky")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(body)
	body.Close()
	if string(data) != "ok" || calls.Load() != 3 {
		t.Errorf("got %q after %d calls", data, calls.Load())
	}

	_, err = tr.Open(ctx, srv.URL+"/missing")
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Errorf("missing: %v", err)
	}
	_, err = tr.Open(ctx, srv.URL+"/broken")
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "after 4 attempts") {
		t.Errorf("broken: %v", err)
	}
	_, err = tr.Open(ctx, srv.URL+"/forbidden")
	if err == nil || strings.Contains(err.Error(), "attempts") {
		t.Errorf("forbidden should fail at once: %v", err)
	}
	_, err = tr.Open(ctx, filepath.Join(t.TempDir(), "nothing"))
	if !errors.As(err, &nf) {
		t.Errorf("local missing: %v", err)
	}
}

func TestCachePut(t *testing.T) {
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum := []byte("0123456789abcdefghij")
	if _, err := c.Put(sum, func(f *os.File) error {
		f.WriteString("half")
		return errors.New("verification failed")
	}); err == nil {
		t.Fatal("Put kept a failed fill")
	}
	if _, ok := c.Lookup(sum); ok {
		t.Fatal("failed fill is in the cache")
	}
	if left, _ := os.ReadDir(filepath.Join(c.Dir, "tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// Concurrent writers of the same package end with one complete file.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Put(sum, func(f *os.File) error {
				_, err := f.WriteString(strings.Repeat("x", 1<<16))
				return err
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	p, ok := c.Lookup(sum)
	if !ok {
		t.Fatal("not cached")
	}
	if fi, _ := os.Stat(p); fi.Size() != 1<<16 {
		t.Errorf("cached size %d", fi.Size())
	}
	if _, err := Key([]byte("short")); err == nil {
		t.Error("Key accepted a 5-byte checksum")
	}
	for _, n := range []int{20, 32} {
		sum := bytes.Repeat([]byte{0xab}, n)
		k, _ := Key(sum)
		if got, err := ParseKey(k); err != nil || !bytes.Equal(got, sum) {
			t.Errorf("ParseKey(%s) = %x, %v", k, got, err)
		}
	}
	for _, bad := range []string{"sha1-abcd", "sha256-" + strings.Repeat("ab", 20), "md5-00", "sha1-" + strings.Repeat("zz", 20)} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) took it", bad)
		}
	}
}
