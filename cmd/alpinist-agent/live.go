package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/internal/fsprobe"
	"github.com/alpinist/alpinist/internal/rootfstar"
)

// bootLive is the initramfs of a live system (root=live:LABEL=NAME): it
// waits for the ISO 9660 volume labeled NAME (a CD, or the same image as
// a disk), unpacks its rootfs.tar.gz into a tmpfs, so that the system
// runs from memory as Alpine's own ISOs do, and switches to it.
func bootLive(args map[string]string, label string) error {
	dev, err := waitISO(label, 30*time.Second)
	if err != nil {
		return err
	}
	const media = "/run/live"
	for _, d := range []string{media, newRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount(dev, media, "iso9660", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s (LABEL=%s) on %s as iso9660: %w", dev, label, media, err)
	}
	size := args["rootflags"]
	if size == "" {
		size = "size=90%"
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755,"+size); err != nil {
		return fmt.Errorf("mount the live root's tmpfs: %w", err)
	}
	f, err := os.Open(filepath.Join(media, rootfstar.LiveTar))
	if err != nil {
		return fmt.Errorf("the live volume %s: %w", label, err)
	}
	err = rootfstar.Unpack(f, newRoot)
	f.Close()
	if err != nil {
		return fmt.Errorf("unpacking %s from %s: %w", rootfstar.LiveTar, label, err)
	}
	unix.Unmount(media, 0)
	return switchRoot(args)
}

// waitISO waits for the block device with an ISO 9660 file system
// labeled label.
func waitISO(label string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		blocks, _ := filepath.Glob("/sys/class/block/*")
		for _, b := range blocks {
			dev := "/dev/" + filepath.Base(b)
			if l, ok := isoLabel(dev); ok && l == label {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, b := range blocks {
				seen = append(seen, filepath.Base(b))
			}
			return "", errors.New("root=live:LABEL=" + label + ": no ISO 9660 volume so labeled after " + timeout.String() + " (block devices: " + strings.Join(seen, " ") + ")")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isoLabel(dev string) (string, bool) {
	f, err := os.Open(dev)
	if err != nil {
		return "", false
	}
	defer f.Close()
	return fsprobe.ISO9660(f)
}
