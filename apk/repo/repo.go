// Package repo reads Alpine package repositories: a base URL or a directory
// laid out as Alpine's mirrors are (BASE/ARCH/APKINDEX.tar.gz and
// BASE/ARCH/NAME-VERSION.apk). It fetches and verifies indexes, downloads
// packages in parallel with retries into a content-addressed cache, and
// verifies every package against its index checksum and signature before
// the cache keeps it.
package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Repository is one repository: a base URL (http, https, file) or a
// directory, optionally pinned with a tag.
type Repository struct {
	URL string
	Tag string
}

// String gives the repository as /etc/apk/repositories writes it.
func (r Repository) String() string {
	if r.Tag != "" {
		return "@" + r.Tag + " " + r.URL
	}
	return r.URL
}

// IndexURL is the location of the repository's index for arch.
func (r Repository) IndexURL(arch string) string {
	return join(r.URL, arch, "APKINDEX.tar.gz")
}

// PackageURL is the location of a package file for arch.
func (r Repository) PackageURL(arch, filename string) string {
	return join(r.URL, arch, filename)
}

func join(base string, elem ...string) string {
	if isRemote(base) {
		u := strings.TrimRight(base, "/")
		for _, e := range elem {
			u += "/" + url.PathEscape(e)
		}
		return u
	}
	return filepath.Join(append([]string{localPath(base)}, elem...)...)
}

func isRemote(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

func localPath(u string) string {
	return strings.TrimPrefix(u, "file://")
}

// Transport opens repository files, retrying transient failures of remote
// ones with exponential backoff.
type Transport struct {
	// HTTP is the client for remote repositories; nil uses a client with
	// sensible timeouts.
	HTTP *http.Client
	// Attempts is how many times a transient failure is tried (default 4).
	Attempts int
	// Backoff is the first retry delay, doubled each time (default 500ms).
	Backoff time.Duration
	// IdleTimeout ends a request that receives nothing for this long,
	// before the headers or in the body: a stalled server (default 30s).
	IdleTimeout time.Duration
	// Log receives retry messages; nil discards them.
	Log *slog.Logger
}

// NotFoundError reports a file the repository does not have.
type NotFoundError struct{ Location string }

func (e *NotFoundError) Error() string { return e.Location + ": not found" }

var defaultHTTP = &http.Client{
	Timeout: 10 * time.Minute,
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   8,
	},
}

// Open opens the file at location (a URL or a path). The caller closes it.
func (t *Transport) Open(ctx context.Context, location string) (io.ReadCloser, error) {
	if !isRemote(location) {
		f, err := os.Open(localPath(location))
		if errors.Is(err, os.ErrNotExist) {
			return nil, &NotFoundError{Location: location}
		}
		return f, err
	}
	attempts := t.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	delay := t.Backoff
	if delay <= 0 {
		delay = 500 * time.Millisecond
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if t.Log != nil {
				t.Log.Warn("retrying", "url", location, "attempt", i+1, "error", err)
			}
			// Jitter spreads parallel retries; it never reaches an output.
			d := delay + time.Duration(rand.Int64N(int64(delay)/2+1))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
			delay *= 2
		}
		var body io.ReadCloser
		var retry bool
		body, retry, err = t.get(ctx, location)
		if err == nil {
			return body, nil
		}
		if !retry || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w (after %d attempts)", err, attempts)
}

func (t *Transport) get(ctx context.Context, location string) (io.ReadCloser, bool, error) {
	idle := t.IdleTimeout
	if idle <= 0 {
		idle = 30 * time.Second
	}
	// A watchdog cancels the request when nothing arrives for idle.
	ctx, cancel := context.WithCancel(ctx)
	w := &watchdog{idle: idle, location: location}
	w.timer = time.AfterFunc(idle, func() { w.stalled.Store(true); cancel() })
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		w.timer.Stop()
		cancel()
		return nil, false, err
	}
	req.Header.Set("User-Agent", "alpinist")
	client := t.HTTP
	if client == nil {
		client = defaultHTTP
	}
	resp, err := client.Do(req)
	if err != nil {
		w.timer.Stop()
		cancel()
		return nil, true, w.explain(err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		w.timer.Reset(idle)
		return &watchedBody{rc: resp.Body, w: w, cancel: cancel}, false, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		w.timer.Stop()
		resp.Body.Close()
		cancel()
		return nil, false, &NotFoundError{Location: location}
	default:
		w.timer.Stop()
		resp.Body.Close()
		cancel()
		transient := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
		return nil, transient, fmt.Errorf("%s: HTTP %s", location, resp.Status)
	}
}

// watchdog ends a request that stalls.
type watchdog struct {
	idle     time.Duration
	location string
	timer    *time.Timer
	stalled  atomic.Bool
}

// explain names a stall as such, rather than as the cancellation it
// caused.
func (w *watchdog) explain(err error) error {
	if w.stalled.Load() {
		return fmt.Errorf("%s: the server sent nothing for %v (stalled)", w.location, w.idle)
	}
	return err
}

// watchedBody is a response body whose reads feed the watchdog.
type watchedBody struct {
	rc     io.ReadCloser
	w      *watchdog
	cancel context.CancelFunc
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.timer.Reset(b.w.idle)
	}
	if err != nil && err != io.EOF {
		err = b.w.explain(err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.w.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}
