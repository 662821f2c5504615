package gzmember

import (
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"
)

func gzMember(t *testing.T, data string, level int) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, level)
	zw.Write([]byte(data))
	zw.Close()
	return b.Bytes()
}

// TestSplit checks that each member's hash covers exactly its bytes and
// that its content comes back, for members of several sizes and levels.
func TestSplit(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	ms := [][]byte{gzMember(t, "first", 9), gzMember(t, string(big), 1), gzMember(t, "", 9), gzMember(t, "last one", 0)}
	want := []string{"first", string(big), "", "last one"}
	r := NewReader(bytes.NewReader(bytes.Join(ms, nil)))
	for i, m := range ms {
		h := sha256.New()
		mr, err := r.Next(h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(mr)
		if err != nil || string(got) != want[i] {
			t.Fatalf("member %d: %v, %d bytes", i, err, len(got))
		}
		if sum := sha256.Sum256(m); !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Errorf("member %d: hash does not cover exactly its bytes", i)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last member: %v", err)
	}
	if r.Offset() != int64(len(bytes.Join(ms, nil))) {
		t.Errorf("offset %d", r.Offset())
	}
}

func TestRestAndErrors(t *testing.T) {
	ms := [][]byte{gzMember(t, "a", 9), gzMember(t, "b", 9), gzMember(t, "c", 9)}
	r := NewReader(bytes.NewReader(bytes.Join(ms, nil)))
	mr, _ := r.Next()
	io.ReadAll(mr)
	h := sha256.New()
	rest, err := r.Rest(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rest)
	if err != nil || string(got) != "bc" {
		t.Fatalf("rest %q %v", got, err)
	}
	if sum := sha256.Sum256(bytes.Join(ms[1:], nil)); !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Error("rest hash")
	}
	// Truncated and corrupted members fail.
	all := bytes.Join(ms, nil)
	for _, bad := range [][]byte{all[:len(all)-3], append(bytes.Clone(all), 0x1f, 0x8b)} {
		r := NewReader(bytes.NewReader(bad))
		var err error
		for err == nil {
			var m io.Reader
			if m, err = r.Next(); err == nil {
				_, err = io.ReadAll(m)
			}
		}
		if err == io.EOF {
			t.Errorf("%d bytes: read without error", len(bad))
		}
	}
	// Next before the previous member's end.
	r = NewReader(bytes.NewReader(all))
	r.Next()
	if _, err := r.Next(); err == nil {
		t.Error("Next before the end of a member")
	}
}

// BenchmarkMember inflates a 16 MiB member of half-compressible data
// (an apk's data member: a kernel is incompressible, text is not),
// hashing its compressed bytes, as package verification does.
func BenchmarkMember(b *testing.B) {
	raw := make([]byte, 16<<20)
	x := uint64(1)
	for i := 0; i < len(raw); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if i%(1<<16) < 1<<15 {
			binary.LittleEndian.PutUint64(raw[i:], x)
		} else {
			copy(raw[i:], "abcdefgh")
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		r := NewReader(bytes.NewReader(gz.Bytes()))
		m, err := r.Next(sha1.New())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, m); err != nil {
			b.Fatal(err)
		}
	}
}
