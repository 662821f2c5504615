package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/index"
	"github.com/alpinist/alpinist/apk/sign"
)

// Client reads indexes and packages from repositories, verifying each
// against the keyring.
type Client struct {
	Transport Transport
	// Keys are the trusted signing keys. Required.
	Keys *sign.Keyring
	// Cache keeps verified packages; nil disables caching.
	Cache *Cache
	// Log receives progress and retry messages; nil discards them.
	Log *slog.Logger
	// Parallel bounds concurrent downloads (default 4).
	Parallel int
	// OnBytes, when set, is called with the size of each chunk downloaded
	// (from several goroutines at once): a progress bar's hook.
	OnBytes func(n int64)
	// Shared, when set, is asked first for each package the Cache does
	// not have: a cache builders share (alpinist build --cache-from: a
	// registry), which streams a package by its control checksum, or
	// fails with an error wrapping ErrNotShared. What it gives is
	// verified exactly as a download from the repository is; a package
	// it has that does not verify is downloaded from the repository
	// instead, with a warning.
	Shared func(ctx context.Context, checksum []byte) (io.ReadCloser, error)

	fromRepos, fromShared atomic.Int64
}

// ErrNotShared is the error of a Client's Shared source for a package it
// does not have.
var ErrNotShared = errors.New("not in the shared cache")

// Fetched counts the packages Fetch got from the repositories and from
// the Shared source (the Cache's hits are in neither).
func (c *Client) Fetched() (repositories, shared int64) {
	return c.fromRepos.Load(), c.fromShared.Load()
}

// MaxIndexSize bounds a downloaded APKINDEX.tar.gz (Alpine's main is ~1 MB).
const MaxIndexSize = 256 << 20

// Index is one repository's verified index for one arch.
type Index struct {
	Repository  Repository
	Arch        string
	Description string
	Packages    []*apk.Package
}

func (c *Client) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// transport is a copy of Transport logging to Log, so that concurrent
// fetches share no mutable state.
func (c *Client) transport() *Transport {
	t := c.Transport
	t.Log = c.Log
	return &t
}

// Indexes fetches and verifies the index of each repository for arch,
// concurrently, and returns them in the repositories' order.
func (c *Client) Indexes(ctx context.Context, repos []Repository, arch string) ([]*Index, error) {
	out := make([]*Index, len(repos))
	errs := make([]error, len(repos))
	var wg sync.WaitGroup
	for i, r := range repos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = c.Index(ctx, r, arch)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Index fetches and verifies one repository's index for arch.
func (c *Client) Index(ctx context.Context, r Repository, arch string) (*Index, error) {
	loc := r.IndexURL(arch)
	body, err := c.transport().Open(ctx, loc)
	if err != nil {
		var nf *NotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("repository %s has no index for %s (%s not found)", r, arch, loc)
		}
		return nil, fmt.Errorf("repository %s: %w", r, err)
	}
	defer body.Close()
	// The index is small; reading it whole lets a failed transfer be told
	// apart from a bad signature.
	data, err := io.ReadAll(io.LimitReader(body, MaxIndexSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	if len(data) > MaxIndexSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", loc, MaxIndexSize)
	}
	desc, pkgs, err := index.Read(bytes.NewReader(data), c.Keys, loc)
	if err != nil {
		return nil, err
	}
	c.log().Debug("index", "repository", r.String(), "arch", arch, "packages", len(pkgs), "description", desc)
	return &Index{Repository: r, Arch: arch, Description: desc, Packages: pkgs}, nil
}

// Item is a package to download.
type Item struct {
	Repository Repository
	Arch       string
	Package    *apk.Package
}

// Fetch downloads the packages (those not cached yet) in parallel,
// verifies each (signature, control checksum against the index, data hash,
// every file's checksum) and returns their paths in the cache, in items'
// order. Nothing unverified is kept. A cache is required.
func (c *Client) Fetch(ctx context.Context, items []Item) ([]string, error) {
	if c.Cache == nil {
		return nil, errors.New("repo: fetch needs a cache")
	}
	n := c.Parallel
	if n <= 0 {
		n = 4
	}
	paths := make([]string, len(items))
	errs := make([]error, len(items))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, it := range items {
		if p, ok := c.Cache.Lookup(it.Package.Checksum); ok {
			paths[i] = p
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			paths[i], errs[i] = c.fetchOne(ctx, it)
			if errs[i] == nil {
				c.log().Debug("fetched", "package", it.Package.String(), "path", paths[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return paths, nil
}

func (c *Client) fetchOne(ctx context.Context, it Item) (string, error) {
	p := it.Package
	if len(p.Checksum) == 0 {
		return "", fmt.Errorf("%s: the index gives no checksum (C:), so the package cannot be verified", p)
	}
	if c.Shared != nil {
		path, err := c.fromSharedCache(ctx, p)
		if err == nil {
			c.fromShared.Add(1)
			return path, nil
		}
		if !errors.Is(err, ErrNotShared) {
			c.log().Warn("the shared cache's copy is not taken: downloading the package", "package", p.String(), "error", err)
		}
	}
	loc := it.Repository.PackageURL(it.Arch, p.Filename())
	open := func() (io.ReadCloser, error) { return c.transport().Open(ctx, loc) }
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		path, retry, err := c.download(loc, open, p)
		if err == nil {
			c.fromRepos.Add(1)
			return path, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
		c.log().Warn("download failed, retrying", "package", p.String(), "error", err)
	}
	return "", lastErr
}

// fromSharedCache gets one package from the Shared source into the
// cache, verified as a download is.
func (c *Client) fromSharedCache(ctx context.Context, p *apk.Package) (string, error) {
	open := func() (io.ReadCloser, error) { return c.Shared(ctx, p.Checksum) }
	path, _, err := c.download("the shared cache", open, p)
	return path, err
}

// download fetches one package from loc (opened by open) into the cache;
// retry reports a transfer failure (as opposed to a verification
// failure).
func (c *Client) download(loc string, open func() (io.ReadCloser, error), p *apk.Package) (path string, retry bool, err error) {
	path, err = c.Cache.Put(p.Checksum, func(tmp *os.File) error {
		body, err := open()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		defer body.Close()
		tr := &trackingReader{r: body, onBytes: c.OnBytes}
		got, err := apkfile.Verify(io.TeeReader(tr, tmp), c.Keys)
		if tr.err != nil {
			retry = true
			return fmt.Errorf("%s: download: %w", p, tr.err)
		}
		if err != nil {
			return fmt.Errorf("%s (%s): %w", p, loc, err)
		}
		if len(p.Checksum) != len(got.Checksum) {
			// An APK v2 package is named by the SHA-1 of its control part
			// (Q1); a SHA-256 (Q2) there is apk-tools 3's.
			return fmt.Errorf("%s (%s): the index gives a %d-byte checksum %s, but an APK v2 package is identified by the SHA-1 of its control part (Q1): is this an apk-tools 3 repository?", p, loc, len(p.Checksum), apk.EncodeChecksum(p.Checksum))
		}
		if !bytes.Equal(got.Checksum, p.Checksum) {
			return fmt.Errorf("%s (%s): checksum %s does not match the index's %s", p, loc, apk.EncodeChecksum(got.Checksum), apk.EncodeChecksum(p.Checksum))
		}
		if got.Name != p.Name || got.Version != p.Version {
			return fmt.Errorf("%s (%s): the file holds %s", p, loc, got)
		}
		if d := indexDiffers(p, got); d != "" {
			return fmt.Errorf("%s (%s): the index does not describe this package: %s", p, loc, d)
		}
		return nil
	})
	return path, retry, err
}

// indexDiffers says how an index entry differs from the package's own
// .PKGINFO in what resolving and sizing rely on ("" when it does not).
func indexDiffers(idx, pkg *apk.Package) string {
	if idx.Arch != "" && pkg.Arch != "" && idx.Arch != pkg.Arch && pkg.Arch != "noarch" {
		return fmt.Sprintf("arch %s, the package says %s", idx.Arch, pkg.Arch)
	}
	if idx.InstalledSize != 0 && idx.InstalledSize != pkg.InstalledSize {
		return fmt.Sprintf("installed size %d, the package says %d", idx.InstalledSize, pkg.InstalledSize)
	}
	for _, f := range []struct {
		what     string
		idx, pkg []apk.Dependency
	}{{"depends", idx.Depends, pkg.Depends}, {"provides", idx.Provides, pkg.Provides}, {"install_if", idx.InstallIf, pkg.InstallIf}} {
		a, b := depStrings(f.idx), depStrings(f.pkg)
		if !slices.Equal(a, b) {
			return fmt.Sprintf("%s %q, the package says %q", f.what, strings.Join(a, " "), strings.Join(b, " "))
		}
	}
	return ""
}

func depStrings(ds []apk.Dependency) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	slices.Sort(out)
	return out
}

// trackingReader remembers a read error of the transfer itself.
type trackingReader struct {
	r       io.Reader
	err     error
	onBytes func(int64)
}

func (t *trackingReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n > 0 && t.onBytes != nil {
		t.onBytes(int64(n))
	}
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}
