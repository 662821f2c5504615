package qemu

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

// TestNoCloudSeed: the seed is an ISO 9660 volume labeled cidata (as
// blkid reads it), a whole MiB, holding the user data as given and
// meta-data with an instance-id and the hostname the user data names;
// meta-data given is kept as it is.
func TestNoCloudSeed(t *testing.T) {
	blkid := hosttool.Need(t, "blkid", "util-linux")
	dir := t.TempDir()
	ud := []byte("#alpine-config\nhostname: cloudy\nuser:\n  name: bob\n")
	p, err := NoCloudSeed(dir, ud, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(blkid, p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `LABEL="cidata"`) || !strings.Contains(string(out), `TYPE="iso9660"`) {
		t.Errorf("blkid: %v: %s", err, out)
	}
	st, _ := os.Stat(p)
	if st.Size()%(1<<20) != 0 {
		t.Errorf("%d bytes, not whole MiB", st.Size())
	}
	read := func(p, name string) string {
		t.Helper()
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fs, err := iso9660.Read(file.New(f, true), 0, 0, 2048)
		if err != nil {
			t.Fatal(err)
		}
		r, err := fs.OpenFile("/"+name, os.O_RDONLY)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b := make([]byte, 4096)
		n, _ := r.Read(b)
		return string(b[:n])
	}
	if got := read(p, "user-data"); got != string(ud) {
		t.Errorf("user-data: %q", got)
	}
	md := read(p, "meta-data")
	if !strings.HasPrefix(md, "instance-id: iid-alpinist-") || !strings.Contains(md, "\nhostname: cloudy\nlocal-hostname: cloudy\n") {
		t.Errorf("meta-data: %q", md)
	}
	p2, err := NoCloudSeed(t.TempDir(), []byte("#!/bin/sh\necho hi\n"), []byte("instance-id: mine\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(p2, "meta-data"); got != "instance-id: mine\n" {
		t.Errorf("given meta-data: %q", got)
	}
	if md := string(seedMetaData([]byte("#!/bin/sh\nhostname: not-yaml\n"))); strings.Contains(md, "hostname") {
		t.Errorf("a script's lines were read as cloud-config: %q", md)
	}
}
