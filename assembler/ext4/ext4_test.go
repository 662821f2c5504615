package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/hosttool"
	"github.com/alpinist/alpinist/internal/rootfstest"
)

func fsck(t *testing.T, img string) {
	t.Helper()
	e2fsck := hosttool.Need(t, "e2fsck", "e2fsprogs")
	out, err := exec.Command(e2fsck, "-fn", img).CombinedOutput()
	if keep := os.Getenv("EXT4_KEEP"); keep != "" {
		exec.Command("cp", "--sparse=always", img, keep).Run()
	}
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

func TestSmall(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(src, rootfstest.Tar(t), 0o644)
	img := filepath.Join(dir, "fs.ext4")
	st, err := BuildFile(img, src, Options{Time: time.Unix(1700000000, 0), Label: "root"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	fsck(t, img)
}
