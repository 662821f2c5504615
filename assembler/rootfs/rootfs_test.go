package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
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
	st, err := Canonicalize(context.Background(), &out, r, epoch, t.TempDir())
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
	Canonicalize(context.Background(), &again, bytes.NewReader(in), epoch, t.TempDir())
	if !bytes.Equal(again.Bytes(), out.Bytes()) {
		t.Error("not reproducible")
	}
}

func TestErrors(t *testing.T) {
	for name, ents := range map[string][]ent{
		"leaves the root":          {{tar.Header{Name: "../etc/passwd", Typeflag: tar.TypeReg}, "x"}},
		"not a file in":            {{tar.Header{Name: "x", Typeflag: tar.TypeLink, Linkname: "nowhere"}, ""}},
		"not a file system object": {{tar.Header{Name: "x", Typeflag: 'V'}, ""}},
		// Issue 17: what the tar, OCI and docker outputs carried.
		"etc/x is under etc, a symlink": {{tar.Header{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/"}, ""},
			{tar.Header{Name: "etc/x", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}},
		"a/b is under a, not a directory": {{tar.Header{Name: "a", Typeflag: tar.TypeReg}, "x"}, {tar.Header{Name: "a/b", Typeflag: tar.TypeReg}, "y"}},
		"past PATH_MAX":                   {{tar.Header{Name: strings.Repeat("d/", 2100) + "x", Typeflag: tar.TypeReg}, ""}},
		"past NAME_MAX":                   {{tar.Header{Name: strings.Repeat("n", 256), Typeflag: tar.TypeReg}, ""}},
		"deeper than 256 levels":          {{tar.Header{Name: strings.Repeat("d/", 300) + "x", Typeflag: tar.TypeReg}, ""}},
		"owner 0:4294967296 out of range": {{tar.Header{Name: "x", Typeflag: tar.TypeReg, Gid: 1 << 32}, ""}},
		"hard link to /etc/shadow, which is not a file in the tar": {{tar.Header{Name: "x", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, ""}},
	} {
		if _, err := Canonicalize(context.Background(), io.Discard, bytes.NewReader(mk(t, ents)), time.Time{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Canonicalize(context.Background(), io.Discard, strings.NewReader(strings.Repeat("garbage!", 100)), time.Time{}, t.TempDir()); err == nil {
		t.Error("garbage accepted")
	}
	// Names with a leading "/" or "./" are the same names, relative.
	var out bytes.Buffer
	if _, err := Canonicalize(context.Background(), &out, bytes.NewReader(mk(t, []ent{{tar.Header{Name: "/etc/x", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}})), time.Time{}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if got := list(t, out.Bytes()); len(got) != 2 || !strings.HasPrefix(got[1], "0 etc/x") {
		t.Errorf("got %v", got)
	}
}

// TestDeepPath: one path 100,000 levels deep (a 200 KB tar) grew a 10 GB
// tar and more than 8 GB of memory; it is refused at once. A path at the
// depth bound gives an output linear in the input.
func TestDeepPath(t *testing.T) {
	deep := mk(t, []ent{{tar.Header{Name: strings.Repeat("a/", 100_000) + "x", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}})
	start := time.Now()
	if _, err := Canonicalize(context.Background(), io.Discard, bytes.NewReader(deep), time.Time{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "past PATH_MAX") {
		t.Errorf("100,000 levels: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("100,000 levels took %v to refuse", d)
	}
	in := mk(t, []ent{{tar.Header{Name: strings.Repeat("a/", MaxDepth-1) + "x", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}})
	var out bytes.Buffer
	if _, err := Canonicalize(context.Background(), &out, bytes.NewReader(in), time.Time{}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if out.Len() > linearBound(len(in)) {
		t.Errorf("%d bytes in, %d out: past %d", len(in), out.Len(), linearBound(len(in)))
	}
}

// linearBound is the most output Canonicalize may make of n bytes: each
// implied parent directory costs at most a PAX header and a tar header
// (1.5 KiB), and one entry of at least 1 KiB implies at most MaxDepth.
func linearBound(n int) int { return (MaxDepth*1536/1024+4)*n + 64<<10 }

// TestTimesClamped: an mtime of 10^13 s failed only at the OCI step with
// a raw MarshalJSON error, one of -10^12 was kept. Every time is clamped
// to what every output can hold: 1970 to 9999.
func TestTimesClamped(t *testing.T) {
	in := mk(t, []ent{
		{tar.Header{Name: "future", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(1e13, 0)}, "f"},
		{tar.Header{Name: "past", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(-1e12, 0)}, "p"},
	})
	var out bytes.Buffer
	if _, err := Canonicalize(context.Background(), &out, bytes.NewReader(in), time.Time{}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	got := list(t, out.Bytes())
	if len(got) != 2 || !strings.HasSuffix(got[0], "@9999") || !strings.HasSuffix(got[1], "@1970") {
		t.Errorf("got %v", got)
	}
}

// TestCanceled: a canceled context stops the work.
func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in := mk(t, []ent{{tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644}, "x"}})
	if _, err := Canonicalize(ctx, io.Discard, bytes.NewReader(in), time.Time{}, t.TempDir()); err == nil {
		t.Error("a canceled context did not stop Canonicalize")
	}
}
