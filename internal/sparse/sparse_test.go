package sparse

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// recorder keeps the writes it gets.
type recorder struct{ writes [][2]int64 }

func (r *recorder) WriteAt(b []byte, off int64) (int, error) {
	r.writes = append(r.writes, [2]int64{off, int64(len(b))})
	return len(b), nil
}

func TestWriteAt(t *testing.T) {
	b := make([]byte, 5*Block+100)
	b[10] = 1         // block 0
	b[Block+5] = 1    // block 1: joins block 0's write
	b[3*Block+1] = 1  // block 3
	b[5*Block+99] = 1 // the short tail
	var r recorder
	if err := WriteAt(&r, b, 1000); err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{1000, 2 * Block}, {1000 + 3*Block, Block}, {1000 + 5*Block, 100}}
	if len(r.writes) != len(want) {
		t.Fatalf("writes %v, want %v", r.writes, want)
	}
	for i := range want {
		if r.writes[i] != want[i] {
			t.Errorf("write %d: %v, want %v", i, r.writes[i], want[i])
		}
	}
	if !Zero(make([]byte, 3*Block+7)) || Zero(b) {
		t.Error("Zero")
	}
}

func TestCopy(t *testing.T) {
	data := make([]byte, 3<<20+17)
	data[2<<20] = 7
	data[len(data)-1] = 9
	p := filepath.Join(t.TempDir(), "img")
	f, _ := os.Create(p)
	f.Truncate(int64(len(data)) + 512)
	n, err := Copy(f, 512, bytes.NewReader(data))
	f.Close()
	got, _ := os.ReadFile(p)
	if err != nil || n != int64(len(data)) || !bytes.Equal(got[512:], data) {
		t.Errorf("copy: %v, %d bytes", err, n)
	}
}

// failAt is a reader that fails after n bytes.
type failAt struct {
	r io.Reader
	n int
}

func (f *failAt) Read(b []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("read failed")
	}
	b = b[:min(len(b), f.n)]
	k, err := f.r.Read(b)
	f.n -= k
	return k, err
}

type failWriter struct{}

func (failWriter) WriteAt([]byte, int64) (int, error) { return 0, errors.New("disk full") }

// TestCopyChunks copies sizes at and around the pipeline's chunk, and
// gives back both sides' errors.
func TestCopyChunks(t *testing.T) {
	for _, size := range []int{0, 1, 2 << 20, 2<<20 + 1, 6 << 20, 7<<20 - 1} {
		data := bytes.Repeat([]byte{0, 0, 0, 5}, (size+3)/4)[:size]
		var w recorder
		n, err := Copy(&w, 0, bytes.NewReader(data))
		if err != nil || n != int64(size) {
			t.Errorf("%d bytes: %v, %d copied", size, err, n)
		}
	}
	data := make([]byte, 9<<20)
	data[0] = 1
	if _, err := Copy(&recorder{}, 0, &failAt{bytes.NewReader(data), 5 << 20}); err == nil || err.Error() != "read failed" {
		t.Errorf("reader's error: %v", err)
	}
	if _, err := Copy(failWriter{}, 0, bytes.NewReader(data)); err == nil || err.Error() != "disk full" {
		t.Errorf("writer's error: %v", err)
	}
}
