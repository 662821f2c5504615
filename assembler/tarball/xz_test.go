package tarball

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/ulikunitz/xz"
)

func xzBytes(t *testing.T, in []byte, chunk int) []byte {
	var b bytes.Buffer
	w, err := NewWriter(&b, "xz")
	if err != nil {
		t.Fatal(err)
	}
	for p := in; len(p) > 0; {
		k := min(chunk, len(p))
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestXZ(t *testing.T) {
	savedBlock := xzBlock
	xzBlock = 1 << 16
	defer func() { xzBlock = savedBlock }()
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3*xzBlock+5)
	for i := range data {
		// Compressible, not trivial.
		data[i] = byte('a' + rng.IntN(8))
	}
	saved := xzJobs
	defer func() { xzJobs = saved }()
	for _, n := range []int{0, 1, xzBlock - 1, xzBlock, xzBlock + 1, len(data)} {
		in := data[:n]
		xzJobs = 1
		one := xzBytes(t, in, 1<<12)
		xzJobs = 4
		four := xzBytes(t, in, 1234)
		if !bytes.Equal(one, four) {
			t.Errorf("%d bytes: the output depends on the number of jobs or the write sizes", n)
		}
		r, err := xz.NewReader(bytes.NewReader(four))
		if err != nil {
			t.Fatal(err)
		}
		back, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(back, in) {
			t.Errorf("%d bytes: round trip: %v, got %d bytes", n, err, len(back))
		}
		// xz-utils reads the concatenated streams too.
		if xzBin, err := exec.LookPath("xz"); err == nil {
			cmd := exec.Command(xzBin, "-dc")
			cmd.Stdin = bytes.NewReader(four)
			out, err := cmd.Output()
			if err != nil || !bytes.Equal(out, in) {
				t.Errorf("%d bytes: xz -dc: %v, %d bytes", n, err, len(out))
			}
		}
	}
}

func BenchmarkXZ(b *testing.B) {
	data := bytes.Repeat([]byte("alpine linux rootfs, somewhat compressible text 0123456789\n"), (16<<20)/60)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		w, _ := NewWriter(io.Discard, "xz")
		w.Write(data)
		w.Close()
	}
}
