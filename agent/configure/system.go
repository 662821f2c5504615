package configure

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/fsroot"
	"github.com/alpinist/alpinist/agent/pkgdisk"
)

// runlevels are OpenRC's, in the order it enters them.
var runlevels = []string{"sysinit", "boot", "default", "shutdown"}

// writeText replaces the file p of the target (0644, root).
func writeText(r *fsroot.Root, p, text string, epoch int64) error {
	if err := r.MkdirAll(path.Dir(p), 0o755, 0, 0); err != nil {
		return err
	}
	return r.WriteFile(p, strings.NewReader(text), 0o644, 0, 0, nil, epoch)
}

// timezone links /etc/localtime to the zone's file of tzdata, as
// setup-timezone does, and names the zone in /etc/timezone.
func timezone(r *fsroot.Root, zone string, epoch int64) error {
	file := "/usr/share/zoneinfo/" + zone
	st, err := r.Lstat(file)
	if err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("timezone: %s: the target has no %s; add tzdata to the packages (or check the zone's name)", zone, file)
	}
	if err := r.Symlink("etc/localtime", file, 0, 0, epoch); err != nil {
		return fmt.Errorf("timezone: %w", err)
	}
	return writeText(r, "etc/timezone", zone+"\n", epoch)
}

// services adds each service to its runlevel as rc-update add does: a
// symlink /etc/runlevels/LEVEL/NAME -> /etc/init.d/NAME. A service of svc
// that no installed package (or file of the spec) provides is an error;
// one of defaults is left out then, and logged.
func services(r *fsroot.Root, svc, defaults map[string][]string, epoch int64, log io.Writer) error {
	for _, level := range slices.Sorted(maps.Keys(svc)) {
		if !slices.Contains(runlevels, level) {
			return fmt.Errorf("services: unknown runlevel %q", level)
		}
	}
	for _, level := range runlevels {
		type want struct {
			name     string
			required bool
		}
		var all []want
		for _, n := range defaults[level] {
			all = append(all, want{n, false})
		}
		for _, n := range svc[level] {
			all = append(all, want{n, true})
		}
		for _, w := range all {
			name := w.name
			script := "/etc/init.d/" + name
			st, err := r.Lstat(script)
			if err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if !w.required {
					fmt.Fprintf(log, "services: %s: %s is not installed, not enabled\n", level, name)
					continue
				}
				return fmt.Errorf("services: %s: %s: no %s in the target; %s", level, name, script, available(r))
			}
			dir := "etc/runlevels/" + level
			if err := r.MkdirAll(dir, 0o755, 0, 0); err != nil {
				return fmt.Errorf("services: %w", err)
			}
			if err := r.Symlink(dir+"/"+name, script, 0, 0, epoch); err != nil {
				return fmt.Errorf("services: %w", err)
			}
		}
	}
	return nil
}

// available names the services the target has.
func available(r *fsroot.Root) string {
	f, err := r.Open("etc/init.d")
	if err != nil {
		return "the target has no /etc/init.d (is openrc or the service's package installed?)"
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	slices.Sort(names)
	if len(names) == 0 {
		return "/etc/init.d is empty"
	}
	if len(names) > 30 {
		names = append(names[:30], "...")
	}
	return "the installed packages provide: " + strings.Join(names, ", ")
}

// interfaces renders /etc/network/interfaces (ifupdown-ng, as Alpine
// writes it): the loopback, then each interface, DHCP or static per
// address family.
func interfaces(n pkgdisk.Network) string {
	var b strings.Builder
	b.WriteString("auto lo\niface lo inet loopback\n")
	for _, in := range n.Interfaces {
		fmt.Fprintf(&b, "\nauto %s\n", in.Name)
		if in.DHCP {
			fmt.Fprintf(&b, "iface %s inet dhcp\n", in.Name)
		}
		for _, fam := range []struct {
			name string
			v4   bool
		}{{"inet", true}, {"inet6", false}} {
			var lines []string
			for _, a := range in.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is4() == fam.v4 {
					lines = append(lines, "\taddress "+a)
				}
			}
			if len(lines) == 0 || (fam.v4 && in.DHCP) {
				continue
			}
			for _, g := range in.Gateways {
				if a, err := netip.ParseAddr(g); err == nil && a.Is4() == fam.v4 {
					lines = append(lines, "\tgateway "+g)
				}
			}
			fmt.Fprintf(&b, "iface %s %s static\n%s\n", in.Name, fam.name, strings.Join(lines, "\n"))
		}
	}
	return b.String()
}

func network(r *fsroot.Root, n pkgdisk.Network, epoch int64) error {
	if err := writeText(r, "etc/network/interfaces", interfaces(n), epoch); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if len(n.DNS) == 0 {
		return nil
	}
	var b strings.Builder
	for _, d := range n.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if err := writeText(r, "etc/resolv.conf", b.String(), epoch); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// console starts a getty on the serial console tty in /etc/inittab: the
// line for it that Alpine's inittab has commented out
// ("#ttyS0::respawn:/sbin/getty -L ttyS0 115200 vt100") is uncommented,
// an active one kept, else Alpine's line is added; root may log in on it
// (/etc/securetty) when the file exists.
func console(r *fsroot.Root, tty string, epoch int64) error {
	data, err := r.ReadFile("etc/inittab")
	if err != nil {
		return fmt.Errorf("console: the target has no /etc/inittab for a getty on %s (is alpine-baselayout installed?): %w", tty, err)
	}
	line := tty + "::respawn:/sbin/getty -L " + tty + " 115200 vt100"
	re := regexp.MustCompile(`(?m)^#?\s*(` + regexp.QuoteMeta(tty) + `::.*)$`)
	var out string
	if m := re.FindSubmatch(data); m != nil {
		line = string(m[1])
		done := false
		out = re.ReplaceAllStringFunc(string(data), func(string) string {
			if done {
				return ""
			}
			done = true
			return line
		})
	} else {
		out = strings.TrimRight(string(data), "\n") + "\n\n# Serial console (alpinist)\n" + line + "\n"
	}
	if err := writeText(r, "etc/inittab", out, epoch); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	sec, err := r.ReadFile("etc/securetty")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	for _, l := range bytes.Split(sec, []byte("\n")) {
		if string(bytes.TrimSpace(l)) == tty {
			return nil
		}
	}
	return writeText(r, "etc/securetty", strings.TrimRight(string(sec), "\n")+"\n"+tty+"\n", epoch)
}
