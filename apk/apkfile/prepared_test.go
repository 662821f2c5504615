package apkfile

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk/sign"
)

// TestReadPrepared: the control tar and the data tar Read hands on give,
// through ReadPrepared, the same package, entries and contents as Read.
func TestReadPrepared(t *testing.T) {
	ka, _ := testKeys(t)
	data, _ := build(t, ka, sign.RSA256)
	entries := func(got *[]string) func(h *tar.Header, r io.Reader) error {
		return func(h *tar.Header, r io.Reader) error {
			b, _ := io.ReadAll(r)
			*got = append(*got, typeLetter(h.Typeflag)+h.Name+"="+string(b))
			return nil
		}
	}
	var want, got []string
	var dataTar bytes.Buffer
	p, err := Read(bytes.NewReader(data), ReadOptions{Keys: ring(t, ka), DataTar: &dataTar, Entry: entries(&want)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ControlTar) == 0 || dataTar.Len()%512 != 0 || dataTar.Len() == 0 {
		t.Fatalf("control %d bytes, data tar %d bytes", len(p.ControlTar), dataTar.Len())
	}
	controlled := false
	q, err := ReadPrepared(p.ControlTar, bytes.NewReader(dataTar.Bytes()), ReadOptions{Entry: entries(&got), Control: func(c *Package) error {
		controlled = len(got) == 0 && c.Info.Name == "hello" && string(c.Scripts["post-install"]) == string(sampleScripts["post-install"])
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !controlled || q.Info.Version != p.Info.Version || q.Info.DataHash != p.Info.DataHash || q.Files != p.Files {
		t.Errorf("prepared %+v (control called first: %v), read %+v", q.Info, controlled, p.Info)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("prepared entries\n%q\nread\n%q", got, want)
	}
	// The entries are still checked: a data tar with a path out of the
	// root is refused.
	var bad bytes.Buffer
	tw := tar.NewWriter(&bad)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../etc/passwd", Mode: 0o644})
	tw.Close()
	if _, err := ReadPrepared(p.ControlTar, &bad, ReadOptions{}); err == nil {
		t.Error("a data tar escaping the root was accepted")
	}
	if _, err := ReadPrepared([]byte("not a tar"), &dataTar, ReadOptions{}); err == nil {
		t.Error("a control part without .PKGINFO was accepted")
	}
}
