package pkgdisk

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrepared: prepared packages round-trip, and the offset NextPrepared
// gives is where the data tar is in the disk file.
func TestPrepared(t *testing.T) {
	long := strings.Repeat("n", 150) // a name no ustar header holds
	m := Manifest{Arch: "x86_64", Prepared: true, SourceDateEpoch: 1700000000,
		Packages: []Package{{Name: "a", Version: "1-r0", Checksum: "Q1x"}, {Name: long, Version: "2-r0", Checksum: "Q1y"}}}
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, m, map[string][]byte{"k.rsa.pub": []byte("K")})
	if err != nil {
		t.Fatal(err)
	}
	datas := []string{"data of a", strings.Repeat("b", 1500)}
	for i, d := range datas {
		if err := w.AddPrepared([]byte("control "+m.Packages[i].Name), func(w io.Writer) error { _, err := io.WriteString(w, d); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Add(strings.NewReader("x"), 1); err == nil {
		t.Error("an .apk file accepted on a prepared disk")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	id := w.Identity()
	raw, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Next(); err == nil {
		t.Error("Next on a prepared disk")
	}
	for i := 0; ; i++ {
		p, control, data, off, err := r.NextPrepared()
		if err == io.EOF {
			if i != 2 {
				t.Errorf("%d packages", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(data)
		if p.Name != m.Packages[i].Name || string(control) != "control "+p.Name || string(b) != datas[i] {
			t.Errorf("package %d: %s %q %q", i, p.Name, control, b)
		}
		if got := string(raw[off : off+int64(len(datas[i]))]); got != datas[i] {
			t.Errorf("package %d: at offset %d the disk has %q", i, off, got[:min(len(got), 20)])
		}
	}
	// The identity leaves out the data tars: other data, the same
	// identity; another manifest, another.
	var other bytes.Buffer
	f2, _ := os.Create(filepath.Join(t.TempDir(), "disk2"))
	defer f2.Close()
	w2, _ := NewWriter(f2, m, map[string][]byte{"k.rsa.pub": []byte("K")})
	for i := range datas {
		w2.AddPrepared([]byte("control "+m.Packages[i].Name), func(w io.Writer) error { _, err := io.WriteString(w, "other"); return err })
	}
	w2.Close()
	if !bytes.Equal(w2.Identity(), id) {
		t.Error("the identity depends on the data tars")
	}
	m.Packages[0].Checksum = "Q1z"
	w3, _ := NewWriter(&other, Manifest{Arch: "x86_64", Prepared: true, Packages: m.Packages}, nil)
	if bytes.Equal(w3.Identity(), id) {
		t.Error("the identity does not depend on the manifest")
	}
	if err := w3.AddPrepared(nil, func(io.Writer) error { return nil }); err == nil {
		t.Error("prepared packages written to a disk that cannot seek")
	}
	if _, err := NewWriter(&other, Manifest{Prepared: true, Installer: "apk-tools", Tools: true}, nil); err == nil {
		t.Error("prepared packages for apk-tools accepted")
	}
}

// TestPreparedOpen reads a prepared disk as the build VM does (Open): each
// package's data is a buffered section of the disk that seeks relative
// to its start and ends at its end.
func TestPreparedOpen(t *testing.T) {
	m := Manifest{Arch: "x86_64", Prepared: true, Packages: []Package{
		{Name: "a", Version: "1-r0", Checksum: "Q1x"}, {Name: "b", Version: "2-r0", Checksum: "Q1y"}, {Name: "c", Version: "3-r0", Checksum: "Q1z"}}}
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 40000) // more than the data reader's buffer
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	datas := [][]byte{[]byte("data of a"), big, []byte("c")}
	for _, d := range datas {
		if err := w.AddPrepared([]byte("control"), func(w io.Writer) error { _, err := w.Write(d); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	read := func(rd io.Reader, n int) []byte {
		t.Helper()
		b := make([]byte, n)
		if _, err := io.ReadFull(rd, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range datas {
		_, _, data, _, err := r.NextPrepared()
		if err != nil {
			t.Fatal(err)
		}
		if i != 1 {
			if b, _ := io.ReadAll(data); !bytes.Equal(b, datas[i]) {
				t.Errorf("package %d: %q", i, b)
			}
			continue
		}
		s := data.(io.Seeker)
		if at, err := s.Seek(0, io.SeekCurrent); at != 0 || err != nil {
			t.Errorf("at %d (%v), want 0", at, err)
		}
		if b := read(data, 10); !bytes.Equal(b, big[:10]) {
			t.Errorf("first 10 bytes %v", b)
		}
		if at, _ := s.Seek(100, io.SeekCurrent); at != 110 {
			t.Errorf("seek to %d, want 110", at)
		}
		if b := read(data, 5); !bytes.Equal(b, big[110:115]) {
			t.Errorf("bytes 110-115: %v", b)
		}
		if at, _ := s.Seek(30000, io.SeekStart); at != 30000 {
			t.Errorf("seek to %d, want 30000", at)
		}
		if b, err := io.ReadAll(data); err != nil || !bytes.Equal(b, big[30000:]) {
			t.Errorf("from 30000: %d bytes (%v), want %d", len(b), err, len(big)-30000)
		}
		if _, err := s.Seek(-1, io.SeekStart); err == nil {
			t.Error("a seek before the start")
		}
		s.Seek(int64(len(big)+10), io.SeekStart)
		if n, err := data.Read(make([]byte, 4)); n != 0 || err != io.EOF {
			t.Errorf("past the end: %d, %v", n, err)
		}
	}
	if _, _, _, _, err := r.NextPrepared(); err != io.EOF {
		t.Errorf("after the last package: %v", err)
	}
}
