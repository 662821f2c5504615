package lxc

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/alpinist/alpinist/internal/treecmp"
)

func write(t *testing.T, img Image) (string, []byte) {
	dir := t.TempDir()
	src := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(src, rootfstest.Tar(t), 0o644)
	dst := filepath.Join(dir, img.Name+"-"+img.Arch+".lxc.tar.xz")
	if err := WriteFile(context.Background(), dst, src, img); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return dst, data
}

func TestWriteFile(t *testing.T) {
	img := Image{Name: "web", Arch: "aarch64", Created: rootfstest.Created}
	_, data := write(t, img)
	xr, err := xz.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(xr)
	var names []string
	var meta Metadata
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		body, _ := io.ReadAll(tr)
		switch {
		case h.Name == "metadata.yaml":
			if err := yaml.Unmarshal(body, &meta); err != nil {
				t.Fatal(err)
			}
		case h.Name == "templates/hostname.tpl":
			if string(body) != hostnameTemplate {
				t.Errorf("hostname.tpl: %q", body)
			}
		case strings.HasPrefix(h.Name, "rootfs/") && h.Name != "rootfs/":
			h.Name = strings.TrimPrefix(h.Name, "rootfs/")
			if h.Typeflag == tar.TypeLink {
				if !strings.HasPrefix(h.Linkname, "rootfs/") {
					t.Errorf("hard link %s -> %s outside rootfs/", h.Name, h.Linkname)
				}
				h.Linkname = strings.TrimPrefix(h.Linkname, "rootfs/")
			}
			tw.WriteHeader(h)
			tw.Write(body)
		}
	}
	tw.Close()
	if strings.Join(names[:4], " ") != "metadata.yaml templates/ templates/hostname.tpl rootfs/" {
		t.Errorf("entries start %v", names[:4])
	}
	want := Metadata{Architecture: "aarch64", CreationDate: 1700000000,
		Properties: Properties{Architecture: "aarch64", Description: "Alpine Linux 3.22.1 web (aarch64)", Name: "web", OS: "alpinelinux", Release: "3.22.1", Variant: "default"},
		Templates:  map[string]Template{"/etc/hostname": {When: []string{"create", "copy"}, Template: "hostname.tpl"}}}
	if got, _ := yaml.Marshal(meta); string(got) != string(must(yaml.Marshal(want))) {
		t.Errorf("metadata.yaml:\n%s\nwant:\n%s", got, must(yaml.Marshal(want)))
	}
	// rootfs/ holds the rootfs tar's tree, entry for entry.
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	cmd := exec.Command("tar", "-C", tree, "-xpf", "-")
	cmd.Stdin = bytes.NewReader(rootfs.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	if d := treecmp.Compare(bytes.NewReader(rootfstest.Tar(t)), tree); d != "" {
		t.Error(d)
	}
	// Reproducible; a spec hostname means no template.
	if _, again := write(t, img); !bytes.Equal(again, data) {
		t.Error("two writes differ")
	}
	m, _ := NewMetadata(Image{Name: "web", Arch: "x86", Hostname: "web"}, "")
	if len(m.Templates) != 0 || m.Architecture != "i686" || m.Properties.Release != "" || m.Properties.Description != "Alpine Linux web (x86)" {
		t.Errorf("metadata: %+v", m)
	}
	if _, err := NewMetadata(Image{Name: "web", Arch: "m68k"}, ""); err == nil {
		t.Error("unknown arch accepted")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestLXDImport has LXD (what Debian packages of Incus's parent; the
// image format is the same) import the tarball: a daemon of the test's
// own, in a temporary LXD_DIR.
func TestLXDImport(t *testing.T) {
	lxd := hosttool.Need(t, "lxd", "lxd")
	lxc := hosttool.Need(t, "lxc", "lxd")
	if os.Geteuid() != 0 {
		t.Skip("the LXD daemon runs as root only; the tarball's format is checked above")
	}
	path, _ := write(t, Image{Name: "web", Arch: "x86_64", Created: rootfstest.Created})
	dir, err := os.MkdirTemp("", "lxd") // short: the daemon's socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := append(os.Environ(), "LXD_DIR="+dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	daemon := exec.CommandContext(ctx, lxd, "--group", "root", "--logfile", filepath.Join(dir, "lxd.log"))
	daemon.Env = env
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stop := exec.Command(lxd, "shutdown", "--timeout", "20")
		stop.Env = env
		if out, err := stop.CombinedOutput(); err != nil {
			t.Logf("lxd shutdown: %v %s", err, out)
			daemon.Process.Kill()
		}
		daemon.Wait()
	}()
	run := func(args ...string) string {
		t.Helper()
		c := exec.CommandContext(ctx, args[0], args[1:]...)
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "lxd.log"))
			t.Fatalf("%s: %v\n%s\nlxd.log:\n%s", strings.Join(args, " "), err, out, log)
		}
		return string(out)
	}
	run(lxd, "waitready", "--timeout", "60")
	run(lxc, "image", "import", path, "--alias", "alpinist-web")
	info := run(lxc, "image", "info", "alpinist-web")
	for _, want := range []string{"Architecture: x86_64", "Type: container", "description: Alpine Linux 3.22.1 web (x86_64)", "release: 3.22.1", "Created: 2023/11/14 22:13 UTC"} {
		if !strings.Contains(info, want) {
			t.Errorf("lxc image info lacks %q:\n%s", want, info)
		}
	}
}
