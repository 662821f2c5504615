// Package fsprobe identifies file systems by their superblock, for the
// agent (which finds the root to switch to) and the tests, without
// linking a file system writer.
package fsprobe

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Ext4 reads an ext2/3/4 superblock from r (a device or an image): the
// file system's UUID (lower-case, dashed) and label.
func Ext4(r io.ReaderAt) (uuid, label string, ok bool) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return "", "", false
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return "", "", false
	}
	u := sb[0x68:0x78]
	uuid = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	return uuid, strings.TrimRight(string(sb[0x78:0x88]), "\x00"), true
}

// ISO9660 reads an ISO 9660 primary volume descriptor from r (sector 16
// of 2048 bytes): the volume's identifier, its label (up to a NUL,
// trailing spaces trimmed).
func ISO9660(r io.ReaderAt) (label string, ok bool) {
	pvd := make([]byte, 2048)
	if _, err := r.ReadAt(pvd, 16*2048); err != nil {
		return "", false
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return "", false
	}
	label, _, _ = strings.Cut(string(pvd[40:72]), "\x00")
	return strings.TrimRight(label, " "), true
}
