package export

import (
	"archive/tar"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Fill is the host's side of Options.Ref: the content of the entry h
// read from r, or, for a RefType entry, its bytes from the package disk
// pkgs (of size bytes); h then becomes the regular file it stands for. A
// reference outside the disk is an error.
func Fill(h *tar.Header, r io.Reader, pkgs io.ReaderAt, size int64) (io.Reader, error) {
	if h.Typeflag != RefType {
		return r, nil
	}
	ref := h.Linkname
	o, sz, ok := strings.Cut(ref, ":")
	off, err1 := strconv.ParseInt(o, 10, 64)
	n, err2 := strconv.ParseInt(sz, 10, 64)
	if !ok || err1 != nil || err2 != nil || off < 0 || n < 0 || n > size-off || h.Size != 0 {
		return nil, errors.New("bad reference to the package disk: " + strconv.Quote(ref))
	}
	h.Typeflag, h.Linkname, h.Size = tar.TypeReg, "", n
	return io.NewSectionReader(pkgs, off, n), nil
}
