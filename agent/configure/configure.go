// Package configure applies the spec's system configuration to the
// installed target inside the build VM: the hostname, groups and users
// (as Alpine's addgroup and adduser make them), then the run steps (shell
// commands run with the target's own /bin/sh in a chroot of it).
package configure

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alpinist/alpinist/agent/install"
	"github.com/alpinist/alpinist/agent/pkgdisk"
)

// Apply configures target. epoch (SOURCE_DATE_EPOCH) dates new shadow
// entries; mount bind-mounts /dev, /proc and /sys for the run steps (the
// agent sets it).
func Apply(target string, cfg pkgdisk.Config, epoch int64, mount bool, log io.Writer) error {
	if cfg.Hostname != "" {
		if err := hostname(target, cfg.Hostname); err != nil {
			return err
		}
	}
	if err := accounts(target, cfg, epoch); err != nil {
		return err
	}
	if len(cfg.Run) > 0 {
		if _, err := os.Lstat(filepath.Join(target, "bin", "sh")); err != nil {
			return fmt.Errorf("run: the target has no /bin/sh to run the steps with (install busybox or another shell)")
		}
	}
	for i, c := range cfg.Run {
		fmt.Fprintf(log, "run step %d: %s\n", i+1, c)
		if err := install.Chroot(target, mount, log, fmt.Sprintf("run step %d (%s)", i+1, c), "/bin/sh", "-c", c); err != nil {
			return err
		}
	}
	return nil
}

// hostname writes /etc/hostname and an /etc/hosts naming the host on the
// loopback addresses, as Alpine's setup-hostname leaves them.
func hostname(target, name string) error {
	files := map[string]string{
		"etc/hostname": name + "\n",
		"etc/hosts":    "127.0.0.1\t" + name + " localhost localhost.localdomain\n::1\t\t" + name + " localhost localhost.localdomain\n",
	}
	for p, data := range files {
		full := filepath.Join(target, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		// Through a temporary name: a symlink at the path is replaced,
		// never followed out of the target.
		tmp := full + ".alpinist-tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
		if err := os.Rename(tmp, full); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("hostname: %w", err)
		}
	}
	return nil
}
