package output

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/alpinist/alpinist/internal/treecmp"
	"github.com/alpinist/alpinist/spec"
)

// all are the outputs the test rootfs can be written to, from the
// table: every one but the bootable disks (the test rootfs has no
// kernel; TestConformance and disk_test.go write those).
var all = outputNames(func(o Output) bool { return !o.Disk })

// outputNames are the names of the table's outputs that keep says to.
func outputNames(keep func(Output) bool) []string {
	var names []string
	for _, o := range Outputs {
		if keep(o) {
			names = append(names, o.Name)
		}
	}
	return names
}

// build runs a Set over x86_64 and aarch64 (the same test rootfs) and
// returns the sha256 of every file in dir by relative path.
func build(t *testing.T, dir string, outputs []string, layoutToo bool) (map[string]string, *Set) {
	sp := &spec.Spec{Name: "web", Hostname: "web", OCI: spec.OCI{Cmd: []string{"/bin/sh"}}, WSL: spec.WSL{"user": {"default": "app"}}}
	s, err := New(Plan{Spec: sp, Dir: dir, Outputs: outputs, Created: rootfstest.Created, Tool: "alpinist-test", Layout: layoutToo})
	if err != nil {
		t.Fatal(err)
	}
	var results []Result
	for _, arch := range []string{"x86_64", "aarch64"} {
		tarPath := filepath.Join(dir, "web-"+arch+".tar")
		os.WriteFile(tarPath, rootfstest.Tar(t), 0o644)
		res, err := s.Add(Arch{Arch: arch, Tar: tarPath, Lock: &lock.Arch{Arch: arch, Packages: []lock.Package{{Name: "musl", Version: "1.2.5-r10", Repository: "https://example.org/alpine/main"}}}})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res...)
	}
	res, err := s.Finish()
	if err != nil {
		t.Fatal(err)
	}
	results = append(results, res...)
	layoutPath := s.Layout()
	if layoutToo {
		if _, err := layout.Path(layoutPath).ImageIndex(); err != nil {
			t.Errorf("the layout to push: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Size <= 0 {
			t.Errorf("%s: size %d", r.Path, r.Size)
		}
	}
	sums, err := treecmp.Sums(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sums, s
}

func TestEveryOutput(t *testing.T) {
	dir := t.TempDir()
	sums, s := build(t, dir, all, false)
	var top []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		top = append(top, e.Name())
	}
	// The files of all (a new output row's file belongs here too).
	want := []string{
		"web-aarch64.docker.tar", "web-aarch64.ext4", "web-aarch64.lxc.tar.xz", "web-aarch64.spdx.json", "web-aarch64.tar", "web-aarch64.tar.gz", "web-aarch64.tar.zst", "web-aarch64.wsl.tar.gz",
		"web-x86_64.docker.tar", "web-x86_64.ext4", "web-x86_64.lxc.tar.xz", "web-x86_64.spdx.json", "web-x86_64.tar", "web-x86_64.tar.gz", "web-x86_64.tar.zst", "web-x86_64.wsl.tar.gz",
		"web.oci",
	}
	if !slices.Equal(top, want) {
		t.Errorf("outputs:\n got %v\nwant %v", top, want)
	}
	ii, err := layout.Path(filepath.Join(dir, "web.oci")).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(ii); err != nil {
		t.Error(err)
	}
	im, _ := ii.IndexManifest()
	if len(im.Manifests) != 3 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "latest" {
		t.Errorf("index.json: %+v", im)
	}
	var doc struct {
		Packages []struct{ Name, DownloadLocation string }
	}
	data, _ := os.ReadFile(filepath.Join(dir, "web-aarch64.spdx.json"))
	json.Unmarshal(data, &doc)
	if len(doc.Packages) != 3 || doc.Packages[2].DownloadLocation != "https://example.org/alpine/main/aarch64/musl-1.2.5-r10.apk" {
		t.Errorf("sbom: %s", data)
	}
	if s.Layout() != filepath.Join(dir, "web.oci") {
		t.Errorf("layout %s", s.Layout())
	}

	// Again, over the first: the same bytes, and nothing else left.
	again, _ := build(t, dir, all, false)
	if len(again) != len(sums) {
		t.Errorf("%d files, then %d", len(sums), len(again))
	}
	for p, sum := range sums {
		if again[p] != sum {
			t.Errorf("%s differs between two builds", p)
		}
	}
	// In another directory too.
	other, _ := build(t, t.TempDir(), all, false)
	for p, sum := range sums {
		if other[p] != sum {
			t.Errorf("%s differs in another directory", p)
		}
	}
}

func TestOutputsAlone(t *testing.T) {
	dir := t.TempDir()
	sums, _ := build(t, dir, []string{"docker-archive"}, false)
	var names []string
	for p := range sums {
		names = append(names, p)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"web-aarch64.docker.tar", "web-aarch64.spdx.json", "web-x86_64.docker.tar", "web-x86_64.spdx.json"}) {
		t.Errorf("docker-archive alone wrote %v", names)
	}
	// A layout to push, without oci as an output: built in the work
	// directory, gone at Close.
	dir = t.TempDir()
	_, s := build(t, dir, []string{"tar.gz"}, true)
	if !strings.Contains(s.Layout(), ".web.work-") {
		t.Errorf("layout %s", s.Layout())
	}
	if _, err := os.Stat(s.Layout()); err == nil {
		t.Error("the work layout outlived Close")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Errorf("left: %v", ents)
	}
}

// TestDiskSizeSizesExt4: the spec's disk.size sizes the ext4 output
// (alpinist build), and Plan.DiskSize (assemble --disk-size) wins over
// it; without either the image is sized from the content.
func TestDiskSizeSizesExt4(t *testing.T) {
	e2fsck := hosttool.Need(t, "e2fsck", "e2fsprogs")
	dumpe2fs := hosttool.Need(t, "dumpe2fs", "e2fsprogs")
	for _, tc := range []struct {
		name     string
		disk     *spec.Disk
		planSize int64
		want     int64 // 0: from the content, less than 64 MiB
	}{
		{"disk.size", &spec.Disk{Size: 64 << 20}, 0, 64 << 20},
		{"--disk-size", &spec.Disk{Size: 64 << 20}, 80 << 20, 80 << 20},
		{"content", nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := New(Plan{Spec: &spec.Spec{Name: "sized", Disk: tc.disk}, Dir: dir, Outputs: []string{"ext4"}, Created: rootfstest.Created, Tool: "t", DiskSize: tc.planSize})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tarPath := filepath.Join(dir, "sized-x86_64.tar")
			os.WriteFile(tarPath, rootfstest.Tar(t), 0o644)
			if _, err := s.Add(Arch{Arch: "x86_64", Tar: tarPath}); err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(dir, "sized-x86_64.ext4")
			st, err := os.Stat(img)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(e2fsck, "-fn", img).CombinedOutput(); err != nil {
				t.Errorf("e2fsck: %v\n%s", err, b)
			}
			// The file system fills the file.
			out, err := exec.Command(dumpe2fs, "-h", img).Output()
			if err != nil {
				t.Fatalf("dumpe2fs -h: %v", err)
			}
			var blocks, blockSize int64
			for _, l := range strings.Split(string(out), "\n") {
				k, v, _ := strings.Cut(l, ":")
				switch k {
				case "Block count":
					blocks, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				case "Block size":
					blockSize, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
			if blocks*blockSize != st.Size() {
				t.Errorf("the file system has %d blocks of %d bytes, the file %d bytes", blocks, blockSize, st.Size())
			}
			switch {
			case tc.want != 0 && st.Size() != tc.want:
				t.Errorf("%d bytes, want %d", st.Size(), tc.want)
			case tc.want == 0 && (st.Size() <= 0 || st.Size() >= 64<<20):
				t.Errorf("%d bytes from the content", st.Size())
			}
		})
	}
}

func TestCheck(t *testing.T) {
	if err := Check(all); err != nil {
		t.Error(err)
	}
	if err := Check([]string{"floppy"}); err == nil || !strings.Contains(err.Error(), "unknown output (known: tar, tar.gz") {
		t.Errorf("floppy: %v", err)
	}
	for name, want := range map[string]string{"web": "web:latest", "Web+Plus": "web-plus:latest"} {
		if got, err := Tag(&spec.Spec{Name: name}); got != want || err != nil {
			t.Errorf("Tag(%s) = %s, %v", name, got, err)
		}
	}
	if _, err := Tag(&spec.Spec{Name: "x", OCI: spec.OCI{Tag: "Bad Tag!"}}); err == nil || !strings.Contains(err.Error(), "set oci.tag") {
		t.Errorf("bad name: %v", err)
	}
	// A rootfs without an apk database fails, and leaves no work dir.
	dir := t.TempDir()
	s, _ := New(Plan{Spec: &spec.Spec{Name: "x"}, Dir: dir, Outputs: []string{"oci"}})
	os.WriteFile(filepath.Join(dir, "x.tar"), nil, 0o644)
	if _, err := s.Add(Arch{Arch: "x86_64", Tar: filepath.Join(dir, "x.tar")}); err == nil || !strings.Contains(err.Error(), "no apk database") {
		t.Errorf("no database: %v", err)
	}
	s.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left: %v", ents)
	}
	// Unless the plan says the rootfs may have none (alpinist assemble).
	s, _ = New(Plan{Spec: &spec.Spec{Name: "x"}, Dir: dir, Outputs: []string{"oci", "tar"}, NoSBOM: true})
	defer s.Close()
	res, err := s.Add(Arch{Arch: "x86_64", Tar: filepath.Join(dir, "x.tar")})
	if err != nil || len(res) != 1 || res[0].Output != "tar" {
		t.Errorf("no database, NoSBOM: %v %+v", err, res)
	}
}

// TestOutputsMatchSpec: the spec's list of output names (spec.Outputs,
// which validates outputs:) is this package's table, in its order: the
// two lists cannot drift apart.
func TestOutputsMatchSpec(t *testing.T) {
	var names []string
	for _, o := range Outputs {
		names = append(names, o.Name)
	}
	if !slices.Equal(names, spec.Outputs) {
		t.Errorf("output.Outputs %v, spec.Outputs %v", names, spec.Outputs)
	}
}
