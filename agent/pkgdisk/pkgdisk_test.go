package pkgdisk

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	m := Manifest{Arch: "x86_64", World: []string{"busybox", "alpine-base"}, Repositories: []string{"/repo/main"},
		Packages: []Package{{Name: "a", Version: "1-r0", Checksum: "Q1x", Size: 3}, {Name: "b", Version: "2-r0", Checksum: "Q1y", Tag: "@edge", Size: 5}}, SourceDateEpoch: 1700000000}
	var disk bytes.Buffer
	w, err := NewWriter(&disk, m, map[string][]byte{"k2.rsa.pub": []byte("K2"), "k1.rsa.pub": []byte("K1")})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"aaa", "bbbbb"} {
		if err := w.Add(strings.NewReader(c), int64(len(c))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Add(strings.NewReader("x"), 1); err == nil {
		t.Error("extra package accepted")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(disk.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Manifest.Keys, ",") != "k1.rsa.pub,k2.rsa.pub" || string(r.Keys["k2.rsa.pub"]) != "K2" || r.Manifest.World[1] != "alpine-base" {
		t.Errorf("%+v %q", r.Manifest, r.Keys)
	}
	var got []string
	for {
		p, pr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(pr)
		got = append(got, p.Name+"="+string(b)+p.Tag)
	}
	if strings.Join(got, " ") != "a=aaa b=bbbbb@edge" {
		t.Errorf("%v", got)
	}
	// A short write and a missing package are errors.
	w2, _ := NewWriter(io.Discard, m, nil)
	if err := w2.Add(strings.NewReader("a"), 3); err == nil {
		t.Error("short content accepted")
	}
	w3, _ := NewWriter(io.Discard, m, nil)
	if err := w3.Close(); err == nil {
		t.Error("close with packages missing accepted")
	}
	if _, err := NewReader(strings.NewReader("garbage")); err == nil {
		t.Error("garbage accepted")
	}
}
