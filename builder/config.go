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
)

// Config is the spec's system configuration as the agent takes it
// for one architecture. A spec with a disk gets a getty on the serial
// console and, unless it says otherwise, DHCP on eth0.
func Config(s *spec.Spec, arch string) pkgdisk.Config {
	c := pkgdisk.Config{Hostname: s.Hostname, Timezone: s.Timezone, Run: s.Run}
	c.Services, c.DefaultServices = s.ServicesFor()
	for _, g := range s.Groups {
		c.Groups = append(c.Groups, pkgdisk.Group{Name: g.Name, GID: g.GID})
	}
	for _, u := range s.Users {
		c.Users = append(c.Users, pkgdisk.User{Name: u.Name, UID: u.UID, Group: u.Group, Groups: u.Groups, Home: u.Home,
			Shell: u.Shell, Password: u.Password, AuthorizedKeys: u.AuthorizedKeys})
	}
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
	n := s.Network
	if n == nil && s.Disk != nil {
		n = &spec.DefaultNetwork
	}
	if n != nil {
		c.Network = &pkgdisk.Network{DNS: n.DNS}
		for _, in := range n.Interfaces {
			c.Network.Interfaces = append(c.Network.Interfaces, pkgdisk.Interface{Name: in.Name, DHCP: in.DHCP, Addresses: in.Addresses, Gateways: in.Gateways})
		}
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
