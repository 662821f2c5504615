package sbom

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

var installedDB = `C:Q1sLPKUHsnsP2U1GTJpB9wAjqMkEc=
P:busybox
V:1.36.1-r29
A:x86_64
S:512000
I:900000
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1718000000
c:abc123
D:so:libc.musl-x86_64.so.1
p:cmd:sh=1.36.1-r29

C:Q1AQEBAQEBAQEBAQEBAQEBAQEBAQE=
P:musl
V:1.2.5-r0
A:x86_64
S:400000
I:600000
T:the musl c library
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1717000000
p:so:libc.musl-x86_64.so.1=1

C:Q1AgICAgICAgICAgICAgICAgICAgI=
P:odd_name
V:1.0-r0
A:x86_64
S:1
I:1
T:odd
U:not a url
L:custom license, see COPYING
D:!musl-dev busybox

`

func rootfsTar(t *testing.T, db string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []struct{ name, body string }{{"etc/motd", "hi"}, {InstalledPath, db}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return b.Bytes()
}

func TestDocument(t *testing.T) {
	pkgs, err := Installed(bytes.NewReader(rootfsTar(t, installedDB)))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Name: "web", Arch: "x86_64", Created: time.Unix(1700000000, 0), Tool: "alpinist-test",
		Lock: &lock.Arch{Packages: []lock.Package{
			{Name: "busybox", Version: "1.36.1-r29", Repository: "https://dl-cdn.alpinelinux.org/alpine/v3.22/main/"},
			{Name: "musl", Version: "1.2.5-r0", Repository: "../repo/main"},
		}}}
	doc, err := New(pkgs, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := doc.Write(&b); err != nil {
		t.Fatal(err)
	}
	// The same inputs, in another order, give the same bytes.
	pkgs[0], pkgs[2] = pkgs[2], pkgs[0]
	doc2, _ := New(pkgs, o)
	var b2 bytes.Buffer
	doc2.Write(&b2)
	if !bytes.Equal(b.Bytes(), b2.Bytes()) {
		t.Error("the document depends on the packages' order")
	}

	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "web-x86_64"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if ns := got["documentNamespace"].(string); !strings.HasPrefix(ns, "https://spdx.org/spdxdocs/alpinist/web-x86_64-") {
		t.Errorf("documentNamespace %s", ns)
	}
	ci := got["creationInfo"].(map[string]any)
	if ci["created"] != "2023-11-14T22:13:20Z" {
		t.Errorf("created %v", ci["created"])
	}
	byName := map[string]Package{}
	for _, p := range doc.Packages {
		byName[p.Name] = p
	}
	bb := byName["busybox"]
	if bb.VersionInfo != "1.36.1-r29" || bb.LicenseDeclared != "GPL-2.0-only" || bb.Homepage != "https://busybox.net/" ||
		bb.Supplier != "Person: Sören Tempel (soeren+alpine@soeren-tempel.net)" ||
		bb.DownloadLocation != "https://dl-cdn.alpinelinux.org/alpine/v3.22/main/x86_64/busybox-1.36.1-r29.apk" ||
		bb.SourceInfo != "built from the apk origin package busybox at aports commit abc123" ||
		bb.BuiltDate != "2024-06-10T06:13:20Z" ||
		len(bb.Checksums) != 1 || bb.Checksums[0].Algorithm != "SHA1" || bb.Checksums[0].ChecksumValue != "b0b3ca507b27b0fd94d464c9a41f70023a8c9047" ||
		bb.ExternalRefs[0].ReferenceLocator != "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64" {
		t.Errorf("busybox: %+v", bb)
	}
	if m := byName["musl"]; m.DownloadLocation != "NOASSERTION" || m.Comment != "installed from a local repository of the build host: main" {
		t.Errorf("musl: %+v", m)
	}
	odd := byName["odd_name"]
	if odd.SPDXID != "SPDXRef-Package-odd-name-1.0-r0" || odd.LicenseDeclared != "NOASSERTION" ||
		odd.LicenseComments != "apk license: custom license, see COPYING" || odd.Homepage != "" || odd.Supplier != "" {
		t.Errorf("odd_name: %+v", odd)
	}
	if os := byName["web"]; os.SPDXID != osID || os.PrimaryPackagePurpose != "OPERATING-SYSTEM" {
		t.Errorf("system package: %+v", os)
	}
	rels := map[string]bool{}
	for _, r := range doc.Relationships {
		rels[r.SPDXElementID+" "+r.RelationshipType+" "+r.RelatedSPDXElement] = true
	}
	for _, want := range []string{
		"SPDXRef-DOCUMENT DESCRIBES SPDXRef-OperatingSystem",
		"SPDXRef-OperatingSystem CONTAINS SPDXRef-Package-busybox-1.36.1-r29",
		"SPDXRef-Package-busybox-1.36.1-r29 DEPENDS_ON SPDXRef-Package-musl-1.2.5-r0", // through so:
		"SPDXRef-Package-odd-name-1.0-r0 DEPENDS_ON SPDXRef-Package-busybox-1.36.1-r29",
	} {
		if !rels[want] {
			t.Errorf("no relationship %q", want)
		}
	}
	if len(doc.Relationships) != 1+3+2 {
		t.Errorf("%d relationships, want 6 (the conflict !musl-dev is no dependency)", len(doc.Relationships))
	}
	// Every SPDXID is unique and well formed.
	seen := map[string]bool{}
	for _, p := range doc.Packages {
		if seen[p.SPDXID] || !strings.HasPrefix(p.SPDXID, "SPDXRef-") || idUnsafe.MatchString(strings.TrimPrefix(p.SPDXID, "SPDXRef-")) {
			t.Errorf("bad or duplicate SPDXID %q", p.SPDXID)
		}
		seen[p.SPDXID] = true
	}
}

func TestSPDXIDCollision(t *testing.T) {
	doc, err := New([]apk.Package{{Name: "a_b", Version: "1"}, {Name: "a+b", Version: "1"}}, Options{Name: "x", Arch: "x86"})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Packages[1].SPDXID == doc.Packages[2].SPDXID {
		t.Errorf("both are %s", doc.Packages[1].SPDXID)
	}
}

func TestInstalledErrors(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "etc/motd", Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Close()
	if _, err := Installed(&b); err == nil || !strings.Contains(err.Error(), "no apk database") {
		t.Errorf("no database: %v", err)
	}
	if _, err := Installed(bytes.NewReader(rootfsTar(t, "P:x\nZ:bad\n"))); err == nil || !strings.Contains(err.Error(), InstalledPath) {
		t.Errorf("bad database: %v", err)
	}
	if _, err := Installed(strings.NewReader("not a tar at all, not at all, no")); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("no name accepted")
	}
}

// Alpine's real minirootfs: every installed package is in the document.
func TestRealMinirootfs(t *testing.T) {
	f, err := os.Open(minirootfs.Tarball(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := Installed(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 14 {
		t.Errorf("%d packages, want 14", len(pkgs))
	}
	doc, err := New(pkgs, Options{Name: "mini", Arch: "x86_64", Tool: "t"})
	if err != nil {
		t.Fatal(err)
	}
	deps := 0
	for _, r := range doc.Relationships {
		if r.RelationshipType == "DEPENDS_ON" {
			deps++
		}
	}
	if len(doc.Packages) != 15 || deps < 10 {
		t.Errorf("%d packages, %d dependencies", len(doc.Packages), deps)
	}
	for _, p := range doc.Packages[1:] {
		if p.LicenseDeclared == "NOASSERTION" || len(p.Checksums) != 1 {
			t.Errorf("%s: license %q (%s), checksums %v", p.Name, p.LicenseDeclared, p.LicenseComments, p.Checksums)
		}
	}
}

func FuzzInstalled(f *testing.F) {
	f.Add(rootfsTar(nil, installedDB))
	f.Add(rootfsTar(nil, "P:x\nV:1\nC:Q1AQEBAQEBAQEBAQEBAQEBAQEBAQE=\nD:x y !z\np:x=2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := Installed(bytes.NewReader(data))
		if err != nil {
			return
		}
		doc, err := New(pkgs, Options{Name: "f", Arch: "x86_64"})
		if err != nil {
			t.Fatal(err)
		}
		if err := doc.Write(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
