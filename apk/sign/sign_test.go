package sign

import (
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"archive/tar"
)

func TestEntryNames(t *testing.T) {
	for _, c := range []struct {
		name string
		alg  Algorithm
		key  string
		ok   bool
	}{
		{".SIGN.RSA.alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub", RSA, "alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub", true},
		{".SIGN.RSA256.k.rsa.pub", RSA256, "k.rsa.pub", true},
		{".SIGN.RSA512.k.rsa.pub", RSA512, "k.rsa.pub", true},
		{".SIGN.DSA.k.rsa.pub", 0, "", false},
		{".SIGN.RSA.", 0, "", false},
		{".SIGN.RSA.a/b", 0, "", false},
		{".PKGINFO", 0, "", false},
	} {
		alg, key, ok := ParseEntryName(c.name)
		if ok != c.ok || (ok && (alg != c.alg || key != c.key)) {
			t.Errorf("%s: got %v %q %v", c.name, alg, key, ok)
		}
		if ok && EntryName(alg, key) != c.name {
			t.Errorf("%s: EntryName gives %s", c.name, EntryName(alg, key))
		}
	}
	if PublicName("x") != "x.rsa.pub" || PublicName("x.rsa") != "x.rsa.pub" || PublicName("x.rsa.pub") != "x.rsa.pub" {
		t.Error("PublicName")
	}
}

func TestSaveLoadSignVerify(t *testing.T) {
	k, err := Generate("me@example.invalid-1", 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub, err := k.Save(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(priv) != "me@example.invalid-1.rsa" || filepath.Base(pub) != "me@example.invalid-1.rsa.pub" {
		t.Errorf("paths %s %s", priv, pub)
	}
	if st, _ := os.Stat(priv); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode())
	}
	if _, _, err := k.Save(dir); err == nil {
		t.Error("Save overwrote a private key")
	}
	k2, err := LoadKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Name != k.Name || !k2.Private.Equal(k.Private) {
		t.Error("loaded key differs")
	}
	// PKCS#1 private keys (older openssl genrsa) load too.
	p1 := filepath.Join(dir, "old.rsa")
	os.WriteFile(p1, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.Private)}), 0o600)
	if k3, err := LoadKey(p1); err != nil || k3.Name != "old.rsa.pub" {
		t.Errorf("PKCS#1: %v %v", k3, err)
	}
	if _, err := LoadKey(pub); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Errorf("loading a public key as private: %v", err)
	}

	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(kr.Names(), ",") != k.Name {
		t.Errorf("keyring %v", kr.Names())
	}
	for _, alg := range []Algorithm{RSA, RSA256, RSA512} {
		h := alg.NewHash()
		h.Write([]byte("signed part"))
		d := h.Sum(nil)
		sig, err := k.Sign(alg, d)
		if err != nil {
			t.Fatal(err)
		}
		s, err := kr.Check([]Signature{{Alg: alg, KeyName: k.Name, Value: sig}}, func(Algorithm) []byte { return d })
		if err != nil || s.KeyName != k.Name {
			t.Errorf("%v: %v", alg, err)
		}
		bad := bytes.Clone(d)
		bad[0] ^= 1
		if _, err := kr.Check([]Signature{{Alg: alg, KeyName: k.Name, Value: sig}}, func(Algorithm) []byte { return bad }); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%v: tampered digest: %v", alg, err)
		}
		if _, err := kr.Check([]Signature{{Alg: alg, KeyName: "other.rsa.pub", Value: sig}}, func(Algorithm) []byte { return d }); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "other.rsa.pub") {
			t.Errorf("%v: unknown key: %v", alg, err)
		}
	}
}

func TestKeyringErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadKeyring(dir); err == nil || !strings.Contains(err.Error(), "no public key") {
		t.Errorf("empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "broken.rsa.pub"), []byte("not a key"), 0o644)
	if _, err := LoadKeyring(dir); err == nil || !strings.Contains(err.Error(), "broken.rsa.pub") {
		t.Errorf("broken key: %v", err)
	}
	if _, err := LoadKeyring(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing: %v", err)
	}
}

// TestAlpineKeys loads Alpine's real public keys from the minirootfs
// fixture when it is extracted nearby (ALPINIST_MINIROOTFS as a directory).
func TestAlpineKeys(t *testing.T) {
	dir := os.Getenv("ALPINIST_MINIROOTFS")
	if st, err := os.Stat(filepath.Join(dir, "etc/apk/keys")); dir == "" || err != nil || !st.IsDir() {
		t.Skip("ALPINIST_MINIROOTFS is not an extracted minirootfs")
	}
	kr, err := LoadKeyring(filepath.Join(dir, "etc/apk/keys"))
	if err != nil || kr.Len() < 2 {
		t.Fatalf("%v %v", kr.Names(), err)
	}
}

func TestWriteSignatureMatchesOpenSSL(t *testing.T) {
	k, err := Generate("ossl", 2048)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	h := RSA256.NewHash()
	h.Write([]byte("payload"))
	if err := k.WriteSignature(&b, RSA256, h.Sum(nil), time.Unix(1704067200, 0)); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != ".SIGN.RSA256.ossl.rsa.pub" || hdr.Mode != 0o644 || hdr.Uname != "root" {
		t.Fatalf("%+v %v", hdr, err)
	}
	sig, _ := io.ReadAll(tr)
	if len(sig) != 256 {
		t.Errorf("signature of %d bytes", len(sig))
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: cannot cross-check")
	}
	dir := t.TempDir()
	_, pub, _ := k.Save(dir)
	os.WriteFile(filepath.Join(dir, "payload"), []byte("payload"), 0o644)
	os.WriteFile(filepath.Join(dir, "sig"), sig, 0o644)
	out, err := exec.Command(openssl, "dgst", "-sha256", "-verify", pub, "-signature", filepath.Join(dir, "sig"), filepath.Join(dir, "payload")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Errorf("openssl: %v: %s", err, out)
	}
}
