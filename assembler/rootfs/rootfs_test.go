package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
	"time"
)

type ent struct {
	h    tar.Header
	body string
}

func mk(t *testing.T, ents []ent) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.h
		h.Size = int64(len(e.body))
		if h.Typeflag == tar.TypeLink || h.Typeflag == tar.TypeDir || h.Typeflag == tar.TypeSymlink {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return b.Bytes()
}

func list(t *testing.T, data []byte) []string {
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		s := string(h.Typeflag) + " " + h.Name
		if h.Linkname != "" {
			s += " -> " + h.Linkname
		}
		if len(b) > 0 {
			s += " = " + string(b)
		}
		if h.Uname != "" || !h.AccessTime.IsZero() {
			t.Errorf("%s: names or atime kept", h.Name)
		}
		out = append(out, s+" @"+h.ModTime.UTC().Format("2006"))
	}
}

func TestCanonicalize(t *testing.T) {
	late := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	early := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	in := mk(t, []ent{
		{tar.Header{Name: "./usr/bin/b", Typeflag: tar.TypeReg, Mode: 0o755, ModTime: late, Uname: "root"}, "bee"},
		{tar.Header{Name: "./usr/bin/a", Typeflag: tar.TypeLink, Linkname: "./usr/bin/b", ModTime: early}, ""},
		{tar.Header{Name: "./a-b", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: early}, "dash"},
		{tar.Header{Name: "./a/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: early}, ""},
		{tar.Header{Name: "./a/z", Typeflag: tar.TypeSymlink, Linkname: "../a-b", ModTime: early}, ""},
		{tar.Header{Name: "./a-b", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: early}, "dash again"},
		{tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: early}, ""},
	})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(in)
	zw.Close()
	r, err := Decompress(&gz)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	epoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	st, err := Canonicalize(&out, r, epoch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got := list(t, out.Bytes())
	want := []string{
		"5 a/ @2020",
		"2 a/z -> ../a-b @2020",
		"0 a-b = dash again @2020",
		"5 usr/ @2025",
		"5 usr/bin/ @2025",
		"0 usr/bin/a = bee @2025", // the link sorts first: it carries the data
		"1 usr/bin/b -> usr/bin/a @2025",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st.Entries != 7 || !st.Newest.Equal(late) {
		t.Errorf("stats %+v", st)
	}
	// The same input in another order gives the same bytes.
	var again bytes.Buffer
	Canonicalize(&again, bytes.NewReader(in), epoch, t.TempDir())
	if !bytes.Equal(again.Bytes(), out.Bytes()) {
		t.Error("not reproducible")
	}
}

func TestErrors(t *testing.T) {
	for name, ents := range map[string][]ent{
		"leaves the root":          {{tar.Header{Name: "../etc/passwd", Typeflag: tar.TypeReg}, "x"}},
		"not a file in":            {{tar.Header{Name: "x", Typeflag: tar.TypeLink, Linkname: "nowhere"}, ""}},
		"not a file system object": {{tar.Header{Name: "x", Typeflag: 'V'}, ""}},
	} {
		if _, err := Canonicalize(io.Discard, bytes.NewReader(mk(t, ents)), time.Time{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Canonicalize(io.Discard, strings.NewReader(strings.Repeat("garbage!", 100)), time.Time{}, t.TempDir()); err == nil {
		t.Error("garbage accepted")
	}
}

func TestComparePaths(t *testing.T) {
	ps := []string{"a-b", "a/z", "a", "b", "a/b/c", "a/b"}
	want := "a a/b a/b/c a/z a-b b"
	slicesSort(ps)
	if strings.Join(ps, " ") != want {
		t.Errorf("%v", ps)
	}
}

func slicesSort(ps []string) {
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if comparePaths(ps[j], ps[i]) < 0 {
				ps[i], ps[j] = ps[j], ps[i]
			}
		}
	}
}
