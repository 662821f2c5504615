package output

import (
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/alpinist/alpinist/assembler/disk"
	"github.com/alpinist/alpinist/assembler/gce"
	"github.com/alpinist/alpinist/assembler/ova"
	"github.com/alpinist/alpinist/assembler/qcow2"
	"github.com/alpinist/alpinist/assembler/vhd"
	"github.com/alpinist/alpinist/assembler/vmdk"
	"github.com/alpinist/alpinist/internal/atomicfile"
)

// The disk image's formats: each made from the raw disk (diskImage),
// which is built once per arch.

func (s *Set) raw(o Output, a *job) (string, error) {
	img, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	if err := copySparse(p, img); err != nil {
		return "", err
	}
	return p, nil
}

func (s *Set) qcow2(o Output, a *job) (string, error) {
	img, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	d := s.p.Spec.Disk
	return p, qcow2.WriteFile(s.p.Context, p, img, qcow2.Options{Compress: d != nil && d.Compress})
}

func (s *Set) vmdk(o Output, a *job) (string, error) {
	img, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	if err := vmdk.WriteFile(s.p.Context, p, img, vmdkOptions(filepath.Base(p), a.diskSeed)); err != nil {
		return "", err
	}
	a.vmdk = p
	return p, nil
}

// ova packs the disk's VMDK (the vmdk output's when it is one: the same
// bytes) with an OVF descriptor and a manifest.
func (s *Set) ova(o Output, a *job) (string, error) {
	img, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	diskName := s.p.Spec.Name + "-" + a.Arch + ".vmdk" // the vmdk output's name
	if a.vmdk == "" {
		p := filepath.Join(filepath.Dir(img), diskName)
		if err := vmdk.WriteFile(s.p.Context, p, img, vmdkOptions(diskName, a.diskSeed)); err != nil {
			return "", err
		}
		a.vmdk = p
	}
	st, err := os.Stat(img)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	machine := ova.VM{Name: s.p.Spec.Name + "-" + a.Arch, Arch: a.Arch, Capacity: st.Size(), EFI: a.diskEFIOnly}
	return p, ova.WriteFile(s.p.Context, p, machine, a.vmdk, diskName, s.p.Created)
}

// vmdkOptions are a VMDK's name and identities, from the disk's seed.
func vmdkOptions(name string, seed []byte) vmdk.Options {
	id := disk.SeedHash(seed, "vmdk content id")
	return vmdk.Options{FileName: name, CID: vmdk.CID(id[:]), LongContentID: hex.EncodeToString(id[:16])}
}

func (s *Set) vhd(o Output, a *job) (string, error) {
	img, err := s.diskImage(a)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	var id [16]byte
	h := disk.SeedHash(a.diskSeed, "vhd unique id")
	copy(id[:], h[:])
	return p, vhd.WriteFile(s.p.Context, p, img, vhd.Options{ID: id, Time: s.p.Created})
}

// gce writes the disk, made a whole number of GiB, as Compute Engine
// imports it.
func (s *Set) gce(o Output, a *job) (string, error) {
	img, err := s.diskImageIn(a, gce.GiB)
	if err != nil {
		return "", err
	}
	p := s.path(o, a.Arch)
	return p, gce.WriteFile(s.p.Context, p, img, s.p.Created)
}

// copySparse copies a sparse image, leaving zero blocks unwritten.
func copySparse(dst, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, 0o644, func(f *os.File) error {
		if err := f.Truncate(st.Size()); err != nil {
			return err
		}
		return disk.CopyImage(src)(f, 0, st.Size())
	})
}
