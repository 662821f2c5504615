package builder

import (
	"fmt"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/assembler/output"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/spec"
	"github.com/alpinist/alpinist/sysconfig"
)

// Config is the spec's system configuration as the agent takes it
// for one architecture. A spec with a disk gets a getty on the serial
// console and, unless it says otherwise, DHCP on eth0.
func Config(s *spec.Spec, arch string) pkgdisk.Config {
	c := pkgdisk.Config{Hostname: s.Hostname, Timezone: s.Timezone, Run: s.Run}
	c.Services, c.DefaultServices = s.ServicesFor()
	c.Groups, c.Users = slices.Clone(s.Groups), slices.Clone(s.Users)
	for _, f := range s.Files {
		pf := pkgdisk.File{Dst: f.Dst, Kind: f.Kind(), Mode: f.Mode, Owner: f.Owner}
		switch pf.Kind {
		case "symlink":
			pf.Target = f.Symlink
		case "hardlink":
			pf.Target = f.Hardlink
		case "copy", "content":
			pf.Mode = spec.NoMode // the modes travel with the tree
		}
		c.Files = append(c.Files, pf)
	}
	if n := s.Network; n != nil {
		c.Network = n
	} else if s.Disk != nil {
		n := sysconfig.DefaultNetwork
		c.Network = &n
	}
	if s.Disk != nil {
		// GRUB's EFI image whenever the disk boots with UEFI, whatever
		// the outputs: the rootfs is the same system for a tar and a disk
		// (and the build cache and alpinist assemble see one system).
		plan := bootdisk.New(s.Disk, arch)
		c.Console, c.EFI = plan.Console, plan.GRUBImage()
	}
	return c
}

// CheckDiskSection says, before anything is resolved, when a bootable
// output has no disk: section to add its boot loaders.
func CheckDiskSection(s *spec.Spec, outputs []string) error {
	if s.Disk != nil {
		return nil
	}
	for _, o := range output.Outputs {
		if o.Disk && slices.Contains(outputs, o.Name) {
			return fmt.Errorf("output %s boots, and the spec has no disk: section to add its boot loaders and console; add one (disk: {} takes the defaults)", o.Name)
		}
	}
	return nil
}

// CheckDiskPackages says, before any VM boots, what a disk image output
// lacks among the resolved packages: a kernel (the boot loaders are in
// the world, spec.World).
func CheckDiskPackages(outputs []string, entry lock.Arch) error {
	if !output.AnyDisk(outputs) {
		return nil
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(entry.Packages, func(p lock.Package) bool { return strings.HasPrefix(p.Name, prefix) })
	}
	if !has("linux-") {
		return fmt.Errorf("a disk image needs a kernel: add a linux-* package (such as linux-virt) to packages")
	}
	return nil
}
