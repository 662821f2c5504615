package tarread

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// entry is what a reader gives of one entry: its header (the fields
// tarread sets) and its data, or the error.
type entry struct {
	h    tar.Header
	data []byte
	err  error
}

type reader interface {
	Next() (*tar.Header, error)
	Read([]byte) (int, error)
}

// readAll reads every entry, reading the data of every other one (the
// rest skipped), until an error.
func readAll(r reader) []entry {
	var out []entry
	for i := 0; ; i++ {
		h, err := r.Next()
		if err != nil {
			return append(out, entry{err: err})
		}
		e := entry{h: *h}
		e.h.Format, e.h.Xattrs = 0, nil //nolint:staticcheck // Xattrs: archive/tar's deprecated copy
		if i%2 == 0 {
			e.data, e.err = io.ReadAll(r)
		}
		out = append(out, e)
		if e.err != nil {
			return out
		}
	}
}

func same(t *testing.T, data []byte) {
	t.Helper()
	want := readAll(tar.NewReader(bytes.NewReader(data)))
	got := readAll(NewReader(bytes.NewReader(data)))
	for i := range got {
		g := got[i]
		if errors.Is(g.err, ErrUnsupported) {
			return
		}
		if i >= len(want) {
			t.Fatalf("entry %d: archive/tar has no more, tarread has %+v", i, g)
		}
		w := want[i]
		if (g.err == nil) != (w.err == nil) || (g.err == io.EOF) != (w.err == io.EOF) {
			t.Fatalf("entry %d: error %v, archive/tar's %v", i, g.err, w.err)
		}
		if len(g.h.PAXRecords) == 0 && len(w.h.PAXRecords) == 0 {
			g.h.PAXRecords, w.h.PAXRecords = nil, nil
		}
		if !reflect.DeepEqual(g.h, w.h) || !bytes.Equal(g.data, w.data) {
			t.Fatalf("entry %d:\n%+v %q\narchive/tar:\n%+v %q", i, g.h, g.data, w.h, w.data)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, archive/tar %d", len(got), len(want))
	}
}

// sample writes an archive with archive/tar: USTAR, PAX records (long
// names, xattrs, apk's checksums), GNU long names, every entry type.
func sample(t testing.TB, format tar.Format) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	long := strings.Repeat("d/", 60) + "file"
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)},
		{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5, Uname: "root", Gname: "root", ModTime: time.Unix(1700000000, 0),
			PAXRecords: map[string]string{"APK-TOOLS.checksum.SHA1": "0123456789abcdef0123456789abcdef01234567"}},
		{Name: long, Typeflag: tar.TypeReg, Mode: 0o600, Size: 700, Uid: 1000, Gid: 1000, ModTime: time.Unix(1700000000, 0)},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox", Mode: 0o777, ModTime: time.Unix(1700000000, 0)},
		{Name: "bin/sh2", Typeflag: tar.TypeLink, Linkname: "etc/motd", ModTime: time.Unix(1700000000, 0)},
		{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666, ModTime: time.Unix(1700000000, 0)},
		{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600, ModTime: time.Unix(1700000000, 0)},
	} {
		h.Format = format
		if format != tar.FormatPAX {
			h.PAXRecords = nil
		}
		if format == tar.FormatUSTAR && len(h.Name) > 100 {
			continue
		}
		if format == tar.FormatPAX && h.Typeflag == tar.TypeReg {
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.x": "y", "APK-TOOLS.checksum.SHA1": "00"}
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		w.Write(bytes.Repeat([]byte{'x'}, int(h.Size)))
	}
	w.Close()
	return b.Bytes()
}

func TestLikeArchiveTar(t *testing.T) {
	for _, f := range []tar.Format{tar.FormatPAX, tar.FormatGNU} {
		data := sample(t, f)
		same(t, data)
		// Cut anywhere: the same entries and errors.
		for _, n := range []int{0, 1, 511, 512, 1000, 1024, 1536, len(data) - 1024, len(data) - 512, len(data) - 1} {
			same(t, data[:n])
		}
	}
	if got := readAll(NewReader(bytes.NewReader(sample(t, tar.FormatPAX)))); len(got) != 8 || got[7].err != io.EOF {
		t.Errorf("%d entries, the last %v", len(got), got[len(got)-1].err)
	}
}

// TestRealPackages reads the data parts of Alpine's real packages
// (every v3.19 x86_64 package of the fixtures) as archive/tar does.
func TestRealPackages(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(minirootfs.Real(t), "repos", "v3.19", "x86_64", "*.apk"))
	if len(files) < 90 {
		t.Fatalf("%d real packages", len(files))
	}
	entries := 0
	for _, f := range files {
		data := dataPart(t, f)
		same(t, data)
		entries += len(readAll(NewReader(bytes.NewReader(data)))) - 1
	}
	t.Logf("%d entries in %d packages", entries, len(files))
	if entries < 2000 {
		t.Errorf("%d entries in %d packages", entries, len(files))
	}
}

// dataPart is the data tar of an .apk: its third gzip member.
func dataPart(t testing.TB, p string) []byte {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var data bytes.Buffer
	for i := range 3 {
		z, err := gzip.NewReader(br)
		if err != nil {
			t.Fatalf("%s: member %d: %v", p, i, err)
		}
		z.Multistream(false)
		data.Reset()
		if _, err := io.Copy(&data, z); err != nil {
			t.Fatalf("%s: member %d: %v", p, i, err)
		}
	}
	return data.Bytes()
}

func TestUnsupported(t *testing.T) {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	w.WriteHeader(&tar.Header{Name: "g", Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}})
	w.Close()
	if _, err := NewReader(&b).Next(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a global header: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add(sample(f, tar.FormatPAX))
	f.Add(sample(f, tar.FormatGNU))
	f.Add(sample(f, tar.FormatUSTAR))
	f.Fuzz(func(t *testing.T, data []byte) {
		same(t, data)
	})
}

// BenchmarkHeaders reads the headers of the real packages' data tars
// (their data skipped), with tarread and with archive/tar.
func BenchmarkHeaders(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join(minirootfs.Real(b), "repos", "v3.19", "x86_64", "*.apk"))
	var data [][]byte
	for _, f := range files {
		data = append(data, dataPart(b, f))
	}
	for _, c := range []struct {
		name string
		open func(io.Reader) reader
	}{
		{"tarread", func(r io.Reader) reader { return NewReader(r) }},
		{"archive-tar", func(r io.Reader) reader { return tar.NewReader(r) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				for _, d := range data {
					r := c.open(bytes.NewReader(d))
					for {
						if _, err := r.Next(); err != nil {
							break
						}
					}
				}
			}
		})
	}
}
