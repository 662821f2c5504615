package sign

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Keyring is a set of trusted public keys by file name, like apk-tools'
// keys directory (/etc/apk/keys): a signature ".SIGN.RSA.NAME" is checked
// with the key called NAME, and a signature by a key not in the ring is
// untrusted.
type Keyring struct {
	keys map[string]*rsa.PublicKey
}

// NewKeyring returns an empty keyring.
func NewKeyring() *Keyring { return &Keyring{keys: map[string]*rsa.PublicKey{}} }

// Add trusts pub under name (a public key file name).
func (kr *Keyring) Add(name string, pub *rsa.PublicKey) error {
	if err := checkName(name); err != nil {
		return err
	}
	kr.keys[name] = pub
	return nil
}

// AddPEM parses a PEM public key and trusts it under name.
func (kr *Keyring) AddPEM(name string, data []byte) error {
	pub, err := ParsePublicKey(data)
	if err != nil {
		return fmt.Errorf("sign: key %s: %w", name, err)
	}
	return kr.Add(name, pub)
}

// AddFile trusts the public key in a file, under the file's base name.
func (kr *Keyring) AddFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return fmt.Errorf("sign: %s: %w", path, err)
	}
	return kr.Add(filepath.Base(path), pub)
}

// AddDir trusts every public key file in dir (not recursing), as apk
// reads its keys directory. Files whose names do not end in ".pub" are
// skipped unless they hold a PEM public key; a ".pub" file that is not a
// valid public key is an error naming it. A directory without any key
// is an error too: a keyring that trusts nothing is surely a mistake.
func (kr *Keyring) AddDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sign: keys: %w", err)
	}
	n := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		pub, err := ParsePublicKey(data)
		if err != nil {
			if strings.HasSuffix(e.Name(), ".pub") {
				return fmt.Errorf("sign: %s: %w", p, err)
			}
			continue
		}
		if err := kr.Add(e.Name(), pub); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("sign: keys: %s holds no public key (*.rsa.pub)", dir)
	}
	return nil
}

// LoadKeyring builds a keyring from directories and files: a directory
// contributes every public key in it, a file its one key.
func LoadKeyring(paths ...string) (*Keyring, error) {
	kr := NewKeyring()
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("sign: keys: %s does not exist", p)
			}
			return nil, fmt.Errorf("sign: keys: %w", err)
		}
		if st.IsDir() {
			err = kr.AddDir(p)
		} else {
			err = kr.AddFile(p)
		}
		if err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// Lookup returns the key trusted under name.
func (kr *Keyring) Lookup(name string) (*rsa.PublicKey, bool) {
	if kr == nil {
		return nil, false
	}
	k, ok := kr.keys[name]
	return k, ok
}

// Names lists the trusted key names, sorted.
func (kr *Keyring) Names() []string {
	if kr == nil {
		return nil
	}
	var n []string
	for k := range kr.keys {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// Len is the number of trusted keys.
func (kr *Keyring) Len() int {
	if kr == nil {
		return 0
	}
	return len(kr.keys)
}

// Signature is one signature entry read from a signature stream.
type Signature struct {
	Alg     Algorithm
	KeyName string
	Value   []byte
}

// ErrUntrusted is wrapped by errors for signatures by keys not in the
// keyring (apk's "UNTRUSTED signature").
var ErrUntrusted = errors.New("UNTRUSTED signature")

// ErrBadSignature is wrapped by errors for signatures that do not match.
var ErrBadSignature = errors.New("BAD signature")

// Check verifies a signed part's digests against sigs as apk-tools does:
// the first signature whose key is in the ring decides; digests maps each
// algorithm to the part's digest with that algorithm. It returns the
// deciding signature. No trusted signature gives an error wrapping
// ErrUntrusted that names the keys the part was signed with.
func (kr *Keyring) Check(sigs []Signature, digests func(Algorithm) []byte) (*Signature, error) {
	var names []string
	for i := range sigs {
		s := &sigs[i]
		names = append(names, s.KeyName)
		pub, ok := kr.Lookup(s.KeyName)
		if !ok {
			continue
		}
		if err := Verify(pub, s.Alg, digests(s.Alg), s.Value); err != nil {
			return nil, fmt.Errorf("%w: signed by %s (%s) but the signature does not match: the file was modified or the key is wrong", ErrBadSignature, s.KeyName, s.Alg)
		}
		return s, nil
	}
	if len(sigs) == 0 {
		return nil, fmt.Errorf("%w: not signed", ErrUntrusted)
	}
	return nil, fmt.Errorf("%w: signed by %s, which is not among the trusted keys (%s)", ErrUntrusted, strings.Join(names, ", "), strings.Join(kr.Names(), ", "))
}
