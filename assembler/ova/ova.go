// Package ova writes an OVA: the tar that VMware (ESXi, Workstation,
// Fusion, ovftool) and VirtualBox import as a virtual machine. It holds,
// in this order (DMTF DSP0243): the OVF descriptor (an OVF 1.x envelope:
// one VM, its CPUs and memory, a SATA (AHCI) controller with the disk, an
// E1000 network card), the manifest with the SHA-256 of the other files
// ("SHA256(NAME)= HEX", as ovftool writes it), and the disk as a
// streamOptimized VMDK. SATA and E1000 because every x86 hypervisor
// that imports OVAs has them and Alpine's linux-virt drives them (AHCI
// built in, so the root is found without an initramfs module).
//
// Everything in it is a function of its inputs: the same disk gives the
// same OVA. The tests validate the descriptor against the DMTF OVF
// envelope schema (DSP8023 1.1.1, kept in testdata) with xmllint.
package ova

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
)

// VM is the virtual machine the OVA describes.
type VM struct {
	// Name names the VM, and the descriptor and manifest (NAME.ovf,
	// NAME.mf).
	Name string
	// Arch is Alpine's: x86_64 or x86 (the arches VMware and VirtualBox
	// import OVAs for).
	Arch string
	// CPUs and MemoryMiB size it (0: 2 and 1024).
	CPUs, MemoryMiB int
	// Capacity is the disk's virtual size in bytes.
	Capacity int64
	// EFI boots it with UEFI (VMware's firmware=efi); else the BIOS.
	EFI bool
}

// guest is the OVF operating system id (CIM's) and VMware's guest type.
var guest = map[string]struct {
	id     int
	osType string
}{
	"x86_64": {101, "otherLinux64Guest"},
	"x86":    {36, "otherLinuxGuest"},
}

// WriteFile writes the OVA dst (whole or not at all) for vm with the
// streamOptimized VMDK at disk, named diskName inside it.
func WriteFile(ctx context.Context, dst string, vm VM, disk, diskName string, mtime time.Time) error {
	err := atomicfile.Write(dst, 0o644, func(w io.Writer) error { return Write(ctx, w, vm, disk, diskName, mtime) })
	if err != nil {
		return fmt.Errorf("ova: %s: %w", dst, err)
	}
	return nil
}

// Write writes the OVA to w.
func Write(ctx context.Context, w io.Writer, vm VM, disk, diskName string, mtime time.Time) error {
	f, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(h, ctxio.Reader(ctx, f)); err != nil {
		return fmt.Errorf("hashing the disk: %w", err)
	}
	diskSum := hex.EncodeToString(h.Sum(nil))
	ovf, err := Envelope(vm, diskName, st.Size())
	if err != nil {
		return err
	}
	ovfSum := sha256.Sum256(ovf)
	mf := fmt.Sprintf("SHA256(%s.ovf)= %x\nSHA256(%s)= %s\n", vm.Name, ovfSum, diskName, diskSum)

	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	add := func(name string, size int64, body io.Reader) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: mtime.UTC().Truncate(time.Second), Format: tar.FormatUSTAR}
		if size >= 1<<33 { // past USTAR's 8 GiB: ovftool and VirtualBox read PAX
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		n, err := io.Copy(tw, body)
		if err == nil && n != size {
			err = fmt.Errorf("%d bytes, not %d", n, size)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	err = errors.Join(
		add(vm.Name+".ovf", int64(len(ovf)), strings.NewReader(string(ovf))),
		add(vm.Name+".mf", int64(len(mf)), strings.NewReader(mf)),
	)
	if err != nil {
		return err
	}
	if err := add(diskName, st.Size(), ctxio.Reader(ctx, f)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// Envelope is the OVF descriptor of vm, whose disk is the VMDK file
// diskName of fileSize bytes.
func Envelope(vm VM, diskName string, fileSize int64) ([]byte, error) {
	g, ok := guest[vm.Arch]
	if !ok {
		return nil, fmt.Errorf("ova: VMware and VirtualBox import OVAs of x86_64 and x86 machines, not %s (the vmdk output is the disk alone)", vm.Arch)
	}
	if vm.Name == "" || vm.Capacity <= 0 {
		return nil, fmt.Errorf("ova: a VM needs a name and a disk (name %q, %d bytes)", vm.Name, vm.Capacity)
	}
	cpus, mem := vm.CPUs, vm.MemoryMiB
	if cpus <= 0 {
		cpus = 2
	}
	if mem <= 0 {
		mem = 1024
	}
	name, file := esc(vm.Name), esc(diskName)
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
`)
	fmt.Fprintf(&b, `  <References>
    <File ovf:href="%s" ovf:id="file1" ovf:size="%d"/>
  </References>
  <DiskSection>
    <Info>The virtual disk</Info>
    <Disk ovf:capacity="%d" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The network the VM is connected to</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="%s">
    <Info>An Alpine Linux virtual machine built by alpinist</Info>
    <Name>%s</Name>
    <OperatingSystemSection ovf:id="%d" vmw:osType="%s">
      <Info>The guest operating system</Info>
      <Description>Alpine Linux</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>The virtual hardware</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
`, file, fileSize, vm.Capacity, name, name, g.id, g.osType, name)
	items := []string{
		item(1, "hertz * 10^6", fmt.Sprintf("%d virtual CPUs", cpus), 3, "", "", "", fmt.Sprint(cpus)),
		item(2, "byte * 2^20", fmt.Sprintf("%d MiB of memory", mem), 4, "", "", "", fmt.Sprint(mem)),
		item(3, "", "SATA controller 0", 20, "vmware.sata.ahci", "", "", ""),
		item(4, "", "Hard disk 1", 17, "", "ovf:/disk/vmdisk1", "3", ""),
		item(5, "", "Network adapter 1", 10, "E1000", "", "", ""),
	}
	for _, it := range items {
		b.WriteString(it)
	}
	if vm.EFI {
		b.WriteString(`      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
`)
	}
	b.WriteString("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n")
	return []byte(b.String()), nil
}

// item is a RASD item, its elements in the schema's (alphabetical)
// order; empty ones are left out.
func item(id int, units, name string, typ int, subType, host, parent, quantity string) string {
	var b strings.Builder
	b.WriteString("      <Item>\n")
	el := func(tag, v string) {
		if v != "" {
			fmt.Fprintf(&b, "        <rasd:%s>%s</rasd:%s>\n", tag, esc(v), tag)
		}
	}
	switch typ {
	case 17:
		el("AddressOnParent", "0")
	case 20:
		el("Address", "0")
	}
	el("AllocationUnits", units)
	if typ == 10 {
		el("AutomaticAllocation", "true")
		el("Connection", "VM Network")
	}
	el("ElementName", name)
	el("HostResource", host)
	el("InstanceID", fmt.Sprint(id))
	el("Parent", parent)
	el("ResourceSubType", subType)
	el("ResourceType", fmt.Sprint(typ))
	el("VirtualQuantity", quantity)
	b.WriteString("      </Item>\n")
	return b.String()
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}
