package apkfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"github.com/alpinist/alpinist/apk/gzmember"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/sign"
)

var (
	keyOnce sync.Once
	keys    [2]*sign.Key
)

// testKeys returns two 2048-bit keys, made once per test binary.
func testKeys(t testing.TB) (*sign.Key, *sign.Key) {
	keyOnce.Do(func() {
		for i, n := range []string{"test-a", "test-b"} {
			k, err := sign.Generate(n, 2048)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		}
	})
	return keys[0], keys[1]
}

func ring(t testing.TB, ks ...*sign.Key) *sign.Keyring {
	kr := sign.NewKeyring()
	for _, k := range ks {
		if err := kr.Add(k.Name, &k.Private.PublicKey); err != nil {
			t.Fatal(err)
		}
	}
	return kr
}

func bytesFile(p string, mode int64, data string) Entry {
	return Entry{Path: p, Type: TypeReg, Mode: mode, Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }}
}

func sampleMeta() *apk.Package {
	d, _ := apk.ParseDependencies("so:libc.musl-x86_64.so.1 busybox>=1.36 !conflict")
	p, _ := apk.ParseDependencies("cmd:hello=1.2-r3 so:libhello.so.1=1.2")
	ii, _ := apk.ParseDependencies("hello-base foo")
	rp, _ := apk.ParseDependencies("old-hello")
	return &apk.Package{
		Name: "hello", Version: "1.2-r3", Arch: "x86_64", Description: "a test package",
		URL: "https://example.invalid/hello", License: "MIT AND BSD-2-Clause", Origin: "hello-src",
		Maintainer: "Someone <someone@example.invalid>", BuildTime: 1704067200, Commit: "0123456789abcdef",
		Depends: d, Provides: p, InstallIf: ii, Replaces: rp, ReplacesPriority: 5,
		ProviderPriority: 10, HasProviderPriority: true, Triggers: []string{"/usr/share/hello/*", "/etc/hello.d"},
	}
}

func sampleEntries() []Entry {
	return []Entry{
		{Path: "usr", Type: TypeDir, Mode: 0o755},
		{Path: "usr/bin", Type: TypeDir, Mode: 0o755},
		bytesFile("usr/bin/hello", 0o755, "#!/bin/sh\necho hello\n"),
		{Path: "usr/bin/hi", Type: TypeSymlink, Mode: 0o777, Linkname: "hello"},
		{Path: "usr/bin/hello2", Type: TypeLink, Linkname: "usr/bin/hello"},
		{Path: "etc", Type: TypeDir, Mode: 0o755},
		{Path: "etc/hello.conf", Type: TypeReg, Mode: 0o640, GID: 42, Size: 0,
			Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }},
		{Path: "var", Type: TypeDir, Mode: 0o755},
		{Path: "var/tmp", Type: TypeDir, Mode: 0o1777},
		{Path: "usr/bin/ping", Type: TypeReg, Mode: 0o4755, Size: 4,
			Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
			Open:   func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("ping")), nil }},
	}
}

var sampleScripts = map[string][]byte{
	"post-install": []byte("#!/bin/sh\necho installed\n"),
	"trigger":      []byte("#!/bin/sh\necho triggered \"$@\"\n"),
}

func build(t testing.TB, k *sign.Key, alg sign.Algorithm) ([]byte, *apk.Package) {
	t.Helper()
	var b bytes.Buffer
	m, err := Write(&b, sampleMeta(), sampleScripts, sampleEntries(), WriteOptions{Key: k, Alg: alg, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), m
}

func TestRoundTrip(t *testing.T) {
	ka, _ := testKeys(t)
	for _, alg := range []sign.Algorithm{sign.RSA, sign.RSA256, sign.RSA512} {
		t.Run(alg.String(), func(t *testing.T) {
			data, m := build(t, ka, alg)
			if m.Size != int64(len(data)) || len(m.Checksum) != 20 || len(m.DataHash) != 64 {
				t.Fatalf("metadata not filled: size %d/%d checksum %x datahash %q", m.Size, len(data), m.Checksum, m.DataHash)
			}
			if m.InstalledSize != int64(len("#!/bin/sh\necho hello\n")+4) {
				t.Errorf("installed size %d", m.InstalledSize)
			}
			var names []string
			contents := map[string]string{}
			p, err := Read(bytes.NewReader(data), ReadOptions{Keys: ring(t, ka), Control: func(p *Package) error {
				if len(names) != 0 || p.Info.Name != "hello" || p.Scripts["post-install"] == nil || p.Signer == nil {
					t.Errorf("Control called with %+v after %d entries", p, len(names))
				}
				names = append(names, "control")
				return nil
			}, Entry: func(h *tar.Header, r io.Reader) error {
				names = append(names, typeLetter(h.Typeflag)+h.Name)
				b, _ := io.ReadAll(r)
				contents[h.Name] = string(b)
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			if p.Signer == nil || p.Signer.KeyName != ka.Name || p.Signer.Alg != alg {
				t.Errorf("signer %+v", p.Signer)
			}
			got, want := p.Info, m
			if apk.FormatDependencies(got.Depends) != apk.FormatDependencies(want.Depends) ||
				apk.FormatDependencies(got.Provides) != apk.FormatDependencies(want.Provides) ||
				apk.FormatDependencies(got.InstallIf) != apk.FormatDependencies(want.InstallIf) ||
				apk.FormatDependencies(got.Replaces) != apk.FormatDependencies(want.Replaces) ||
				got.ReplacesPriority != 5 || got.ProviderPriority != 10 || !got.HasProviderPriority ||
				strings.Join(got.Triggers, " ") != "/usr/share/hello/* /etc/hello.d" ||
				got.Name != want.Name || got.Version != want.Version || got.Arch != want.Arch ||
				got.Description != want.Description || got.URL != want.URL || got.License != want.License ||
				got.Origin != want.Origin || got.Maintainer != want.Maintainer || got.BuildTime != want.BuildTime ||
				got.Commit != want.Commit || got.InstalledSize != want.InstalledSize || got.DataHash != want.DataHash ||
				!bytes.Equal(got.Checksum, want.Checksum) || got.Size != want.Size {
				t.Errorf("read back\n%+v\nwrote\n%+v", got, want)
			}
			if string(p.Scripts["post-install"]) != string(sampleScripts["post-install"]) || string(p.Scripts["trigger"]) != string(sampleScripts["trigger"]) || len(p.Scripts) != 2 {
				t.Errorf("scripts %q", p.Scripts)
			}
			wantNames := "control d:etc f:etc/hello.conf d:usr d:usr/bin f:usr/bin/hello h:usr/bin/hello2 s:usr/bin/hi f:usr/bin/ping d:var d:var/tmp"
			if strings.Join(names, " ") != wantNames {
				t.Errorf("entries %s\nwant    %s", strings.Join(names, " "), wantNames)
			}
			if contents["usr/bin/ping"] != "ping" {
				t.Errorf("content %q", contents["usr/bin/ping"])
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	ka, _ := testKeys(t)
	a, _ := build(t, ka, sign.RSA)
	b, _ := build(t, ka, sign.RSA)
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same package differ")
	}
}

func TestWrongAndMissingKey(t *testing.T) {
	ka, kb := testKeys(t)
	data, _ := build(t, ka, sign.RSA)
	_, err := Read(bytes.NewReader(data), ReadOptions{Keys: ring(t, kb)})
	if !errors.Is(err, sign.ErrUntrusted) || !strings.Contains(err.Error(), "hello-1.2-r3") || !strings.Contains(err.Error(), ka.Name) {
		t.Errorf("missing key: %v", err)
	}
	_, err = Read(bytes.NewReader(data), ReadOptions{})
	if !errors.Is(err, sign.ErrUntrusted) {
		t.Errorf("no keys: %v", err)
	}
	// The right name with another key's material: a bad signature.
	kr := sign.NewKeyring()
	kr.Add(ka.Name, &kb.Private.PublicKey)
	_, err = Read(bytes.NewReader(data), ReadOptions{Keys: kr})
	if !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("wrong key material: %v", err)
	}
	// AllowUntrusted reads it (hashes still checked).
	if _, err := Read(bytes.NewReader(data), ReadOptions{Keys: ring(t, kb), AllowUntrusted: true}); err != nil {
		t.Errorf("allow untrusted: %v", err)
	}
}

// TestTamper flips one byte at many offsets across all three members:
// every change must be caught.
func TestTamper(t *testing.T) {
	ka, _ := testKeys(t)
	data, _ := build(t, ka, sign.RSA)
	kr := ring(t, ka)
	step := (len(data)-600)/300 + 1
	// The signature member is covered by nothing but the signature check
	// (its gzip header and its deflate padding bits can change freely, for
	// apk-tools as here): tamper with everything after it.
	sigEnd, err := gzmember.FirstMemberSize(data)
	if err != nil {
		t.Fatal(err)
	}
	for off := int(sigEnd); off < len(data); off += step {
		bad := bytes.Clone(data)
		bad[off] ^= 0x01
		if _, err := Read(bytes.NewReader(bad), ReadOptions{Keys: kr}); err == nil {
			t.Errorf("byte %d of %d flipped: accepted", off, len(data))
		}
	}
	for _, n := range []int{0, 10, len(data) / 2, len(data) - 1} {
		if _, err := Read(bytes.NewReader(data[:n]), ReadOptions{Keys: kr}); err == nil {
			t.Errorf("truncated to %d bytes: accepted", n)
		}
	}
	if _, err := Read(bytes.NewReader(append(bytes.Clone(data), "junk"...)), ReadOptions{Keys: kr}); err == nil {
		t.Error("trailing junk accepted")
	}
}

func TestMaxDataSize(t *testing.T) {
	ka, _ := testKeys(t)
	data, _ := build(t, ka, sign.RSA)
	_, err := Read(bytes.NewReader(data), ReadOptions{Keys: ring(t, ka), MaxDataSize: 1000})
	if err == nil || !strings.Contains(err.Error(), "bomb") {
		t.Errorf("cap: %v", err)
	}
}

func TestWriteRejects(t *testing.T) {
	ka, _ := testKeys(t)
	cases := []struct {
		name    string
		meta    func(*apk.Package)
		scripts map[string][]byte
		ents    []Entry
		want    string
	}{
		{"dotdot", nil, nil, []Entry{bytesFile("../x", 0o644, "x")}, "leaves the root"},
		{"absolute", nil, nil, []Entry{bytesFile("/x", 0o644, "x")}, "bad path"},
		{"twice", nil, nil, []Entry{bytesFile("x", 0o644, "x"), bytesFile("x", 0o644, "y")}, "given twice"},
		{"hardlink later", nil, nil, []Entry{{Path: "a", Type: TypeLink, Linkname: "b"}, bytesFile("b", 0o644, "x")}, "not a regular file earlier"},
		{"parent file", nil, nil, []Entry{bytesFile("a", 0o644, "x"), bytesFile("a/b", 0o644, "x")}, "not a directory"},
		{"size lie", nil, nil, []Entry{{Path: "a", Type: TypeReg, Size: 5, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }}}, "expected 5"},
		{"unknown script", nil, map[string][]byte{"post-whatever": nil}, nil, "unknown script"},
		{"trigger without dirs", func(p *apk.Package) { p.Triggers = nil }, map[string][]byte{"trigger": []byte("x")}, nil, "trigger"},
		{"newline", func(p *apk.Package) { p.Description = "a\ndepend = evil" }, nil, nil, "newline"},
		{"no arch", func(p *apk.Package) { p.Arch = "" }, nil, nil, "required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := sampleMeta()
			m.Triggers = nil
			if c.scripts["trigger"] != nil {
				m.Triggers = []string{"/x"}
			}
			if c.meta != nil {
				c.meta(m)
			}
			_, err := Write(io.Discard, m, c.scripts, c.ents, WriteOptions{Key: ka, TempDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "hello") {
				t.Errorf("got %v, want an error naming the package and %q", err, c.want)
			}
		})
	}
}

func TestWriteFileLeavesNothingOnError(t *testing.T) {
	ka, _ := testKeys(t)
	dir := t.TempDir()
	_, _, err := WriteFile(dir, sampleMeta(), nil, []Entry{bytesFile("../x", 0o644, "x")}, WriteOptions{Key: ka})
	if err == nil {
		t.Fatal("accepted a bad entry")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("left %v behind", ents)
	}
	m, p, err := WriteFile(dir, sampleMeta(), sampleScripts, sampleEntries(), WriteOptions{Key: ka})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "hello-1.2-r3.apk" {
		t.Errorf("path %s", p)
	}
	st, _ := os.Stat(p)
	if st.Size() != m.Size {
		t.Errorf("size %d, meta says %d", st.Size(), m.Size)
	}
}

func typeLetter(t byte) string {
	switch t {
	case tar.TypeDir:
		return "d:"
	case tar.TypeSymlink:
		return "s:"
	case tar.TypeLink:
		return "h:"
	case tar.TypeReg:
		return "f:"
	}
	return string(t) + ":"
}

// TestPKGINFOFolded: abuild 3.7 (Alpine 3.13) folded a long license onto a
// tab-indented line. apk skips that line, as it skips every line that is
// not "key = value", and so does the index: L: is the first line alone.
func TestPKGINFOFolded(t *testing.T) {
	in := "pkgname = libblkid\npkgver = 2.36.1-r1\nlicense = GPL-3.0-or-later AND\n\tLGPL-2.1-or-later AND BSD-3-Clause\nnot a field\narch = aarch64\n"
	p, err := ParsePKGINFO(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if p.License != "GPL-3.0-or-later AND" || p.Arch != "aarch64" {
		t.Errorf("license %q arch %q", p.License, p.Arch)
	}
}
