package disktest

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

// SameAsRaw has qemu-img compare img, in format (qcow2, vmdk, vpc...),
// with the raw image it was made from: the same virtual disk, byte for
// byte.
func SameAsRaw(t testing.TB, raw, img, format string) {
	t.Helper()
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	if out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", format, raw, img).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s: %v\n%s", img, err, out)
	}
}

// Synced is the qemu-img convert option that makes it flush the image
// to the disk before it exits. Our image writers sync the file before
// it gets its name (a crash never leaves half an image), while qemu-img
// convert's default cache mode (unsafe) leaves the data in the page
// cache: the benchmarks give it this option so both do the same work.
var Synced = []string{"-t", "writeback"}

// QemuImgConvert converts the raw image into out in format, with
// qemu-img convert's options (-o ...): the reference the image writers
// are compared with.
func QemuImgConvert(qemuImg, raw, out, format string, options ...string) error {
	args := append(append([]string{"convert", "-f", "raw", "-O", format}, options...), raw, out)
	if o, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img %v: %v\n%s", args, err, o)
	}
	return nil
}
