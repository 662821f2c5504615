package db

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// encodeChecksum writes a checksum as apk-tools 2.14 does
// (apk_blob_push_csum): 20 bytes (SHA-1) as "Q1" and base64, 16 bytes
// (MD5) as lower-case hex. apk 2.14 has no other checksum types.
func encodeChecksum(sum []byte) (string, error) {
	switch len(sum) {
	case sha1.Size:
		return "Q1" + base64.StdEncoding.EncodeToString(sum), nil
	case 16:
		return hex.EncodeToString(sum), nil
	}
	return "", fmt.Errorf("checksum of %d bytes: apk 2.14 stores only SHA-1 (20) or MD5 (16)", len(sum))
}

// decodeChecksum reads a whole field as a checksum the way
// apk_blob_pull_csum does: "Q1" and base64 or "X1" and hex for SHA-1, 32
// hex digits for MD5. Unlike apk it rejects trailing bytes.
func decodeChecksum(s string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch {
	case len(s) == 32 && isHex(s[0]):
		b, err = hex.DecodeString(s)
	case len(s) == 30 && strings.HasPrefix(s, "Q1"):
		b, err = base64.StdEncoding.Strict().DecodeString(s[2:])
	case len(s) == 42 && strings.HasPrefix(s, "X1"):
		b, err = hex.DecodeString(s[2:])
	default:
		err = errBadChecksum
	}
	if err != nil || (len(b) != 16 && len(b) != 20) {
		return nil, fmt.Errorf("checksum %q: want Q1 and base64 or X1 and hex (SHA-1), or 32 hex digits (MD5)", short(s))
	}
	return b, nil
}

var errBadChecksum = fmt.Errorf("bad checksum")

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// Xattr is one extended attribute of an installed file or directory.
type Xattr struct {
	Name  string
	Value []byte
}

// XattrChecksum is the checksum apk-tools 2.14 records for a file's or
// directory's extended attributes (apk_fileinfo_hash_xattr_array): SHA-1
// over the attributes sorted by name, each name and value preceded by its
// length as a 32-bit big-endian number. It is nil when there are none,
// which apk writes as no checksum at all. xattrs is not modified.
func XattrChecksum(xattrs []Xattr) []byte {
	if len(xattrs) == 0 {
		return nil
	}
	sorted := append([]Xattr(nil), xattrs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha1.New()
	var n [4]byte
	for _, x := range sorted {
		binary.BigEndian.PutUint32(n[:], uint32(len(x.Name)))
		h.Write(n[:])
		h.Write([]byte(x.Name))
		binary.BigEndian.PutUint32(n[:], uint32(len(x.Value)))
		h.Write(n[:])
		h.Write(x.Value)
	}
	return h.Sum(nil)
}
