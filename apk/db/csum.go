package db

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/alpinist/alpinist/apk"
)

// encodeChecksum writes a checksum as apk-tools 2.14 does
// (apk_blob_push_csum, apk.EncodeChecksum): 20 bytes (SHA-1) as "Q1" and
// base64, 16 bytes (MD5) as lower-case hex. apk 2.14 has no other
// checksum types.
func encodeChecksum(sum []byte) (string, error) {
	if len(sum) != sha1.Size && len(sum) != 16 {
		return "", fmt.Errorf("checksum of %d bytes: apk 2.14 stores only SHA-1 (20) or MD5 (16)", len(sum))
	}
	return apk.EncodeChecksum(sum), nil
}

// decodeChecksum reads a whole field as a checksum apk 2.14 reads
// (apk.DecodeChecksum without apk 3's SHA-256): "Q1" and base64 or "X1" and
// hex for SHA-1, 32 hex digits for MD5.
func decodeChecksum(s string) ([]byte, error) {
	b, err := apk.DecodeChecksum(s)
	if err != nil {
		return nil, err
	}
	if len(b) != sha1.Size && len(b) != 16 {
		return nil, fmt.Errorf("checksum %q: apk 2.14 reads only SHA-1 (Q1, X1) or MD5 checksums", short(s))
	}
	return b, nil
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
