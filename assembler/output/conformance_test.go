package output

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/assembler/gce"
	"github.com/alpinist/alpinist/assembler/oci"
	"github.com/alpinist/alpinist/assembler/vhd"
	"github.com/alpinist/alpinist/internal/testkit/disktest"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/alpinist/alpinist/spec"
)

// written is one output as TestConformance wrote it, for its check.
type written struct {
	// Path is the output's file (the layout's directory for oci).
	Path string
	// Spec is the spec it was written for, Arch its arch.
	Spec *spec.Spec
	Arch string
	// Names are the entries of the rootfs tar it was written from, in
	// their order.
	Names []string
	// Release is that rootfs's etc/alpine-release.
	Release string
}

// conformance checks each output's file with the tool that reads it (a
// row of Outputs without an entry here fails TestConformance).
var conformance = map[string]func(t *testing.T, w written){
	"tar":            checkTar("", "", ""),
	"tar.gz":         checkTar("-z", "gzip", "gzip"),
	"tar.zst":        checkTar("--zstd", "zstd", "zstd"),
	"wsl":            checkWSL,
	"lxc":            checkLXC,
	"oci":            checkOCI,
	"docker-archive": checkDockerArchive,
	"ext4":           checkExt4,
	"raw":            checkRaw,
	"qcow2":          checkQcow2,
	"vhd":            checkVHD,
	"vmdk":           checkVMDK,
	"ova":            checkOVA,
	"gce":            checkGCE,
	"iso":            checkISO,
}

// TestConformance writes every output of the table with one Set (from
// a rootfs a disk can be made of) and checks each one's file with the
// real tool that reads it: a row without a check fails.
func TestConformance(t *testing.T) {
	var names []string
	for _, o := range Outputs {
		names = append(names, o.Name)
		if conformance[o.Name] == nil {
			t.Errorf("output %s has no conformance check: add one to conformance in conformance_test.go", o.Name)
		}
	}
	for n := range conformance {
		if _, ok := Lookup(n); !ok {
			t.Errorf("conformance checks %s, which is no output", n)
		}
	}

	dir := t.TempDir()
	const arch = "x86_64"
	sp := &spec.Spec{
		Name: "web", Hostname: "web",
		OCI: spec.OCI{Cmd: []string{"/bin/sh"}},
		WSL: spec.WSL{"user": {"default": "app"}},
		// UEFI only: the disk needs no syslinux (no test repository).
		Disk: &spec.Disk{Boot: []string{"uefi"}},
	}
	s, err := New(Plan{Spec: sp, Dir: dir, Outputs: names, Created: rootfstest.Created, Tool: "alpinist-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := bootableTar(t, false)
	tarPath := filepath.Join(dir, sp.Name+"-"+arch+".tar")
	if err := os.WriteFile(tarPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := s.Add(Arch{Arch: arch, Tar: tarPath, Lock: &lock.Arch{Arch: arch, Packages: []lock.Package{{Name: "musl", Version: "1.2.5-r10", Repository: "https://example.org/alpine/main"}}}})
	if err != nil {
		t.Fatal(err)
	}
	fin, err := s.Finish()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d outputs written in %v", len(names), time.Since(start).Round(time.Millisecond))
	paths := map[string]string{}
	for _, r := range append(res, fin...) {
		paths[r.Output] = r.Path
	}

	w := written{Spec: sp, Arch: arch}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Names = append(w.Names, h.Name)
		if h.Name == "etc/alpine-release" {
			b, _ := io.ReadAll(tr)
			w.Release = string(b)
		}
	}

	for _, o := range Outputs {
		t.Run(o.Name, func(t *testing.T) {
			// The file is where the row says, and the Set says it wrote it.
			w := w
			w.Path = filepath.Join(dir, o.File(sp.Name, arch))
			if paths[o.Name] != w.Path {
				t.Errorf("the Set wrote %q, the row names %q", paths[o.Name], w.Path)
			}
			if _, err := os.Stat(w.Path); err != nil {
				t.Fatal(err)
			}
			check := conformance[o.Name]
			if check == nil {
				t.Skip("no check (failed above)")
			}
			start := time.Now()
			check(t, w)
			t.Logf("checked in %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// runTool runs a tool and fails the test when it fails, with its output.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// lines are s's non-empty lines.
func lines(s string) []string {
	var l []string
	for _, x := range strings.Split(s, "\n") {
		if x != "" {
			l = append(l, x)
		}
	}
	return l
}

// checkTar: GNU tar lists the file (decompressed with flag, which runs
// the program unzip from the Debian package pkg) as the entries of the
// rootfs tar, in their order.
func checkTar(flag, unzip, pkg string) func(t *testing.T, w written) {
	return func(t *testing.T, w written) {
		gnutar := hosttool.Need(t, "tar", "tar")
		if unzip != "" {
			hosttool.Need(t, unzip, pkg)
		}
		args := []string{"-tf", w.Path}
		if flag != "" {
			args = append([]string{flag}, args...)
		}
		if got := lines(runTool(t, gnutar, args...)); !slices.Equal(got, w.Names) {
			t.Errorf("tar %s lists\n%q\nthe rootfs tar has\n%q", strings.Join(args, " "), got, w.Names)
		}
	}
}

// checkWSL: tar lists the rootfs's entries (etc/wsl.conf moved to the
// end), and etc/wsl.conf is the spec's.
func checkWSL(t *testing.T, w written) {
	gnutar := hosttool.Need(t, "tar", "tar")
	got := lines(runTool(t, gnutar, "-tzf", w.Path))
	if !slices.Contains(got, "etc/wsl.conf") {
		t.Errorf("no etc/wsl.conf in %q", got)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(w.Names))
	if !slices.Contains(want, "etc/wsl.conf") {
		want = slices.Insert(want, 0, "etc/wsl.conf")
		slices.Sort(want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("tar -tzf lists\n%q\nwant\n%q", got, want)
	}
	if conf, want := runTool(t, gnutar, "-xzOf", w.Path, "etc/wsl.conf"), string(w.Spec.WSL.Conf()); conf != want {
		t.Errorf("etc/wsl.conf:\n%s\nwant the spec's\n%s", conf, want)
	}
}

// checkLXC: xz finds the file whole, tar lists metadata.yaml and the
// rootfs's entries under rootfs/; and, when an Incus daemon answers,
// incus imports it (into a project of its own, deleted after).
func checkLXC(t *testing.T, w written) {
	runTool(t, hosttool.Need(t, "xz", "xz-utils"), "-t", w.Path)
	got := lines(runTool(t, hosttool.Need(t, "tar", "tar"), "-tJf", w.Path))
	if !slices.Contains(got, "metadata.yaml") {
		t.Errorf("no metadata.yaml in %q", got)
	}
	var rootfs []string
	for _, n := range got {
		if r, ok := strings.CutPrefix(n, "rootfs/"); ok && r != "" {
			rootfs = append(rootfs, r)
		}
	}
	if !slices.Equal(rootfs, w.Names) {
		t.Errorf("rootfs/ holds\n%q\nthe rootfs tar has\n%q", rootfs, w.Names)
	}
	if want := "rootfs/"; !slices.Contains(got, want) {
		t.Errorf("no %s in %q", want, got)
	}

	incus, err := exec.LookPath("incus")
	if err != nil {
		t.Log("incus is not installed: the image is not imported")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, incus, "info").CombinedOutput(); err != nil {
		t.Logf("incus info: %v (no daemon to use): the image is not imported\n%s", err, out)
		return
	}
	project := fmt.Sprintf("alpinist-conformance-%d", os.Getpid())
	alias := "alpinist-conformance"
	runTool(t, incus, "project", "create", project)
	defer func() {
		if out, err := exec.Command(incus, "project", "delete", project).CombinedOutput(); err != nil {
			t.Errorf("incus project delete %s: %v\n%s", project, err, out)
		}
	}()
	runTool(t, incus, "image", "import", w.Path, "--project", project, "--alias", alias)
	defer func() {
		if out, err := exec.Command(incus, "image", "delete", alias, "--project", project).CombinedOutput(); err != nil {
			t.Errorf("incus image delete %s: %v\n%s", alias, err, out)
		}
	}()
	if info := runTool(t, incus, "image", "info", alias, "--project", project); !strings.Contains(info, "Architecture: "+w.Arch) {
		t.Errorf("incus image info: not %s:\n%s", w.Arch, info)
	}
}

// checkOCI: umoci lists the layout's tag, and skopeo reads its image.
func checkOCI(t *testing.T, w written) {
	tag, err := Tag(w.Spec)
	if err != nil {
		t.Fatal(err)
	}
	ref := oci.RefName(tag)
	umoci := hosttool.Need(t, "umoci", "umoci")
	if tags := lines(runTool(t, umoci, "ls", "--layout", w.Path)); !slices.Contains(tags, ref) {
		t.Errorf("umoci ls: %q, want %s", tags, ref)
	}
	var info struct{ Architecture, Os string }
	out := runTool(t, hosttool.Need(t, "skopeo", "skopeo"), "inspect", "oci:"+w.Path+":"+ref)
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Os != "linux" || info.Architecture != "amd64" {
		t.Errorf("skopeo inspect oci: %v\n%s", err, out)
	}
}

// checkDockerArchive: skopeo reads the archive's image.
func checkDockerArchive(t *testing.T, w written) {
	var info struct {
		Architecture, Os string
		Layers           []string
	}
	out := runTool(t, hosttool.Need(t, "skopeo", "skopeo"), "inspect", "docker-archive:"+w.Path)
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Os != "linux" || info.Architecture != "amd64" || len(info.Layers) != 1 {
		t.Errorf("skopeo inspect docker-archive: %v\n%s", err, out)
	}
}

// checkExt4: the image is a sound ext4 file system of the rootfs.
func checkExt4(t *testing.T, w written) { checkFS(t, w, w.Path) }

// checkFS: e2fsck finds the ext4 file system img clean, and debugfs
// finds the rootfs's top entries and etc/alpine-release in it.
func checkFS(t *testing.T, w written, img string) {
	t.Helper()
	if out, err := exec.Command(hosttool.Need(t, "e2fsck", "e2fsprogs"), "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	debugfs := hosttool.Need(t, "debugfs", "e2fsprogs")
	var top []string
	for _, l := range lines(runTool(t, debugfs, "-R", "ls -p /", img)) {
		// /inode/mode/uid/gid/name/size/
		if f := strings.Split(l, "/"); len(f) == 8 && f[5] != "." && f[5] != ".." && f[5] != "lost+found" {
			top = append(top, f[5])
		}
	}
	slices.Sort(top)
	var want []string
	for _, n := range w.Names {
		if d, _, _ := strings.Cut(path.Clean(n), "/"); !slices.Contains(want, d) {
			want = append(want, d)
		}
	}
	slices.Sort(want)
	if !slices.Equal(top, want) {
		t.Errorf("debugfs ls /: %q, want the rootfs's %q", top, want)
	}
	if rel := runTool(t, debugfs, "-R", "cat /etc/alpine-release", img); rel != w.Release {
		t.Errorf("debugfs cat /etc/alpine-release: %q, want %q", rel, w.Release)
	}
}

// The GPT partition types of an x86_64 disk (the UEFI specification's
// ESP; the Discoverable Partitions Specification's x86-64 root), as
// sfdisk -J names them.
const (
	espType  = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	rootType = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
)

// checkRaw: sgdisk finds the GPT sound (both headers and tables), with an ESP (fsck.fat clean)
// and an ext4 root (checkFS).
func checkRaw(t *testing.T, w written) {
	// sgdisk says "No problems found" and exits 0 after it has loaded
	// the backup GPT for a corrupt main one: a caution or a warning is a
	// problem too.
	out, err := exec.Command(hosttool.Need(t, "sgdisk", "gdisk"), "-v", w.Path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") || strings.Contains(string(out), "Caution") || strings.Contains(string(out), "Warning") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	pt := disktest.Read(t, w.Path)
	var types []string
	for _, p := range pt.Partitions {
		types = append(types, p.Type)
	}
	if pt.Label != "gpt" || len(pt.Partitions) != 2 || !slices.Equal(types, []string{espType, rootType}) {
		t.Fatalf("want a GPT with an ESP and an x86-64 root: %+v", pt)
	}
	if out, err := exec.Command(hosttool.Need(t, "fsck.fat", "dosfstools"), "-n", pt.Partitions[0].CopyOut(t, w.Path)).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n on the ESP: %v\n%s", err, out)
	}
	checkFS(t, w, pt.Partitions[1].CopyOut(t, w.Path))
}

// checkQcow2: qemu-img finds the image clean, and qcow2 v3.
// checkVHD: qemu-img reads it as vpc, the same disk as the raw image
// beside it when the set wrote one, and its footer keeps Azure's rules.
func checkVHD(t *testing.T, w written) {
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	var info struct {
		Format      string
		VirtualSize int64 `json:"virtual-size"`
	}
	out := runTool(t, qemuImg, "info", "-f", "vpc", "--output=json", w.Path)
	st, err := os.Stat(w.Path)
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Format != "vpc" || info.VirtualSize%vhd.MiB != 0 || st.Size() != info.VirtualSize+vhd.FooterSize {
		t.Errorf("qemu-img info: not a fixed VHD of whole MiB: %v\n%s", err, out)
	}
	f, err := os.Open(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := vhd.ReadFooter(f, st.Size()); err != nil {
		t.Error(err)
	}
	raw := strings.TrimSuffix(w.Path, ".vhd") + ".raw"
	if _, err := os.Stat(raw); err == nil {
		runTool(t, qemuImg, "compare", "-f", "raw", "-F", "vpc", raw, w.Path)
	}
}

// checkISO: xorriso reads its El Torito UEFI entry and the hybrid MBR's
// EFI partition, isoinfo its label and Rock Ridge names, and the
// rootfs.tar.gz on it is the rootfs gzip'ed.
func checkISO(t *testing.T, w written) {
	xorriso := hosttool.Need(t, "xorriso", "xorriso")
	isoinfo := hosttool.Need(t, "isoinfo", "genisoimage")
	out := runTool(t, xorriso, "-indev", w.Path, "-report_el_torito", "plain", "-report_system_area", "plain")
	for _, want := range []string{"El Torito boot img :   1  UEFI  y   none", "MBR partition path :   2  /boot/grub/efi.img"} {
		if !strings.Contains(out, want) {
			t.Errorf("xorriso's report lacks %q:\n%s", want, out)
		}
	}
	out = runTool(t, isoinfo, "-d", "-i", w.Path)
	if !strings.Contains(out, "Volume id: "+w.Spec.Name+"-"+w.Arch) || !strings.Contains(out, "Rock Ridge signatures") {
		t.Errorf("isoinfo -d:\n%s", out)
	}
	out = runTool(t, isoinfo, "-R", "-f", "-i", w.Path)
	for _, want := range []string{"/rootfs.tar.gz", "/boot/initramfs-live", "/boot/vmlinuz-virt", "/EFI/BOOT/grub.cfg"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("isoinfo -R -f: no %s:\n%s", want, out)
		}
	}
	tgz := runTool(t, isoinfo, "-R", "-x", "/rootfs.tar.gz", "-i", w.Path)
	zr, err := gzip.NewReader(strings.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if !slices.Equal(names, w.Names) {
		t.Errorf("the ISO's rootfs.tar.gz has %d entries, the rootfs %d", len(names), len(w.Names))
	}
}

// checkVMDK: qemu-img checks it and reads it as a streamOptimized
// VMDK, the same disk as the raw image beside it when there is one.
func checkVMDK(t *testing.T, w written) {
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	runTool(t, qemuImg, "check", "-f", "vmdk", w.Path)
	var info struct {
		Format   string
		Specific struct {
			Data struct {
				CreateType string `json:"create-type"`
			}
		} `json:"format-specific"`
	}
	out := runTool(t, qemuImg, "info", "--output=json", w.Path)
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Format != "vmdk" || info.Specific.Data.CreateType != "streamOptimized" {
		t.Errorf("qemu-img info: not a streamOptimized VMDK: %v\n%s", err, out)
	}
	raw := strings.TrimSuffix(w.Path, ".vmdk") + ".raw"
	if _, err := os.Stat(raw); err == nil {
		runTool(t, qemuImg, "compare", "-f", "raw", "-F", "vmdk", raw, w.Path)
	}
}

// checkOVA: the descriptor, the manifest and the VMDK in that order, the
// manifest's sums right, the descriptor valid against the DMTF OVF
// schema (xmllint) and naming the disk's size, UEFI asked for (the set's
// disk boots with UEFI only), and the VMDK the same disk as the raw.
func checkOVA(t *testing.T, w written) {
	xmllint := hosttool.Need(t, "xmllint", "libxml2-utils")
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	f, err := os.Open(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	dir := t.TempDir()
	var names []string
	sums := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		out, err := os.Create(filepath.Join(dir, h.Name))
		if err != nil {
			t.Fatal(err)
		}
		hash := sha256.New()
		io.Copy(io.MultiWriter(out, hash), tr)
		out.Close()
		sums[h.Name] = hex.EncodeToString(hash.Sum(nil))
	}
	base := strings.TrimSuffix(filepath.Base(w.Path), ".ova")
	if strings.Join(names, " ") != base+".ovf "+base+".mf "+base+".vmdk" {
		t.Fatalf("members %v", names)
	}
	mf, _ := os.ReadFile(filepath.Join(dir, base+".mf"))
	if want := fmt.Sprintf("SHA256(%s.ovf)= %s\nSHA256(%s.vmdk)= %s\n", base, sums[base+".ovf"], base, sums[base+".vmdk"]); string(mf) != want {
		t.Errorf("manifest:\n%s\nwant:\n%s", mf, want)
	}
	ovfPath := filepath.Join(dir, base+".ovf")
	runTool(t, xmllint, "--noout", "--nonet", "--schema", "../ova/testdata/ovf-schema/dsp8023_1.1.1.xsd", ovfPath)
	ovf, _ := os.ReadFile(ovfPath)
	if !strings.Contains(string(ovf), `vmw:key="firmware" vmw:value="efi"`) {
		t.Errorf("a UEFI-only disk's OVA does not ask for EFI firmware:\n%s", ovf)
	}
	raw := strings.TrimSuffix(w.Path, ".ova") + ".raw"
	if _, err := os.Stat(raw); err == nil {
		runTool(t, qemuImg, "compare", "-f", "raw", "-F", "vmdk", raw, filepath.Join(dir, base+".vmdk"))
	}
}

// checkGCE: GNU tar lists disk.raw alone, sparse, of a whole number of
// GiB, and extracts a disk whose partition table sfdisk reads with the
// same partitions as the raw image beside it (the GCE disk is that disk
// made a whole GiB: its root partition is larger).
func checkGCE(t *testing.T, w written) {
	gnuTar := hosttool.Need(t, "tar", "tar")
	out := runTool(t, gnuTar, "-tvzf", w.Path)
	f := strings.Fields(out)
	if len(f) < 6 || f[len(f)-1] != "disk.raw" || strings.Count(out, "\n") != 1 || !strings.HasPrefix(f[0], "-") {
		t.Fatalf("tar -tv:\n%s", out)
	}
	dir := t.TempDir()
	runTool(t, gnuTar, "-xzf", w.Path, "-C", dir)
	st, err := os.Stat(filepath.Join(dir, "disk.raw"))
	if err != nil || st.Size()%gce.GiB != 0 {
		t.Fatalf("disk.raw: %v, not whole GiB", err)
	}
	got := disktest.Read(t, filepath.Join(dir, "disk.raw"))
	raw := strings.TrimSuffix(w.Path, ".gce.tar.gz") + ".raw"
	if _, err := os.Stat(raw); err == nil {
		want := disktest.Read(t, raw)
		same := len(got.Partitions) == len(want.Partitions) && got.Label == want.Label
		for i := 0; same && i < len(got.Partitions); i++ {
			g, w := got.Partitions[i], want.Partitions[i]
			same = g.Type == w.Type && g.Start == w.Start && (g.Size == w.Size || i == len(got.Partitions)-1 && g.Size > w.Size)
		}
		if !same {
			t.Errorf("the GCE disk's partitions %+v, the raw's %+v", got, want)
		}
	}
}

func checkQcow2(t *testing.T, w written) {
	qemuImg := hosttool.Need(t, "qemu-img", "qemu-utils")
	if out := runTool(t, qemuImg, "check", w.Path); !strings.Contains(out, "No errors were found") {
		t.Errorf("qemu-img check:\n%s", out)
	}
	var info struct {
		Format         string
		FormatSpecific struct {
			Type string
			Data struct{ Compat string }
		} `json:"format-specific"`
		VirtualSize int64 `json:"virtual-size"`
	}
	out := runTool(t, qemuImg, "info", "--output=json", w.Path)
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Format != "qcow2" || info.FormatSpecific.Type != "qcow2" || info.FormatSpecific.Data.Compat != "1.1" || info.VirtualSize <= 0 {
		t.Errorf("qemu-img info: not qcow2 v3 (compat 1.1): %v\n%s", err, out)
	}
}
