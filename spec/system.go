package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/bootdisk"
	"github.com/alpinist/alpinist/sysconfig"
)

// Runlevels are the OpenRC runlevels services can be added to, in the
// order OpenRC enters them.
var Runlevels = []string{"sysinit", "boot", "default", "shutdown"}

// Network is the system's network configuration (sysconfig's).
type Network = sysconfig.Network

// Interface is one network interface (sysconfig's).
type Interface = sysconfig.Interface

// Disk describes the bootable disk image: the boot-disk planner's.
type Disk = bootdisk.Disk

var (
	zoneRE    = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)
	serviceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)
	ifaceRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,14}$`)
	ttyRE     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]*$`)
)

func (p *parser) timezone(v *yaml.Node, s *Spec) {
	s.Timezone = p.scalar(v, "timezone")
	if s.Timezone != "" && !zoneRE.MatchString(s.Timezone) {
		p.errorf(v, "timezone %q: give a zone of the tz database, such as UTC or Europe/Paris", s.Timezone)
	}
}

// DefaultServices are the OpenRC services a bootable Alpine gets from
// setup-alpine (with setup-disk and the installer image's runlevels),
// which a spec with a disk gets too, each when an installed package
// provides it. A spec's services add to them; "-NAME" leaves one out.
var DefaultServices = map[string][]string{
	"sysinit":  {"devfs", "dmesg", "mdev", "hwdrivers"},
	"boot":     {"modules", "sysctl", "hostname", "bootmisc", "syslog", "networking"},
	"shutdown": {"mount-ro", "killprocs", "savecache"},
}

// Clouds are the clouds tiny-cloud configures a system for at its first
// boot; a spec's cloud: installs tiny-cloud-CLOUD (whose post-install
// writes CLOUD= into /etc/tiny-cloud.conf) and enables CloudServices.
var Clouds = []string{"nocloud", "alpine", "aws", "azure", "gcp", "oci"}

// CloudServices are tiny-cloud's OpenRC services by runlevel, as
// `tiny-cloud --enable` adds them: the boot phase (the root grown, the
// network, sshd), then early (user data saved), main (user, hostname,
// SSH keys) and final (user data run).
var CloudServices = map[string][]string{
	"boot":    {"tiny-cloud-boot"},
	"default": {"tiny-cloud-early", "tiny-cloud-main", "tiny-cloud-final"},
}

// ServicesFor splits the services to enable into those the spec names
// (an error when missing) and, with a disk, the defaults it does not
// leave out (enabled when provided), by runlevel.
func (s *Spec) ServicesFor() (named, defaults map[string][]string) {
	if s.Cloud != "" {
		named = map[string][]string{}
		for level, names := range CloudServices {
			for _, n := range names {
				if !slices.Contains(s.Services[level], "-"+n) {
					named[level] = append(named[level], n)
				}
			}
		}
	}
	for level, names := range s.Services {
		for _, n := range names {
			if !strings.HasPrefix(n, "-") && !slices.Contains(named[level], n) {
				if named == nil {
					named = map[string][]string{}
				}
				named[level] = append(named[level], n)
			}
		}
	}
	if s.Disk == nil {
		return named, nil
	}
	defaults = map[string][]string{}
	for level, names := range DefaultServices {
		for _, n := range names {
			if !slices.Contains(s.Services[level], "-"+n) && !slices.Contains(named[level], n) {
				defaults[level] = append(defaults[level], n)
			}
		}
	}
	return named, defaults
}

// services reads {RUNLEVEL: [service, ...], ...}.
func (p *parser) services(v *yaml.Node, s *Spec) {
	if v.Kind != yaml.MappingNode {
		p.errorf(v, "services: expected a mapping of runlevels to services, such as {boot: [networking], default: [sshd]}")
		return
	}
	if s.Services == nil {
		s.Services = map[string][]string{}
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		level := k.Value
		if !slices.Contains(Runlevels, level) {
			p.errorf(k, "services: unknown runlevel %q (known: %s)", level, strings.Join(Runlevels, ", "))
			continue
		}
		for _, n := range p.list(val, "services."+level) {
			name := p.scalar(n, "services."+level)
			switch {
			case name == "":
			case !serviceRE.MatchString(strings.TrimPrefix(name, "-")):
				p.errorf(n, "services.%s: %q is not a service name (a file name in /etc/init.d), or -NAME to leave out a default one", level, name)
			case slices.Contains(s.Services[level], name):
				p.errorf(n, "services.%s: %s listed twice", level, name)
			default:
				s.Services[level] = append(s.Services[level], name)
			}
		}
	}
}

func (p *parser) network(v *yaml.Node, s *Spec) {
	n := &Network{}
	p.mapping(v, "network", map[string]func(*yaml.Node){
		"interfaces": func(v *yaml.Node) {
			for _, in := range p.list(v, "network.interfaces") {
				p.iface(in, n)
			}
		},
		"dns": func(v *yaml.Node) {
			for _, d := range p.list(v, "network.dns") {
				text := p.scalar(d, "network.dns")
				if _, err := netip.ParseAddr(text); err != nil && text != "" {
					p.errorf(d, "network.dns: %q is not an IP address", text)
					continue
				}
				n.DNS = append(n.DNS, text)
			}
		},
	})
	s.Network = n
}

func (p *parser) iface(v *yaml.Node, n *Network) {
	in := Interface{}
	p.mapping(v, "network.interfaces", map[string]func(*yaml.Node){
		"name": func(v *yaml.Node) { in.Name = p.scalar(v, "network.interfaces.name") },
		"dhcp": func(v *yaml.Node) { in.DHCP = p.boolean(v, "network.interfaces.dhcp") },
		"address": func(v *yaml.Node) {
			for _, a := range p.list(v, "network.interfaces.address") {
				text := p.scalar(a, "network.interfaces.address")
				if _, err := netip.ParsePrefix(text); err != nil {
					p.errorf(a, "network.interfaces.address: %q is not an address with a prefix length, such as 192.168.1.10/24 or 2001:db8::10/64", text)
					continue
				}
				in.Addresses = append(in.Addresses, text)
			}
		},
		"gateway": func(v *yaml.Node) {
			for _, a := range p.list(v, "network.interfaces.gateway") {
				text := p.scalar(a, "network.interfaces.gateway")
				if _, err := netip.ParseAddr(text); err != nil {
					p.errorf(a, "network.interfaces.gateway: %q is not an IP address", text)
					continue
				}
				in.Gateways = append(in.Gateways, text)
			}
		},
	})
	if v.Kind != yaml.MappingNode {
		return
	}
	switch {
	case in.Name == "":
		p.errorf(v, "network.interfaces: an interface needs a name (eth0, ...)")
	case in.Name == "lo":
		p.errorf(v, "network.interfaces: lo is always configured as the loopback; leave it out")
	case !ifaceRE.MatchString(in.Name):
		p.errorf(v, "network.interfaces: %q is not an interface name", in.Name)
	case !in.DHCP && len(in.Addresses) == 0:
		p.errorf(v, "network.interfaces: %s: give dhcp: true or an address", in.Name)
	}
	families := map[bool]int{}
	for _, g := range in.Gateways {
		families[netip.MustParseAddr(g).Is4()]++
	}
	if families[true] > 1 || families[false] > 1 {
		p.errorf(v, "network.interfaces: %s: at most one gateway per address family", in.Name)
	}
	for _, o := range n.Interfaces {
		if o.Name == in.Name && in.Name != "" {
			p.errorf(v, "network.interfaces: %s listed twice", in.Name)
		}
	}
	n.Interfaces = append(n.Interfaces, in)
}

func (p *parser) disk(v *yaml.Node, s *Spec) {
	d := &Disk{}
	p.mapping(v, "disk", map[string]func(*yaml.Node){
		"size": func(v *yaml.Node) {
			text := p.scalar(v, "disk.size")
			n, err := ParseSize(text)
			if err != nil {
				p.errorf(v, "disk.size: %v", err)
			}
			d.Size = n
		},
		"table": func(v *yaml.Node) {
			d.Table = p.scalar(v, "disk.table")
			if d.Table != "gpt" && d.Table != "mbr" && d.Table != "" {
				p.errorf(v, "disk.table: %q is not gpt or mbr", d.Table)
			}
		},
		"boot": func(v *yaml.Node) {
			for _, b := range p.list(v, "disk.boot") {
				text := p.scalar(b, "disk.boot")
				switch {
				case text != "bios" && text != "uefi" && text != "ieee1275":
					p.errorf(b, "disk.boot: %q is not bios, uefi or ieee1275", text)
				case slices.Contains(d.Boot, text):
					p.errorf(b, "disk.boot: %s listed twice", text)
				default:
					d.Boot = append(d.Boot, text)
				}
			}
		},
		"console": func(v *yaml.Node) {
			d.Console = p.scalar(v, "disk.console")
			if d.Console != "" && !ttyRE.MatchString(d.Console) {
				p.errorf(v, "disk.console: %q is not a tty name such as ttyS0, or none", d.Console)
			}
		},
		"boot_partition": func(v *yaml.Node) {
			text := p.scalar(v, "disk.boot_partition")
			d.SeparateBoot = true
			if text == "auto" {
				return
			}
			n, err := ParseSize(text)
			switch {
			case err != nil:
				p.errorf(v, "disk.boot_partition: %v (or auto)", err)
			case n < 16<<20:
				p.errorf(v, "disk.boot_partition: %s is below the 16 MiB an ext4 /boot needs", text)
			}
			d.BootSize = n
		},
		"compress": func(v *yaml.Node) {
			d.Compress, d.CompressSet = p.boolean(v, "disk.compress"), true
		},
		"cmdline": func(v *yaml.Node) {
			d.Cmdline = p.scalar(v, "disk.cmdline")
			if strings.ContainsAny(d.Cmdline, "\n\x00") {
				p.errorf(v, "disk.cmdline: the kernel command line is one line")
			}
		},
	})
	s.Disk = d
}

// checkArches checks what depends on the architectures, once the whole
// spec (and the ones it extends) is read: every arch's disk boots.
func (p *parser) checkArches(root *yaml.Node, s *Spec) {
	if s.Disk == nil {
		return
	}
	for _, a := range s.Arch {
		// (An arch alpinist boots no disk for keeps the section's console
		// and getty; its disk outputs are refused at the build.)
		if bootdisk.Unbootable(a) != "" || len(bootdisk.Firmware(s.Disk.Boot, a)) > 0 {
			continue
		}
		if ar, _ := arch.Lookup(a); ar.PReP {
			p.errorf(root, "disk.boot: %s boots with ieee1275 (GRUB on Open Firmware) only; add it, or leave disk.boot out", a)
		} else if slices.Contains(s.Disk.Boot, "ieee1275") && !slices.Contains(s.Disk.Boot, "bios") {
			p.errorf(root, "disk.boot: ieee1275 (Open Firmware) boots ppc64le only, not %s; add uefi", a)
		} else {
			p.errorf(root, "disk.boot: bios boots x86 and x86_64 only, not %s; add uefi", a)
		}
	}
}

// ParseSize reads a size in bytes, with an optional binary unit: 512M,
// 2G, 1.5GiB, 10737418240.
func ParseSize(text string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(text), "B"), "i")
	mult := int64(1)
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("%q is not a size such as 512M, 2G or 1.5GiB", text)
	}
	return int64(f * float64(mult)), nil
}

func (p *parser) boolean(n *yaml.Node, field string) bool {
	switch v := p.scalar(n, field); v {
	case "true", "yes", "on":
		return true
	case "false", "no", "off":
		return false
	default:
		p.errorf(n, "%s: %q is not true or false", field, v)
		return false
	}
}

// World is what to install for arch: the packages, then the boot loaders
// the disk's firmware needs (the boot-disk plan's Packages) that the
// packages do not name.
func (s *Spec) World(arch string) []apk.Dependency {
	world := slices.Clone(s.Packages)
	if s.Cloud != "" && !slices.ContainsFunc(world, func(d apk.Dependency) bool { return d.Name == "tiny-cloud-"+s.Cloud }) {
		world = append(world, apk.Dependency{Name: "tiny-cloud-" + s.Cloud})
	}
	if s.Disk == nil {
		return world
	}
	for _, name := range bootdisk.New(s.Disk, arch).Packages() {
		if !slices.ContainsFunc(s.Packages, func(d apk.Dependency) bool { return d.Name == name }) {
			world = append(world, apk.Dependency{Name: name})
		}
	}
	return world
}
