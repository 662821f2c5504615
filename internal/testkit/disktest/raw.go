package disktest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// RawImage writes dir/disk.raw, a raw disk of size bytes: zeros, with
// runs of compressible text and of random bytes here and there (the
// same for the same seed), and "end" in its last bytes. The image
// writers' tests convert it and have qemu-img compare the two.
func RawImage(t testing.TB, dir string, size int64, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	data := make([]byte, size)
	for off := int64(0); off < size; {
		run := int64(rng.IntN(200_000))
		switch rng.IntN(4) {
		case 0:
			copy(data[off:min(off+run, size)], bytes.Repeat([]byte("alpine rootfs text "), int(run)/19+1))
		case 1:
			for i := off; i < min(off+run, size); i++ {
				data[i] = byte(rng.Uint32())
			}
		}
		off += run
	}
	if size >= 3 {
		copy(data[size-3:], "end")
	}
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
