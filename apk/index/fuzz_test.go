package index

import (
	"bytes"
	"testing"
	"time"

	"github.com/alpinist/alpinist/apk/sign"
)

func FuzzRead(f *testing.F) {
	k := genKey(f, "fuzz")
	pkgs := testPackages(f, f.TempDir(), k)
	var b bytes.Buffer
	if err := Write(&b, "fuzz", pkgs, WriteOptions{Key: k, Mtime: time.Unix(0, 0)}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	kr := sign.NewKeyring()
	kr.Add(k.Name, &k.Private.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		Read(bytes.NewReader(data), kr, "fuzz")
	})
}
