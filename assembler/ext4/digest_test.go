package ext4

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/assembler/rootfs"
)

// noReaderAt hides a reader's ReadAt: the digest is then read back from
// the image once written.
type noReaderAt struct{ io.ReadSeeker }

// TestDigest: Stats.SHA256 is the sha256 of the image's bytes, made
// beside the writing (the tar an io.ReaderAt) or after it (not), with
// or without a UUID given, with many files, holes and a size given;
// neither asking for it nor giving the tar's digest (TarSHA256) changes
// a byte of the image.
func TestDigest(t *testing.T) {
	ents := everyKind(t)
	for i := range 300 {
		ents = append(ents, entry{tar.Header{Name: "many/f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i/26)), Typeflag: tar.TypeReg, Mode: 0o644}, bytes.Repeat([]byte{byte(i)}, i*97)})
	}
	data := makeTar(t, ents)
	tarSum := func() ([]byte, error) { s := sha256.Sum256(data); return s[:], nil }
	for _, o := range []Options{{}, {UUID: [16]byte{1, 2, 3}}, {Size: 64 << 20}, {TarSHA256: tarSum}} {
		o.Time = epoch
		plain, st := build(t, data, Options{Time: epoch, UUID: o.UUID, Size: o.Size})
		want, err := os.ReadFile(plain)
		if err != nil {
			t.Fatal(err)
		}
		o.Digest = true
		for name, src := range map[string]io.ReadSeeker{"ReaderAt": bytes.NewReader(data), "stream": noReaderAt{bytes.NewReader(data)}} {
			f, err := os.Create(filepath.Join(t.TempDir(), "fs.ext4"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Build(f, src, o)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			img, _ := os.ReadFile(f.Name())
			f.Close()
			if !bytes.Equal(img, want) || got.UUID != st.UUID {
				t.Fatalf("%s, %+v: asking for the digest changed the image", name, o)
			}
			if got.SHA256 != sha256.Sum256(want) {
				t.Errorf("%s, %+v: digest %x, want %x", name, o, got.SHA256, sha256.Sum256(want))
			}
		}
	}
}

// TestEntries: the image of a tar whose entries are given already read
// (Options.Entries: a rootfs.Tar's) is the image of the tar parsed, with
// a UUID given or made from the tar's digest, and its digest the same.
func TestEntries(t *testing.T) {
	ents := everyKind(t)
	for i := range 50 {
		ents = append(ents, entry{tar.Header{Name: "many/" + strings.Repeat("n", 90+i) + "/f", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 3000000, PAXRecords: map[string]string{"SCHILY.xattr.user.i": strings.Repeat("v", i)}}, bytes.Repeat([]byte{byte(i)}, i*300)})
	}
	canon, err := rootfs.Open(context.Background(), bytes.NewReader(makeTar(t, ents)), epoch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer canon.Close()
	for _, o := range []Options{{}, {UUID: [16]byte{4, 5, 6}}, {Digest: true}, {TarSHA256: canon.SHA256, Digest: true}} {
		o.Time = epoch
		var imgs [2][]byte
		var sums [2][32]byte
		for k := range imgs {
			f, err := os.Create(filepath.Join(t.TempDir(), "fs.ext4"))
			if err != nil {
				t.Fatal(err)
			}
			oo := o
			if k == 1 {
				oo.Entries = func() Entries { return canon.Entries() }
			}
			st, err := Build(f, canon.Reader(), oo)
			if err != nil {
				t.Fatal(err)
			}
			imgs[k], _ = os.ReadFile(f.Name())
			sums[k] = st.SHA256
			f.Close()
		}
		if !bytes.Equal(imgs[0], imgs[1]) || sums[0] != sums[1] {
			t.Errorf("%+v: the image from the entries differs", o)
		}
		if o.Digest && sums[1] != sha256.Sum256(imgs[1]) {
			t.Errorf("%+v: digest", o)
		}
	}
}
