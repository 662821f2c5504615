package ova

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/assembler/vmdk"
	"github.com/alpinist/alpinist/internal/testkit/disktest"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

var mtime = time.Unix(1700000000, 0)

// schema is the DMTF OVF envelope schema (DSP8023 1.1.1) and the schemas
// it imports, kept in testdata (see its README).
const schema = "testdata/ovf-schema/dsp8023_1.1.1.xsd"

// validate has xmllint check an OVF descriptor against the schema,
// offline.
func validate(t *testing.T, ovf []byte) {
	t.Helper()
	xmllint := hosttool.Need(t, "xmllint", "libxml2-utils")
	p := filepath.Join(t.TempDir(), "vm.ovf")
	if err := os.WriteFile(p, ovf, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(xmllint, "--noout", "--nonet", "--schema", schema, p).CombinedOutput(); err != nil {
		t.Errorf("xmllint --schema: %v\n%s\n%s", err, out, ovf)
	}
}

// TestEnvelopeValidates: the descriptor of a BIOS and of a UEFI VM, and
// of an x86 one, passes the DMTF schema; a name with XML's special
// characters is escaped; an arch VMware and VirtualBox do not run is
// refused.
func TestEnvelopeValidates(t *testing.T) {
	for _, vm := range []VM{
		{Name: "web", Arch: "x86_64", Capacity: 130 << 20},
		{Name: "web-efi", Arch: "x86_64", Capacity: 1 << 30, EFI: true, CPUs: 4, MemoryMiB: 4096},
		{Name: `a<b&"c"`, Arch: "x86", Capacity: 64 << 20},
	} {
		ovf, err := Envelope(vm, vm.Name+"-disk1.vmdk", 12345)
		if err != nil {
			t.Fatal(err)
		}
		validate(t, ovf)
		if vm.EFI != bytes.Contains(ovf, []byte(`vmw:key="firmware" vmw:value="efi"`)) {
			t.Errorf("%s: firmware efi %v, not in the descriptor as such:\n%s", vm.Name, vm.EFI, ovf)
		}
	}
	if _, err := Envelope(VM{Name: "arm", Arch: "aarch64", Capacity: 1 << 20}, "d.vmdk", 1); err == nil || !strings.Contains(err.Error(), "aarch64") {
		t.Errorf("aarch64: %v", err)
	}
}

// TestOVA: the tar holds the descriptor, the manifest and the disk in
// that order, as USTAR with root's owner, the manifest's sums are the
// files', the disk is the VMDK given (qemu-img checks it), and two
// writes give the same bytes.
func TestOVA(t *testing.T) {
	dir := t.TempDir()
	raw := disktest.RawImage(t, dir, 5<<20, 1)
	disk := filepath.Join(dir, "web-x86_64.vmdk")
	if err := vmdk.WriteFile(context.Background(), disk, raw, vmdk.Options{FileName: "web-x86_64.vmdk", CID: 1}); err != nil {
		t.Fatal(err)
	}
	vm := VM{Name: "web", Arch: "x86_64", Capacity: 5 << 20}
	a, b := filepath.Join(dir, "a.ova"), filepath.Join(dir, "b.ova")
	for _, p := range []string{a, b} {
		if err := WriteFile(context.Background(), p, vm, disk, "web-x86_64.vmdk", mtime); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("two writes differ")
	}
	tr := tar.NewReader(bytes.NewReader(da))
	files := map[string][]byte{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format != tar.FormatUSTAR || h.Uid != 0 || h.Gid != 0 || h.Mode != 0o644 || !h.ModTime.Equal(mtime) {
			t.Errorf("%s: format %v, owner %d:%d, mode %o, time %v", h.Name, h.Format, h.Uid, h.Gid, h.Mode, h.ModTime)
		}
		names = append(names, h.Name)
		files[h.Name], _ = io.ReadAll(tr)
	}
	if strings.Join(names, " ") != "web.ovf web.mf web-x86_64.vmdk" {
		t.Fatalf("members %v", names)
	}
	want := fmt.Sprintf("SHA256(web.ovf)= %x\nSHA256(web-x86_64.vmdk)= %x\n", sha256.Sum256(files["web.ovf"]), sha256.Sum256(files["web-x86_64.vmdk"]))
	if string(files["web.mf"]) != want {
		t.Errorf("manifest:\n%s\nwant:\n%s", files["web.mf"], want)
	}
	validate(t, files["web.ovf"])
	if !bytes.Contains(files["web.ovf"], []byte(fmt.Sprintf(`ovf:href="web-x86_64.vmdk" ovf:id="file1" ovf:size="%d"`, len(files["web-x86_64.vmdk"])))) {
		t.Error("the descriptor does not give the disk's size")
	}
	inner := filepath.Join(dir, "inner.vmdk")
	os.WriteFile(inner, files["web-x86_64.vmdk"], 0o644)
	disktest.SameAsRaw(t, raw, inner, "vmdk")
}
