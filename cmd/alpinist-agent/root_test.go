package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/alpinist/alpinist/assembler/ext4"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
)

// The root switcher recognizes alpinist's ext4 images by UUID and label.
func TestExt4ID(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(src, rootfstest.Tar(t), 0o644)
	img := filepath.Join(dir, "root.ext4")
	uuid := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 0x43, 4, 0x85, 6, 7, 8, 9, 10, 11, 12}
	if _, err := ext4.BuildFile(img, src, ext4.Options{UUID: uuid, Label: "alpine-root", Time: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	u, label, ok := ext4ID(img)
	if !ok || u != "deadbeef-0102-4304-8506-0708090a0b0c" || label != "alpine-root" {
		t.Errorf("ext4ID = %q %q %v", u, label, ok)
	}
	if _, _, ok := ext4ID(src); ok {
		t.Error("a tar taken for ext4")
	}
	if findRoot("UUID=nope") != "" || findRoot("/dev/does-not-exist") != "" || findRoot("garbage") != "" {
		t.Error("findRoot found what is not there")
	}
}
