// Package apk holds the data model shared by alpinist's APK v2 engine:
// package metadata as found in an APKINDEX, a .PKGINFO or the installed
// database, and dependency expressions. The formats themselves live in the
// sub-packages: version (version strings), sign (keys and signatures),
// apkfile (.apk files), index (APKINDEX), db (installed database),
// solver, repo (repositories and the cache) and lock (lock files).
package apk

import (
	"cmp"
	"strings"

	"github.com/alpinist/alpinist/apk/version"
)

// Package is one package's metadata. Field comments give the APKINDEX
// letter and the .PKGINFO key.
type Package struct {
	Name          string // P: pkgname
	Version       string // V: pkgver
	Arch          string // A: arch
	Size          int64  // S: size of the .apk file in bytes
	InstalledSize int64  // I: size (installed size in bytes)
	Description   string // T: pkgdesc
	URL           string // U: url
	License       string // L: license
	Origin        string // o: origin
	Maintainer    string // m: maintainer
	BuildTime     int64  // t: builddate (unix seconds)
	Commit        string // c: commit

	Depends   []Dependency // D: depend
	Provides  []Dependency // p: provides (name or name=version)
	InstallIf []Dependency // i: install_if
	Replaces  []Dependency // r: replaces

	ReplacesPriority    int  // q: replaces_priority
	ProviderPriority    int  // k: provider_priority
	HasProviderPriority bool // k: was present (0 is a valid priority)

	Triggers []string // triggers (installed db and .PKGINFO only)

	// Checksum identifies the package: the SHA-1 (APKINDEX "C:Q1…") or
	// SHA-256 ("C:Q2…") of its control gzip stream.
	Checksum []byte // C:
	// DataHash is the hex SHA-256 of the data gzip stream (.PKGINFO datahash).
	DataHash string
}

// Filename is the package's file name in a repository: NAME-VERSION.apk.
func (p *Package) Filename() string { return p.Name + "-" + p.Version + ".apk" }

// String gives NAME-VERSION, the way apk names a package in messages.
func (p *Package) String() string { return p.Name + "-" + p.Version }

// Dependency is one element of a depend, provides, install_if or replaces
// list: [!]NAME[@TAG][OP VERSION].
type Dependency struct {
	Name     string
	Op       version.Op // version.Any when there is no constraint
	Version  string     // empty when Op is version.Any
	Conflict bool       // written as !NAME
	Tag      string     // repository pin, from NAME@TAG
}

// CompareNames orders package names as apk_name_cmp_display:
// case-insensitively (ASCII, as strcasecmp), then byte-wise. It returns
// -1, 0 or 1.
func CompareNames(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := lowerASCII(a[i]), lowerASCII(b[i])
		if ca != cb {
			return cmp.Compare(ca, cb)
		}
	}
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
