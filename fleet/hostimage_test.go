package fleet

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

// TestHostImageTar: the host image's tree has alpinist, the emulator
// with its libraries and loader, QEMU's firmware and TCG module, the
// user alpinist and the writable directories; the same host writes the
// same bytes; an emulator that is not installed is named.
func TestHostImageTar(t *testing.T) {
	hosttool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	alp := hosttool.Need(t, "true", "coreutils")
	h := HostImage{Alpinist: alp, Arches: []string{"x86_64"}}
	var a, b bytes.Buffer
	if err := h.WriteTar(&a); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteTar(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes differ")
	}
	entries := map[string]*tar.Header{}
	var names []string
	tr := tar.NewReader(&a)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if entries[hd.Name] != nil {
			t.Errorf("%s twice", hd.Name)
		}
		entries[hd.Name] = hd
		names = append(names, hd.Name)
		if hd.Name == "etc/passwd" {
			data, _ := io.ReadAll(tr)
			if !strings.Contains(string(data), "alpinist:x:65532:65532:") {
				t.Errorf("passwd: %s", data)
			}
		}
	}
	has := func(base string) bool {
		for _, n := range names {
			if path.Base(n) == base {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"alpinist", "qemu-system-x86_64", "libc.so.6", "bios-256k.bin", "pvh.bin", "ca-certificates.crt"} {
		if !has(want) {
			t.Errorf("no %s in the image", want)
		}
	}
	if !has("accel-tcg-x86_64.so") && has("accel-qtest-x86_64.so") {
		t.Error("QEMU's modules are there but not its TCG accelerator")
	}
	for _, d := range []string{"tmp/", "var/cache/alpinist/"} {
		if hd := entries[d]; hd == nil || hd.Mode != 0o1777 {
			t.Errorf("%s: %+v", d, hd)
		}
	}
	if hd := entries["usr/bin/alpinist"]; hd == nil || hd.Mode != 0o755 {
		t.Errorf("usr/bin/alpinist: %+v", hd)
	}

	ldd := hosttool.Need(t, "ldd", "libc-bin")
	bin := t.TempDir()
	if err := os.Symlink(ldd, filepath.Join(bin, "ldd")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	if err := h.WriteTar(io.Discard); err == nil || !strings.Contains(err.Error(), "qemu-system-x86_64 is not installed here") {
		t.Errorf("without QEMU: %v", err)
	}
}
