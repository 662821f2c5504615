package testrepo

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/alpinist/alpinist/arch"
)

// DebArch maps an Alpine architecture to Debian's name for it.
// (arch.All's Debian).
func DebArch(alpineArch string) (string, error) {
	if a, _ := arch.Lookup(alpineArch); a.Debian != "" {
		return a.Debian, nil
	}
	return "", fmt.Errorf("testrepo: architecture %q is not supported (%s)", alpineArch, strings.Join(arch.Where(func(a arch.Arch) bool { return a.Debian != "" }), ", "))
}

// Deb is one Debian binary package as apt describes it.
type Deb struct {
	Package  string // Debian package name
	Arch     string // Debian architecture of the package: amd64, arm64, all
	Version  string // Debian version
	Filename string // base name of the .deb in the archive pool
	SHA256   string // hex SHA-256 of the .deb
	Depends  string // the Depends field as written
	Path     string // the cached .deb on disk, once fetched
}

func (d *Deb) String() string { return d.Package + ":" + d.Arch + "=" + d.Version }

// Debian fetches Debian packages through apt-get and caches the .deb
// files in a directory. It records every package it hands out, so the
// generator can stamp its output with its exact inputs.
type Debian struct {
	CacheDir string
	Log      *slog.Logger

	mu   sync.Mutex
	used map[string]*Deb // by name:arch
	memo *aptMemo
}

// aptMemo keeps what apt-cache showed, by the name asked for: apt
// rebuilds its cache at each call (seconds with eight architectures
// when Dir::Cache::pkgcache is off, as in Debian's container images).
type aptMemo struct {
	mu   sync.Mutex
	debs map[string]*Deb
}

// NewDebian returns a Debian fetcher caching .debs in cacheDir.
func NewDebian(cacheDir string, log *slog.Logger) *Debian {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Debian{CacheDir: cacheDir, Log: log, used: map[string]*Deb{}, memo: &aptMemo{debs: map[string]*Deb{}}}
}

// Fork returns a fetcher with its own record of the packages it hands
// out, sharing d's cache and what apt-cache showed d.
func (d *Debian) Fork() *Debian {
	f := NewDebian(d.CacheDir, d.Log)
	f.memo = d.memo
	return f
}

// aptCacheArgs give apt a binary cache of its package lists in our cache
// directory. Debian's container images turn apt's own off
// (Dir::Cache::pkgcache ""), and apt then parses every list at each
// call: 4.5 s with the eight architectures' lists, 0.05 s with the
// cache. apt rebuilds it when the lists change.
func (d *Debian) aptCacheArgs() []string {
	dir := filepath.Join(d.CacheDir, "apt-cache")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil
	}
	return []string{"-o", "Dir::Cache=" + dir, "-o", "Dir::Cache::pkgcache=pkgcache.bin", "-o", "Dir::Cache::srcpkgcache=srcpkgcache.bin"}
}

// Prefetch asks apt-cache about all the names at once, so that Show
// finds them without a call of its own; names without a candidate are
// left for Show to report.
func (d *Debian) Prefetch(ctx context.Context, names []string) {
	if len(names) == 0 {
		return
	}
	// apt-cache prints the packages it found even when it fails on others.
	out, _ := exec.CommandContext(ctx, "apt-cache", append(d.aptCacheArgs(), append([]string{"show", "--no-all-versions"}, names...)...)...).Output()
	byKey := showIndex(parseAptShow(out))
	d.memo.mu.Lock()
	defer d.memo.mu.Unlock()
	for _, n := range names {
		if deb := lookupShown(byKey, n); deb != nil {
			d.memo.debs[n] = deb
		}
	}
}

// Show asks apt-cache for the candidate version of each name (NAME or
// NAME:ARCH), in order.
func (d *Debian) Show(ctx context.Context, names ...string) ([]*Deb, error) {
	res := make([]*Deb, len(names))
	var missing []string
	d.memo.mu.Lock()
	for i, n := range names {
		if deb := d.memo.debs[n]; deb != nil {
			c := *deb
			res[i] = &c
		} else {
			missing = append(missing, n)
		}
	}
	d.memo.mu.Unlock()
	if len(missing) == 0 {
		return res, nil
	}
	args := append(d.aptCacheArgs(), append([]string{"show", "--no-all-versions"}, missing...)...)
	cmd := exec.CommandContext(ctx, "apt-cache", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s: %w: %s (run apt-get update; for another arch's packages dpkg --add-architecture ARCH first: scripts/deps.sh does both)",
			strings.Join(missing, " "), err, strings.TrimSpace(stderr.String()))
	}
	byKey := showIndex(parseAptShow(out))
	d.memo.mu.Lock()
	defer d.memo.mu.Unlock()
	for i, n := range names {
		if res[i] != nil {
			continue
		}
		deb := lookupShown(byKey, n)
		if deb == nil {
			return nil, fmt.Errorf("apt-cache show: no candidate for Debian package %s", n)
		}
		d.memo.debs[n] = deb
		c := *deb
		res[i] = &c
	}
	return res, nil
}

// showIndex indexes apt-cache show's packages by NAME:ARCH and by NAME
// (the first shown).
func showIndex(debs []*Deb) map[string]*Deb {
	byKey := map[string]*Deb{}
	for _, deb := range debs {
		byKey[deb.Package+":"+deb.Arch] = deb
		if _, ok := byKey[deb.Package]; !ok {
			byKey[deb.Package] = deb
		}
	}
	return byKey
}

// lookupShown finds a name (NAME or NAME:ARCH) in showIndex's index.
func lookupShown(byKey map[string]*Deb, n string) *Deb {
	deb := byKey[n]
	if deb == nil && strings.HasSuffix(n, ":all") {
		deb = byKey[strings.TrimSuffix(n, ":all")]
	}
	if deb == nil {
		// NAME:ARCH of an arch-all package is shown as Architecture: all.
		if name, _, ok := strings.Cut(n, ":"); ok {
			deb = byKey[name+":all"]
		}
	}
	return deb
}

// parseAptShow reads apt-cache show's RFC 822 paragraphs.
func parseAptShow(out []byte) []*Deb {
	var debs []*Deb
	var cur *Deb
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			cur = nil
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if cur == nil {
			cur = &Deb{}
			debs = append(debs, cur)
		}
		switch k {
		case "Package":
			cur.Package = v
		case "Architecture":
			cur.Arch = v
		case "Version":
			cur.Version = v
		case "Filename":
			cur.Filename = path.Base(v)
		case "SHA256":
			cur.SHA256 = v
		case "Depends":
			cur.Depends = v
		}
	}
	return debs
}

// DependsNames lists the first alternative of each element of a Depends
// field, without version constraints or architecture qualifiers.
func DependsNames(depends string) []string {
	var names []string
	for _, el := range strings.Split(depends, ",") {
		alt, _, _ := strings.Cut(el, "|")
		alt = strings.TrimSpace(alt)
		if i := strings.IndexAny(alt, " ("); i >= 0 {
			alt = alt[:i]
		}
		alt, _, _ = strings.Cut(alt, ":")
		if alt != "" {
			names = append(names, alt)
		}
	}
	return names
}

// Get returns the candidate of the Debian package name for debArch
// (use "all" or the target arch for arch-independent packages), fetched
// into the cache.
func (d *Debian) Get(ctx context.Context, name, debArch string) (*Deb, error) {
	key := name + ":" + debArch
	d.mu.Lock()
	if deb, ok := d.used[key]; ok {
		d.mu.Unlock()
		return deb, nil
	}
	d.mu.Unlock()
	debs, err := d.Show(ctx, key)
	if err != nil {
		return nil, err
	}
	deb := debs[0]
	if err := d.Fetch(ctx, deb); err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.used[key] = deb
	d.mu.Unlock()
	return deb, nil
}

// Used returns the packages handed out by Get, sorted by name:arch.
func (d *Debian) Used() []*Deb {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*Deb
	for _, deb := range d.used {
		out = append(out, deb)
	}
	sortDebs(out)
	return out
}

func sortDebs(debs []*Deb) {
	for i := 1; i < len(debs); i++ {
		for j := i; j > 0 && debs[j].Package+":"+debs[j].Arch < debs[j-1].Package+":"+debs[j-1].Arch; j-- {
			debs[j], debs[j-1] = debs[j-1], debs[j]
		}
	}
}

// Fetch makes sure deb is in the cache (downloading it with apt-get
// download when it is not) and sets deb.Path.
func (d *Debian) Fetch(ctx context.Context, deb *Deb) error {
	if deb.Filename == "" || strings.ContainsAny(deb.Filename, "/\\") {
		return fmt.Errorf("debian %s: bad pool file name %q", deb, deb.Filename)
	}
	dest := filepath.Join(d.CacheDir, deb.Filename)
	if err := checkSHA256(dest, deb.SHA256); err == nil {
		deb.Path = dest
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		d.Log.Warn("cached .deb is bad; downloading again", "file", dest, "err", err)
	}
	if err := os.MkdirAll(d.CacheDir, 0o755); err != nil {
		return fmt.Errorf("debian %s: %w", deb, err)
	}
	tmp, err := os.MkdirTemp(d.CacheDir, ".download-")
	if err != nil {
		return fmt.Errorf("debian %s: %w", deb, err)
	}
	defer os.RemoveAll(tmp)
	d.Log.Info("downloading", "deb", deb.String())
	args := append(d.aptCacheArgs(), "download", "-q")
	if os.Geteuid() == 0 {
		// apt drops to the _apt user, which cannot write to our 0700 temp dir.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	args = append(args, deb.Package+":"+deb.Arch+"="+deb.Version)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("debian %s: apt-get download: %w: %s", deb, err, strings.TrimSpace(string(out)))
	}
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("debian %s: %w", deb, err)
	}
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".deb") {
		return fmt.Errorf("debian %s: apt-get download left %d files, want one .deb", deb, len(ents))
	}
	got := filepath.Join(tmp, ents[0].Name())
	if err := checkSHA256(got, deb.SHA256); err != nil {
		return fmt.Errorf("debian %s: %w", deb, err)
	}
	if err := os.Rename(got, dest); err != nil {
		return fmt.Errorf("debian %s: %w", deb, err)
	}
	deb.Path = dest
	return nil
}

func checkSHA256(file, want string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if want == "" {
		return fmt.Errorf("%s: apt gave no SHA256 to check it against", file)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: sha256 %s, apt says %s", file, got, want)
	}
	return nil
}

// DebFile is one entry of an extracted .deb.
type DebFile struct {
	Path     string      // tree path, no leading "./" or "/"
	Type     EntryType   // TypeFile, TypeDir, TypeSymlink or TypeHardlink
	Mode     fs.FileMode // permission bits (07777)
	Target   string      // symlink text, or hardlink target tree path
	Size     int64
	DiskPath string // where a regular file was written, when it was kept
}

// DebTree is the part of a .deb's file tree that was extracted.
type DebTree struct {
	Deb   *Deb
	Files map[string]*DebFile
}

// WalkDeb streams the data tar of a .deb (dpkg-deb --fsys-tarfile) and
// calls fn for each entry with its cleaned path; r reads a regular
// file's content.
func WalkDeb(ctx context.Context, deb *Deb, fn func(name string, hdr *tar.Header, r io.Reader) error) error {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb.Path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("debian %s: %w", deb, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("debian %s: dpkg-deb: %w", deb, err)
	}
	werr := walkTar(out, fn)
	if werr != nil {
		// Stop dpkg-deb rather than draining a large archive.
		_ = cmd.Process.Kill()
		_, _ = io.Copy(io.Discard, out)
	}
	err = cmd.Wait()
	if werr != nil {
		return fmt.Errorf("debian %s: %w", deb, werr)
	}
	if err != nil {
		return fmt.Errorf("debian %s: dpkg-deb --fsys-tarfile: %w: %s", deb, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func walkTar(r io.Reader, fn func(name string, hdr *tar.Header, r io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("data tar: %w", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		if err := fn(name, hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

// ExtractDeb reads the .deb's tree, keeping the entries for which keep
// returns true; kept regular files are written under dir (at their tree
// paths). Links are recorded, not created.
func ExtractDeb(ctx context.Context, deb *Deb, dir string, keep func(name string) bool) (*DebTree, error) {
	t := &DebTree{Deb: deb, Files: map[string]*DebFile{}}
	err := WalkDeb(ctx, deb, func(name string, hdr *tar.Header, r io.Reader) error {
		if !keep(name) {
			return nil
		}
		f := &DebFile{Path: name, Mode: fs.FileMode(hdr.Mode & 0o7777), Size: hdr.Size}
		switch hdr.Typeflag {
		case tar.TypeDir:
			f.Type = TypeDir
		case tar.TypeSymlink:
			f.Type, f.Target = TypeSymlink, hdr.Linkname
		case tar.TypeLink:
			f.Type, f.Target = TypeHardlink, strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		case tar.TypeReg:
			f.Type = TypeFile
			f.DiskPath = filepath.Join(dir, filepath.FromSlash(name))
			if err := writeFile(f.DiskPath, r); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
		}
		t.Files[name] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func writeFile(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Resolve follows symlinks (relative or absolute, within the tree) from
// p to a regular file of the tree.
func (t *DebTree) Resolve(p string) (*DebFile, error) {
	cur := strings.TrimPrefix(path.Clean("/"+p), "/")
	for range 40 {
		f, ok := t.Files[cur]
		if !ok {
			return nil, fmt.Errorf("debian %s: %s: not in the extracted tree", t.Deb, cur)
		}
		switch f.Type {
		case TypeFile:
			return f, nil
		case TypeHardlink:
			cur = f.Target
		case TypeSymlink:
			if strings.HasPrefix(f.Target, "/") {
				cur = strings.TrimPrefix(path.Clean(f.Target), "/")
			} else {
				cur = strings.TrimPrefix(path.Clean("/"+path.Join(path.Dir(cur), f.Target)), "/")
			}
		default:
			return nil, fmt.Errorf("debian %s: %s is a %s", t.Deb, cur, f.Type)
		}
	}
	return nil, fmt.Errorf("debian %s: %s: too many levels of symbolic links", t.Deb, p)
}
