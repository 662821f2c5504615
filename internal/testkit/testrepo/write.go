package testrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/index"
	"github.com/alpinist/alpinist/apk/sign"
)

// testKey is the repository's signing key and the sha256 of its public
// half (recorded in stamps: a new key rebuilds everything).
type testKey struct {
	key     *sign.Key
	pubHash string
}

// loadOrCreateKey loads DIR/private/alpinist-test.rsa, or makes the key
// pair (DIR/private/ and DIR/keys/) when there is none yet.
func loadOrCreateKey(dir string, log *slog.Logger) (*testKey, error) {
	privName := strings.TrimSuffix(KeyName, ".pub")
	privPath := filepath.Join(dir, "private", privName)
	k, err := sign.LoadKey(privPath)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("generating the test signing key", "path", privPath)
		k, err = sign.Generate(privName, 2048)
		if err != nil {
			return nil, fmt.Errorf("testrepo: %w", err)
		}
		if _, _, err := k.Save(filepath.Join(dir, "private")); err != nil {
			return nil, fmt.Errorf("testrepo: %w", err)
		}
		os.Remove(filepath.Join(dir, "private", KeyName)) // the public half lives in keys/
	} else if err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	pub := k.PublicPEM()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	pubPath := filepath.Join(dir, "keys", KeyName)
	if old, err := os.ReadFile(pubPath); err != nil || string(old) != string(pub) {
		if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
			return nil, fmt.Errorf("testrepo: %w", err)
		}
	}
	h := sha256.Sum256(pub)
	return &testKey{key: k, pubHash: hex.EncodeToString(h[:])}, nil
}

// entries converts a Tree into the .apk writer's entries.
func entries(t *Tree) []apkfile.Entry {
	var out []apkfile.Entry
	for _, e := range t.Entries() {
		a := apkfile.Entry{Path: e.Path, Mode: int64(e.Mode & 0o7777), UID: e.UID, GID: e.GID}
		switch e.Type {
		case TypeFile:
			a.Type, a.Size, a.Open = apkfile.TypeReg, e.Size, e.Open
		case TypeDir:
			a.Type = apkfile.TypeDir
		case TypeSymlink:
			a.Type, a.Linkname, a.Mode = apkfile.TypeSymlink, e.Target, 0o777
		case TypeHardlink:
			a.Type, a.Linkname = apkfile.TypeLink, e.Target
		}
		if len(e.Xattrs) > 0 {
			a.Xattrs = map[string]string{}
			for _, x := range e.Xattrs {
				a.Xattrs[x.Name] = string(x.Value)
			}
		}
		out = append(out, a)
	}
	return out
}

// writePackage writes p as a signed .apk at path and returns its
// metadata as the index lists it.
func writePackage(ctx context.Context, p *Pkg, key *testKey, path string) (*apk.Package, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, written, err := apkfile.WriteFile(filepath.Dir(path), &p.Meta, p.Scripts, entries(p.Tree), apkfile.WriteOptions{Key: key.key})
	if err != nil {
		return nil, err
	}
	if written != path {
		return nil, fmt.Errorf("wrote %s, expected %s", written, path)
	}
	return m, nil
}

// writeIndex writes the signed APKINDEX.tar.gz of metas at path.
func writeIndex(metas []*apk.Package, arch, desc string, key *testKey, path string) error {
	sorted := append([]*apk.Package(nil), metas...)
	index.Sort(sorted)
	return index.WriteFile(path, desc, sorted, index.WriteOptions{Key: key.key, Mtime: time.Unix(BuildTime, 0), RewriteArch: arch})
}
