// Package sign holds the RSA keys that sign APK v2 packages and indexes,
// the keyring that verifies them, and the signature stream that starts
// every signed .apk and APKINDEX.tar.gz.
//
// Conventions are those of abuild and apk-tools 2.x: a private key NAME.rsa
// (PEM, PKCS#1 or PKCS#8) and its public key NAME.rsa.pub (PEM, PKIX); a
// signature is one tar entry ".SIGN.RSA.NAME.rsa.pub" (RSA PKCS#1 v1.5 over
// SHA-1) or ".SIGN.RSA256.NAME.rsa.pub" (SHA-256) whose content is the
// signature of the gzip member that follows it, in a gzip member of its
// own with the tar end-of-archive cut off.
package sign

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"
)

// Algorithm is a signature's digest: the word after ".SIGN." in the
// signature entry's name.
type Algorithm int

// The algorithms apk-tools 2.x verifies. abuild signs with RSA (SHA-1) by
// default; RSA256 is what newer tooling uses.
const (
	RSA    Algorithm = iota // ".SIGN.RSA.": PKCS#1 v1.5 with SHA-1
	RSA256                  // ".SIGN.RSA256.": PKCS#1 v1.5 with SHA-256
	RSA512                  // ".SIGN.RSA512.": PKCS#1 v1.5 with SHA-512
)

var algorithms = []struct {
	alg  Algorithm
	word string
	hash crypto.Hash
}{
	// Longest words first: "RSA" is a prefix of the others.
	{RSA512, "RSA512", crypto.SHA512},
	{RSA256, "RSA256", crypto.SHA256},
	{RSA, "RSA", crypto.SHA1},
}

func (a Algorithm) info() (string, crypto.Hash) {
	for _, x := range algorithms {
		if x.alg == a {
			return x.word, x.hash
		}
	}
	return fmt.Sprintf("Algorithm(%d)", int(a)), 0
}

// String is the algorithm's word in a signature name ("RSA", "RSA256").
func (a Algorithm) String() string { w, _ := a.info(); return w }

// NewHash returns the digest the algorithm signs.
func (a Algorithm) NewHash() hash.Hash {
	switch a {
	case RSA256:
		return sha256.New()
	case RSA512:
		return sha512.New()
	default:
		return sha1.New()
	}
}

// ParseAlgorithm reads "RSA", "RSA256" or "RSA512" (case-insensitive, and
// "sha1"/"sha256"/"sha512" as synonyms).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToUpper(s) {
	case "RSA", "SHA1", "SHA-1":
		return RSA, nil
	case "RSA256", "SHA256", "SHA-256":
		return RSA256, nil
	case "RSA512", "SHA512", "SHA-512":
		return RSA512, nil
	}
	return 0, fmt.Errorf("sign: unknown signature type %q (want RSA or RSA256)", s)
}

// EntryName is the tar entry name of a signature by the named public key:
// ".SIGN.RSA.alpinist-test.rsa.pub".
func EntryName(alg Algorithm, keyName string) string {
	return ".SIGN." + alg.String() + "." + keyName
}

// ParseEntryName splits a signature entry name into its algorithm and key
// name. ok is false for names apk-tools would not treat as a signature it
// can check (other prefixes, DSA, no key name).
func ParseEntryName(name string) (alg Algorithm, keyName string, ok bool) {
	rest, found := strings.CutPrefix(name, ".SIGN.")
	if !found {
		return 0, "", false
	}
	for _, x := range algorithms {
		if k, found := strings.CutPrefix(rest, x.word+"."); found && k != "" && !strings.Contains(k, "/") {
			return x.alg, k, true
		}
	}
	return 0, "", false
}

// DefaultBits is the size of generated keys (abuild-keygen's default).
const DefaultBits = 4096

// Key is a private signing key and the file name of its public half, which
// names the key in signatures and in keyrings.
type Key struct {
	// Name is the public key's file name, e.g. "alpinist-test.rsa.pub".
	Name    string
	Private *rsa.PrivateKey
}

// PublicName returns the public key file name for a key called name:
// "alpinist-test" and "alpinist-test.rsa" both give "alpinist-test.rsa.pub".
func PublicName(name string) string {
	name = strings.TrimSuffix(name, ".pub")
	if !strings.HasSuffix(name, ".rsa") {
		name += ".rsa"
	}
	return name + ".pub"
}

// Generate makes a new RSA key of the given size (DefaultBits when 0).
func Generate(name string, bits int) (*Key, error) {
	if bits == 0 {
		bits = DefaultBits
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("sign: generate %s: %w", name, err)
	}
	return &Key{Name: PublicName(name), Private: k}, nil
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("sign: bad key name %q (a file name without slashes)", name)
	}
	return nil
}

// PrivateName is the private key's file name: Name without ".pub".
func (k *Key) PrivateName() string { return strings.TrimSuffix(k.Name, ".pub") }

// PublicPEM is the public key as abuild-keygen writes it (PEM "PUBLIC KEY",
// PKIX), the form apk-tools reads from its keys directory.
func (k *Key) PublicPEM() []byte { return PublicPEM(&k.Private.PublicKey) }

// PublicPEM encodes a public key as PEM "PUBLIC KEY" (PKIX).
func PublicPEM(pub *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // an *rsa.PublicKey always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// PrivatePEM is the private key as PEM "PRIVATE KEY" (PKCS#8), as
// OpenSSL 3's genrsa writes it.
func (k *Key) PrivatePEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Save writes DIR/NAME.rsa (mode 0600) and DIR/NAME.rsa.pub (0644), each
// through a temporary file and a rename, and returns their paths. It does
// not overwrite an existing private key.
func (k *Key) Save(dir string) (privPath, pubPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("sign: %w", err)
	}
	privPath = filepath.Join(dir, k.PrivateName())
	pubPath = filepath.Join(dir, k.Name)
	if _, err := os.Lstat(privPath); err == nil {
		return "", "", fmt.Errorf("sign: %s already exists; not overwriting a private key", privPath)
	}
	if err := writeFileAtomic(privPath, k.PrivatePEM(), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(pubPath, k.PublicPEM(), 0o644); err != nil {
		return "", "", err
	}
	return privPath, pubPath, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.WriteBytes(path, data, mode); err != nil {
		return fmt.Errorf("sign: %s: %w", path, err)
	}
	return nil
}

// LoadKey reads a private key file (PEM, PKCS#1 "RSA PRIVATE KEY" or
// PKCS#8 "PRIVATE KEY"). Its public name is the file's base name plus
// ".pub", as abuild-sign derives it.
func LoadKey(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("sign: %s: %w", path, err)
	}
	return &Key{Name: filepath.Base(path) + ".pub", Private: k}, nil
}

// ParsePrivateKey decodes the first PEM block of data as an RSA private key.
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data (want an RSA private key)")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T, not an RSA key", k)
		}
		return rk, nil
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		return nil, errors.New("this is a public key; signing needs the private key")
	}
	return nil, fmt.Errorf("PEM block %q is not an RSA private key", block.Type)
}

// ParsePublicKey decodes the first PEM block of data as an RSA public key
// ("PUBLIC KEY", PKIX, as apk-tools reads it; "RSA PUBLIC KEY", PKCS#1,
// is accepted too).
func ParsePublicKey(data []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data (want an RSA public key)")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("a %T, not an RSA key", k)
		}
		return rk, nil
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	}
	return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
}

// Sign signs a digest made with alg.NewHash.
func (k *Key) Sign(alg Algorithm, digest []byte) ([]byte, error) {
	_, h := alg.info()
	if h == 0 {
		return nil, fmt.Errorf("sign: unknown algorithm %v", alg)
	}
	sig, err := rsa.SignPKCS1v15(nil, k.Private, h, digest)
	if err != nil {
		return nil, fmt.Errorf("sign: %s: %w", k.Name, err)
	}
	return sig, nil
}

// Verify checks a signature of digest by pub.
func Verify(pub *rsa.PublicKey, alg Algorithm, digest, sig []byte) error {
	_, h := alg.info()
	if h == 0 {
		return fmt.Errorf("unknown algorithm %v", alg)
	}
	return rsa.VerifyPKCS1v15(pub, h, digest, sig)
}

// WriteSignature writes the signature stream for a signed part whose
// digest (made with alg.NewHash over the part's compressed bytes) is
// given: one gzip member holding a tar entry EntryName(alg, k.Name), mode
// 0644, owned by root, modified at mtime, without the end-of-archive.
func (k *Key) WriteSignature(w io.Writer, alg Algorithm, digest []byte, mtime time.Time) error {
	sig, err := k.Sign(alg, digest)
	if err != nil {
		return err
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     EntryName(alg, k.Name),
		Mode:     0o644,
		Size:     int64(len(sig)),
		ModTime:  mtime.UTC().Truncate(time.Second),
		Uname:    "root",
		Gname:    "root",
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if _, err := tw.Write(sig); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	// Flush pads the entry; no Close: apk reads signature, control and
	// data as one tar stream, so only the last part has the end marker.
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return GzipMember(w, tarBuf.Bytes())
}

// GzipMember writes data as one gzip member at the best compression, with
// no name and no time in its header, so equal input gives equal bytes.
func GzipMember(w io.Writer, data []byte) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(data); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	return nil
}
