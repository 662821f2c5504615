package repo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Cache is a content-addressed store of verified package files, keyed by
// the package checksum (the APKINDEX C: field). Several processes may share
// one cache: a file appears under its final name only once complete and
// verified (written to a temporary file, synced, then renamed), and two
// writers of the same package both end with the same bytes.
type Cache struct {
	Dir string
}

// DefaultCacheDir is $ALPINIST_CACHE, else the user cache directory's
// alpinist/ folder.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("ALPINIST_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache: no cache directory (set ALPINIST_CACHE): %w", err)
	}
	return filepath.Join(d, "alpinist"), nil
}

// OpenCache opens (creating if needed) the cache in dir.
func OpenCache(dir string) (*Cache, error) {
	for _, d := range []string{dir, filepath.Join(dir, "packages"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	return &Cache{Dir: dir}, nil
}

// Key names a checksum: sha1-HEX or sha256-HEX.
func Key(checksum []byte) (string, error) {
	switch len(checksum) {
	case 20:
		return "sha1-" + hex.EncodeToString(checksum), nil
	case 32:
		return "sha256-" + hex.EncodeToString(checksum), nil
	}
	return "", fmt.Errorf("cache: checksum of %d bytes is neither SHA-1 nor SHA-256", len(checksum))
}

// ParseKey is Key's inverse: the checksum a cache file's name (without
// .apk) stands for.
func ParseKey(key string) ([]byte, error) {
	for prefix, n := range map[string]int{"sha1-": 20, "sha256-": 32} {
		if h, ok := strings.CutPrefix(key, prefix); ok {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != n {
				break
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("cache: %q names no SHA-1 or SHA-256 checksum", key)
}

// Path is where the package with this checksum is (or would be) stored.
func (c *Cache) Path(checksum []byte) (string, error) {
	k, err := Key(checksum)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.Dir, "packages", k+".apk"), nil
}

// Lookup returns the path of a cached package and whether it is there.
func (c *Cache) Lookup(checksum []byte) (string, bool) {
	p, err := c.Path(checksum)
	if err != nil {
		return "", false
	}
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular()
}

// Put stores a package. fill writes the package into the temporary file
// and must return an error unless the content is complete and verified; on
// error nothing is kept. Put returns the final path.
func (c *Cache) Put(checksum []byte, fill func(tmp *os.File) error) (string, error) {
	final, err := c.Path(checksum)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Join(c.Dir, "tmp"), filepath.Base(final)+".*")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	keep = true
	return final, nil
}

// Clean removes temporary files that interrupted writers left behind more
// than a day ago (younger ones may belong to a build still running).
func (c *Cache) Clean() error {
	entries, err := os.ReadDir(filepath.Join(c.Dir, "tmp"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < 24*time.Hour {
			continue
		}
		if err := os.Remove(filepath.Join(c.Dir, "tmp", e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cache: %w", err)
		}
	}
	return nil
}
