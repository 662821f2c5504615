// Package configure applies the spec's system configuration to the
// installed target inside the build VM: the hostname, timezone, network
// and serial console; groups and users (as Alpine's addgroup and adduser
// make them); the spec's files; OpenRC services (as rc-update add); then
// the run steps (shell commands run with the target's own /bin/sh in a
// chroot of it).
package configure

import (
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/agent/fsroot"
	"github.com/alpinist/alpinist/agent/install"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"golang.org/x/sys/unix"
)

// Apply configures target, in this order: hostname, timezone, network,
// serial console, groups and users (root locked unless the spec gives
// it a password), files (their trees read from trees), services, then
// the run steps. epoch (SOURCE_DATE_EPOCH) dates what is written; mount
// bind-mounts /dev, /proc and /sys for the run steps (the agent sets it).
func Apply(target string, cfg pkgdisk.Config, trees Trees, epoch int64, mount bool, log io.Writer) error {
	r, err := fsroot.Open(target)
	if err != nil {
		return err
	}
	defer r.Close()
	if cfg.Hostname != "" {
		if err := hostname(r, cfg.Hostname, epoch); err != nil {
			return err
		}
	}
	if cfg.Timezone != "" {
		if err := timezone(r, cfg.Timezone, epoch); err != nil {
			return err
		}
	}
	if cfg.Network != nil {
		if err := network(r, *cfg.Network, epoch); err != nil {
			return err
		}
	}
	if cfg.Console != "" {
		if err := console(r, cfg.Console, epoch); err != nil {
			return err
		}
	}
	if err := accounts(target, cfg, epoch); err != nil {
		return err
	}
	if err := files(r, cfg.Files, trees, epoch); err != nil {
		return err
	}
	if err := services(r, cfg.Services, cfg.DefaultServices, epoch, log); err != nil {
		return err
	}
	if len(cfg.Run) > 0 {
		if _, err := r.Lstat("bin/sh"); err != nil {
			return fmt.Errorf("run: the target has no /bin/sh to run the steps with (install busybox or another shell)")
		}
	}
	for i, c := range cfg.Run {
		fmt.Fprintf(log, "run step %d: %s\n", i+1, c)
		if err := install.Chroot(target, mount, epoch, log, fmt.Sprintf("run step %d (%s)", i+1, c), "/bin/sh", "-c", c); err != nil {
			return err
		}
	}
	if cfg.EFI != nil {
		if err := grubEFI(target, r, *cfg.EFI, epoch, mount, log); err != nil {
			return err
		}
	}
	return nil
}

// grubRequired are the GRUB modules a disk cannot boot without.
var grubRequired = []string{"part_gpt", "part_msdos", "fat", "ext2", "linux", "search_fs_uuid", "configfile", "normal"}

// grubEFI makes GRUB's image (EFI, or Open Firmware's for a PReP
// partition) with the target's own grub-mkimage (a program of the
// target's architecture: it runs here, natively).
func grubEFI(target string, r *fsroot.Root, e pkgdisk.EFI, epoch int64, mount bool, log io.Writer) error {
	const mkimage = "usr/bin/grub-mkimage"
	platform := "usr/lib/grub/" + e.Format
	for _, need := range []string{mkimage, platform + "/kernel.img"} {
		if _, err := r.Lstat(need); err != nil {
			if strings.HasSuffix(e.Format, "-ieee1275") {
				return fmt.Errorf("boot: a disk that boots with Open Firmware needs GRUB for IEEE 1275 in the system (/%s is missing): add the grub-ieee1275 package", need)
			}
			return fmt.Errorf("boot: a disk that boots with UEFI needs GRUB for EFI in the system (/%s is missing): add the grub-efi package", need)
		}
	}
	dir := path.Dir(strings.TrimPrefix(e.Output, "/"))
	if err := r.MkdirAll(dir, 0o755, 0, 0); err != nil {
		return fmt.Errorf("boot: %s: %w", dir, err)
	}
	// Modules this GRUB lacks are left out, but for those booting needs.
	var mods []string
	for _, m := range e.Modules {
		if _, err := r.Lstat(platform + "/" + m + ".mod"); err == nil {
			mods = append(mods, m)
		} else if slices.Contains(grubRequired, m) {
			return fmt.Errorf("boot: GRUB for %s has no %s module (/%s/%s.mod)", e.Format, m, platform, m)
		}
	}
	argv := []string{"/" + mkimage, "-O", e.Format, "-d", "/" + platform, "-p", e.Prefix, "-o", e.Output}
	if e.Config != "" {
		// The first configuration, built in; the file goes once the
		// image is made.
		cfg := path.Join(dir, ".alpinist-grub-early.cfg")
		if err := r.WriteFile(cfg, strings.NewReader(e.Config), 0o644, 0, 0, nil, epoch); err != nil {
			return fmt.Errorf("boot: %w", err)
		}
		defer func() {
			if fd, name, err := r.Parent(cfg); err == nil {
				r.Remove(fd, name)
				unix.Close(fd)
			}
		}()
		argv = append(argv, "-c", "/"+cfg)
	}
	argv = append(argv, mods...)
	fmt.Fprintf(log, "boot: %s\n", strings.Join(argv, " "))
	return install.Chroot(target, mount, epoch, log, "grub-mkimage", argv...)
}

// hostname writes /etc/hostname as setup-hostname does and /etc/hosts as
// setup-alpine leaves it: the loopback line names the host in full and
// by its short name ("127.0.0.1\tweb-1.example.org web-1
// localhost.localdomain localhost"; a name without a domain once, where
// setup-alpine would make up "my.domain"), the ::1 line is
// alpine-baselayout's.
func hostname(r *fsroot.Root, name string, epoch int64) error {
	if err := writeText(r, "etc/hostname", name+"\n", epoch); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	names := name
	if short, _, ok := strings.Cut(name, "."); ok {
		names += " " + short
	}
	hosts := "127.0.0.1\t" + names + " localhost.localdomain localhost\n::1\t\tlocalhost localhost.localdomain\n"
	if err := writeText(r, "etc/hosts", hosts, epoch); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	return nil
}
