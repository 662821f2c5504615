package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/regcache"
)

// The build cache keeps the rootfs tar of each build VM run under the
// hash of everything the VM was given: its kernel, its initramfs (the
// agent and modules) and its package disk (the manifest with the
// configuration and SOURCE_DATE_EPOCH, the keys, every package, the
// spec's files). The same inputs make the same rootfs, so a build whose
// inputs are all unchanged takes the tar from the cache and boots no VM.
//
// Entries live in CACHE/rootfs/KEY.{tar,log,json}. A build holds
// KEY.lock (flock) from the lookup to the store: a second build of the
// same system waits and then finds the first one's tar.

// RootfsDir is the build cache's directory in a cache directory.
func RootfsDir(cacheDir string) string { return filepath.Join(cacheDir, "rootfs") }

// Entry is a build cache entry's metadata (KEY.json).
type Entry struct {
	Key     string    `json:"key"`
	Name    string    `json:"name"`
	Arch    string    `json:"arch"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	// Used is when a build last took it (also the tar's mtime).
	Used time.Time `json:"-"`
}

type rootfsCache struct {
	dir string
	log *slog.Logger
}

func (c rootfsCache) path(key, ext string) string { return filepath.Join(c.dir, key+ext) }

// lock takes the key's lock, waiting (and saying so) while another build
// of the same inputs holds it.
func (c rootfsCache) lock(ctx context.Context, key string) (func(), error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	f, err := os.OpenFile(c.path(key, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		c.log.Info("another build of the same system is running: waiting for it", "key", key[:16])
		done := make(chan error, 1)
		go func() { done <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			f.Close() // the blocked flock returns with the file closed
			return nil, ctx.Err()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("build cache: lock: %w", err)
		}
	}
	return func() { f.Close() }, nil
}

// open opens the cached tar of key, nil when there is none, and copies
// its console log to console.
func (c rootfsCache) open(key string, console io.Writer) (*os.File, error) {
	src, err := os.Open(c.path(key, ".tar"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	now := time.Now()
	os.Chtimes(c.path(key, ".tar"), now, now) // for prune: used now
	if console != nil {
		fmt.Fprintf(console, "alpinist: the rootfs comes from the build cache (%s); the log of the build VM that made it follows.\n\n", key[:16])
		if l, err := os.Open(c.path(key, ".log")); err == nil {
			io.Copy(console, l)
			l.Close()
		}
	}
	return src, nil
}

// put stores the tar and the console log of a build under key.
func (c rootfsCache) put(key, tarPath, logPath string, e Entry) error {
	meta, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(c.path(key, ".json"), 0o644, func(f *os.File) error { _, err := f.Write(meta); return err }); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	for _, p := range []struct{ src, ext string }{{logPath, ".log"}, {tarPath, ".tar"}} { // the tar last: it makes the entry
		in, err := os.Open(p.src)
		if err != nil {
			return fmt.Errorf("build cache: %w", err)
		}
		err = atomicfile.Write(c.path(key, p.ext), 0o644, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
		in.Close()
		if err != nil {
			return fmt.Errorf("build cache: %w", err)
		}
	}
	return nil
}

// Entries lists the build cache of a cache directory, oldest use first.
func Entries(cacheDir string) ([]Entry, error) {
	dir := RootfsDir(cacheDir)
	names, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, tarPath := range names {
		key := filepath.Base(tarPath[:len(tarPath)-len(".tar")])
		st, err := os.Stat(tarPath)
		if err != nil {
			continue
		}
		e := Entry{Key: key, Size: st.Size(), Used: st.ModTime()}
		if b, err := os.ReadFile(filepath.Join(dir, key+".json")); err == nil {
			json.Unmarshal(b, &e)
			e.Key, e.Size = key, st.Size()
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.Used.Compare(b.Used) })
	return out, nil
}

// Remove deletes a build cache entry, unless a build holds it.
func Remove(cacheDir, key string) error {
	c := rootfsCache{dir: RootfsDir(cacheDir)}
	f, err := os.OpenFile(c.path(key, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("%s is in use by a build", key[:16])
	}
	var errs []error
	for _, ext := range []string{".tar", ".log", ".json", ".lock"} {
		if err := os.Remove(c.path(key, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PullEntry pulls the shared cache's build-cache entry of key into the
// build cache of cacheDir (regcache.ErrMiss when it has none). The
// entry's files are checked as they stream (digests), its metadata must
// name key, and it appears whole or not at all.
func PullEntry(cacheDir string, from *regcache.Cache, key string) error {
	return pullEntry(rootfsCache{dir: RootfsDir(cacheDir)}, from, key)
}

func pullEntry(cache rootfsCache, from *regcache.Cache, key string) error {
	if err := os.MkdirAll(cache.dir, 0o755); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cache.dir, ".pull-"+key[:min(16, len(key))]+"-")
	if err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	names := map[string]string{regcache.RootfsTarType: "tar", regcache.RootfsLogType: "log", regcache.RootfsEntryType: "json"}
	err = from.GetRootfs(key, func(mt string) (io.Writer, error) {
		f, err := os.Create(filepath.Join(tmp, names[mt]))
		if f != nil {
			files = append(files, f)
		}
		return f, err
	})
	if err != nil {
		return err
	}
	var e Entry
	b, err := os.ReadFile(filepath.Join(tmp, "json"))
	if err == nil {
		err = json.Unmarshal(b, &e)
	}
	if err != nil || e.Key != key {
		return fmt.Errorf("%s: the entry's metadata is not the build key's (%q, %v)", from, e.Key, err)
	}
	return cache.put(key, filepath.Join(tmp, "tar"), filepath.Join(tmp, "log"), e)
}

// PushEntry pushes the build-cache entry of key in cacheDir to the
// shared cache (unless it has it), and says whether it pushed.
func PushEntry(cacheDir string, to *regcache.Cache, key string) (bool, error) {
	return rootfsCache{dir: RootfsDir(cacheDir)}.push(to, key)
}

func (c rootfsCache) push(to *regcache.Cache, key string) (bool, error) {
	return to.PutRootfs(key, c.path(key, ".tar"), c.path(key, ".log"), c.path(key, ".json"))
}
