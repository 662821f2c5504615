// Package sbom writes an SPDX 2.3 JSON software bill of materials of the
// packages installed in a root filesystem, read from its apk database
// (lib/apk/db/installed): name, version, license, origin, maintainer,
// checksum, the repository each came from (from the lock), and the
// dependencies between them. The document is a pure function of its
// inputs: same rootfs, lock and date, same bytes.
package sbom

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/db"
	"github.com/alpinist/alpinist/apk/lock"
)

// InstalledPath is the apk database in a rootfs tar.
const InstalledPath = "lib/apk/db/installed"

// ErrNoDatabase is Installed's error for a rootfs without an apk
// database.
var ErrNoDatabase = fmt.Errorf("sbom: the rootfs has no %s (no apk database)", InstalledPath)

// Options describe the document.
type Options struct {
	// Name and Arch name the system (the spec's name and the arch).
	Name, Arch string
	// Created is the document's date (SOURCE_DATE_EPOCH).
	Created time.Time
	// Tool is the creator, such as "alpinist-1.0".
	Tool string
	// Lock, when set, gives each package's repository.
	Lock *lock.Arch
}

// Installed reads the installed packages' metadata from the apk database
// in the rootfs tar stream r. The files each package owns are not kept.
func Installed(r io.Reader) ([]apk.Package, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, ErrNoDatabase
		}
		if err != nil {
			return nil, fmt.Errorf("sbom: rootfs tar: %w", err)
		}
		if strings.TrimPrefix(h.Name, "./") != InstalledPath || h.Typeflag != tar.TypeReg {
			continue
		}
		ir := db.NewInstalledReader(tr)
		var pkgs []apk.Package
		for {
			in, err := ir.Next()
			if err == io.EOF {
				return pkgs, nil
			}
			if err != nil {
				return nil, fmt.Errorf("sbom: %s: %w", InstalledPath, err)
			}
			pkgs = append(pkgs, in.Package)
		}
	}
}

// Document is an SPDX 2.3 document, the fields this package writes.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says who made the document and when.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Package is one SPDX package.
type Package struct {
	SPDXID                string        `json:"SPDXID"`
	Name                  string        `json:"name"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	Supplier              string        `json:"supplier,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	Checksums             []Checksum    `json:"checksums,omitempty"`
	Homepage              string        `json:"homepage,omitempty"`
	SourceInfo            string        `json:"sourceInfo,omitempty"`
	LicenseConcluded      string        `json:"licenseConcluded"`
	LicenseDeclared       string        `json:"licenseDeclared"`
	LicenseComments       string        `json:"licenseComments,omitempty"`
	CopyrightText         string        `json:"copyrightText"`
	Description           string        `json:"description,omitempty"`
	Comment               string        `json:"comment,omitempty"`
	ExternalRefs          []ExternalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
	BuiltDate             string        `json:"builtDate,omitempty"`
}

// Checksum is a package checksum.
type Checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

// ExternalRef is a package's external reference (its purl).
type ExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

// Relationship relates two elements.
type Relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

const noAssertion = "NOASSERTION"

// osID is the SPDXID of the system as a whole.
const osID = "SPDXRef-OperatingSystem"

// New makes the document of the installed packages pkgs.
func New(pkgs []apk.Package, o Options) (*Document, error) {
	if o.Name == "" || o.Arch == "" {
		return nil, errors.New("sbom: a name and an arch are needed")
	}
	pkgs = slices.Clone(pkgs)
	slices.SortFunc(pkgs, func(a, b apk.Package) int {
		return strings.Compare(a.Name+"\x00"+a.Version, b.Name+"\x00"+b.Version)
	})
	repos := map[string]string{}
	if o.Lock != nil {
		for _, p := range o.Lock.Packages {
			repos[p.Name+"-"+p.Version] = p.Repository
		}
	}
	created := o.Created.UTC().Format(time.RFC3339)
	doc := &Document{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        o.Name + "-" + o.Arch,
		CreationInfo: CreationInfo{
			Created:  created,
			Creators: []string{"Tool: " + o.Tool},
		},
		Packages: []Package{{
			SPDXID: osID, Name: o.Name, DownloadLocation: noAssertion,
			LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
			Description: "the Alpine Linux system " + o.Name + " for " + o.Arch, PrimaryPackagePurpose: "OPERATING-SYSTEM",
		}},
		Relationships: []Relationship{{"SPDXRef-DOCUMENT", "DESCRIBES", osID}},
	}
	ids := map[string]bool{osID: true}
	idOf := make([]string, len(pkgs))
	providers := map[string]int{} // name or provided name -> package index
	for i, p := range pkgs {
		id := spdxID(p, ids)
		idOf[i] = id
		ids[id] = true
		if _, ok := providers[p.Name]; !ok {
			providers[p.Name] = i
		}
		for _, pr := range p.Provides {
			if _, ok := providers[pr.Name]; !ok {
				providers[pr.Name] = i
			}
		}
		doc.Packages = append(doc.Packages, spdxPackage(p, id, o.Arch, repos[p.Name+"-"+p.Version]))
		doc.Relationships = append(doc.Relationships, Relationship{osID, "CONTAINS", id})
	}
	for i, p := range pkgs {
		seen := map[int]bool{}
		for _, d := range p.Depends {
			j, ok := providers[d.Name]
			if d.Conflict || !ok || j == i || seen[j] {
				continue
			}
			seen[j] = true
			doc.Relationships = append(doc.Relationships, Relationship{idOf[i], "DEPENDS_ON", idOf[j]})
		}
	}
	// The namespace is unique to the document's content, as SPDX asks,
	// and the same for the same content.
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	doc.DocumentNamespace = "https://spdx.org/spdxdocs/alpinist/" + url.PathEscape(doc.Name) + "-" + hex.EncodeToString(sum[:16])
	return doc, nil
}

// Write writes the document as indented JSON.
func (d *Document) Write(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

func spdxPackage(p apk.Package, id, arch, repo string) Package {
	sp := Package{
		SPDXID: id, Name: p.Name, VersionInfo: p.Version,
		DownloadLocation: noAssertion, LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
		Homepage: p.URL, Description: p.Description,
	}
	if sp.Homepage != "" && !isURL(sp.Homepage) {
		sp.Homepage = ""
	}
	if p.Maintainer != "" {
		sp.Supplier = "Person: " + person(p.Maintainer)
	}
	switch len(p.Checksum) {
	case 20:
		sp.Checksums = []Checksum{{"SHA1", hex.EncodeToString(p.Checksum)}}
	case 32:
		sp.Checksums = []Checksum{{"SHA256", hex.EncodeToString(p.Checksum)}}
	}
	if p.License != "" {
		if licenseRE.MatchString(p.License) {
			sp.LicenseDeclared = p.License
		} else {
			sp.LicenseComments = "apk license: " + p.License
		}
	}
	if p.Origin != "" {
		sp.SourceInfo = "built from the apk origin package " + p.Origin
		if p.Commit != "" {
			sp.SourceInfo += " at aports commit " + p.Commit
		}
	}
	if p.BuildTime > 0 {
		sp.BuiltDate = time.Unix(p.BuildTime, 0).UTC().Format(time.RFC3339)
	}
	if repo != "" {
		u := lock.URL(repo)
		switch {
		case lock.Local(repo):
			// Not the host's path: it must not leak into the SBOM.
			sp.Comment = "installed from a local repository of the build host: " + lock.LocalLabel(repo)
		case isURL(u):
			sp.DownloadLocation = strings.TrimSuffix(u, "/") + "/" + arch + "/" + p.Filename()
		default:
			sp.Comment = "installed from the repository " + repo
		}
	}
	purl := "pkg:apk/alpine/" + url.PathEscape(p.Name) + "@" + url.PathEscape(p.Version) + "?arch=" + url.QueryEscape(arch)
	if p.Origin != "" && p.Origin != p.Name {
		purl += "&origin=" + url.QueryEscape(p.Origin)
	}
	sp.ExternalRefs = []ExternalRef{{"PACKAGE-MANAGER", "purl", purl}}
	return sp
}

// licenseRE accepts what has the shape of an SPDX license expression
// (identifiers, LicenseRef-s, AND, OR, WITH, parentheses); anything else
// is kept as a comment, and the declared license is NOASSERTION.
var licenseRE = regexp.MustCompile(`^\(*[A-Za-z0-9][A-Za-z0-9.+-]*\)*( +(AND|OR|WITH|and|or) +\(*[A-Za-z0-9][A-Za-z0-9.+-]*\)*)*$`)

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// spdxID is a unique SPDXID for p: SPDXRef-Package-NAME-VERSION, with
// characters SPDX does not allow replaced.
func spdxID(p apk.Package, taken map[string]bool) string {
	base := "SPDXRef-Package-" + idUnsafe.ReplaceAllString(p.Name+"-"+p.Version, "-")
	id := base
	for n := 2; taken[id]; n++ {
		id = fmt.Sprintf("%s-%d", base, n)
	}
	return id
}

// person turns "Name <mail>" into SPDX's "Name (mail)".
func person(m string) string {
	if i := strings.IndexByte(m, '<'); i >= 0 && strings.HasSuffix(m, ">") {
		return strings.TrimSpace(m[:i]) + " (" + m[i+1:len(m)-1] + ")"
	}
	return m
}

func isURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "ftp") && u.Host != ""
}
