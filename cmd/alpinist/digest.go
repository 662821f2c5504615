package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/assembler/output"
)

// printResults prints what was written, one line each, with its size and
// sha256 (of index.json for a directory such as an OCI layout): the one
// its writer made as it wrote it when there is one, else read from the
// file, its holes hashed without reading them.
func printResults(e *env, rs []output.Result) {
	for _, r := range rs {
		what := r.Output
		if r.Arch != "" {
			what = r.Arch + ": " + r.Output
		}
		fmt.Fprintf(e.stdout, "%s: %s (%d bytes, %s)\n", what, r.Path, r.Size, resultDigest(r))
	}
}

// resultDigest is "sha256 HEX" of a result: its writer's when it made
// one, else the file's, or a directory's (an OCI layout's) index.json's.
func resultDigest(r output.Result) string {
	if r.SHA256 != "" {
		return "sha256 " + r.SHA256
	}
	p, name := r.Path, "sha256"
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		p, name = filepath.Join(p, "index.json"), "index.json sha256"
	}
	sum, err := sparseDigest(p)
	if err != nil {
		return "no digest: " + err.Error()
	}
	return fmt.Sprintf("%s %x", name, sum)
}

// sparseDigest is the sha256 of the file p, the zeros of its holes
// (SEEK_HOLE, SEEK_DATA) hashed from memory rather than read.
func sparseDigest(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	zeros := make([]byte, 1<<20)
	size := st.Size()
	for off := int64(0); off < size; {
		data, err := f.Seek(off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // only a hole is left
			data = size
		case err != nil:
			data = off // no SEEK_DATA here: read it all
		}
		for n := data - off; n > 0; n -= min(n, int64(len(zeros))) {
			h.Write(zeros[:min(n, int64(len(zeros)))])
		}
		if data >= size {
			break
		}
		end, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, data, end-data), buf); err != nil {
			return nil, err
		}
		off = end
	}
	return h.Sum(nil), nil
}
