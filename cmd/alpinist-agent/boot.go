package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/internal/fsprobe"
)

// bootRoot is the agent as the initramfs of a system booted from a disk
// image (alpinist's stand-in for mkinitfs when the target has none): it
// loads the modules, waits for the root= device (UUID=..., LABEL=... or
// /dev/...), mounts it (rootfstype=, default ext4; read-only unless rw
// is on the command line, as the kernel does), moves /dev into it and
// switches to it, running init= (default /sbin/init). root=live:LABEL=
// boots a live system instead (live.go).
func bootRoot(args map[string]string) error {
	root := args["root"]
	if label, ok := strings.CutPrefix(root, "live:LABEL="); ok {
		return bootLive(args, label)
	}
	dev, err := waitRoot(root, 30*time.Second)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	fstype := args["rootfstype"]
	if fstype == "" {
		fstype = "ext4"
	}
	var flags uintptr = unix.MS_RDONLY
	if _, rw := args["rw"]; rw {
		flags = 0
	}
	if err := unix.Mount(dev, newRoot, fstype, flags, args["rootflags"]); err != nil {
		return fmt.Errorf("mount %s (%s) on %s as %s: %w", root, dev, newRoot, fstype, err)
	}
	return switchRoot(args)
}

// newRoot is where the system's root is mounted before the switch.
const newRoot = "/newroot"

// switchRoot moves /dev into newRoot, switches to it and runs init=
// (default /sbin/init).
func switchRoot(args map[string]string) error {
	root := args["root"]
	for _, m := range []string{"/proc", "/sys", "/tmp"} {
		unix.Unmount(m, unix.MNT_DETACH)
	}
	if err := unix.Mount("/dev", newRoot+"/dev", "", unix.MS_MOVE, ""); err != nil {
		unix.Unmount("/dev", unix.MNT_DETACH) // the system mounts its own
	}
	initPath := args["init"]
	if initPath == "" {
		initPath = "/sbin/init"
	}
	if _, err := os.Lstat(newRoot + initPath); err != nil {
		return fmt.Errorf("the root file system %s has no %s", root, initPath)
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return syscall.Exec(initPath, []string{initPath}, []string{"HOME=/", "TERM=linux", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"})
}

// waitRoot waits for the device root= names.
func waitRoot(root string, timeout time.Duration) (string, error) {
	if root == "" {
		return "", fmt.Errorf("no root= on the kernel command line")
	}
	deadline := time.Now().Add(timeout)
	for {
		if dev := findRoot(root); dev != "" {
			return dev, nil
		}
		if time.Now().After(deadline) {
			var seen []string
			blocks, _ := filepath.Glob("/sys/class/block/*")
			for _, b := range blocks {
				seen = append(seen, filepath.Base(b))
			}
			return "", fmt.Errorf("root=%s: no such device after %v (block devices: %s)", root, timeout, strings.Join(seen, " "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findRoot(root string) string {
	if strings.HasPrefix(root, "/dev/") {
		if _, err := os.Stat(root); err == nil {
			return root
		}
		return ""
	}
	kind, want, ok := strings.Cut(root, "=")
	if !ok {
		return ""
	}
	blocks, _ := filepath.Glob("/sys/class/block/*")
	for _, b := range blocks {
		dev := "/dev/" + filepath.Base(b)
		uuid, label, ok := ext4ID(dev)
		if !ok {
			continue
		}
		if kind == "UUID" && strings.EqualFold(uuid, want) || kind == "LABEL" && label == want {
			return dev
		}
	}
	return ""
}

// ext4ID reads the UUID and label of the ext file system on dev.
func ext4ID(dev string) (string, string, bool) {
	f, err := os.Open(dev)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	return fsprobe.Ext4(f)
}
