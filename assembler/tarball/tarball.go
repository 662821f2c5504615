// Package tarball writes the canonical rootfs tar as the tar outputs:
// plain, gzip'ed or zstd-compressed, streaming and reproducibly (no file
// name or time in the gzip header; fixed zstd settings whatever the
// host's CPUs).
package tarball

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"context"
	"github.com/alpinist/alpinist/internal/ctxio"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Formats are the tar outputs and their file name suffixes.
var Formats = map[string]string{"tar": ".tar", "tar.gz": ".tar.gz", "tar.zst": ".tar.zst"}

// zstdConcurrency is fixed so that the output never depends on the host.
const zstdConcurrency = 4

// Compress copies the tar stream r to w in format.
func Compress(w io.Writer, r io.Reader, format string) error {
	if _, ok := Formats[format]; !ok {
		return fmt.Errorf("tarball: unknown format %q (known: tar, tar.gz, tar.zst)", format)
	}
	zw, err := NewWriter(w, strings.TrimPrefix(strings.TrimPrefix(format, "tar"), "."))
	if err != nil {
		return err
	}
	if rf, ok := zw.(io.ReaderFrom); ok {
		_, err = rf.ReadFrom(r)
	} else {
		_, err = io.Copy(zw, r)
	}
	return errors.Join(err, zw.Close())
}

// NewWriter compresses what is written to it into w, reproducibly:
// compression "" (none), "gz", "zst" or "xz". Close flushes it (and does
// not close w).
func NewWriter(w io.Writer, compression string) (io.WriteCloser, error) {
	switch compression {
	case "":
		return nopCloser{w}, nil
	case "gz":
		zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		// 0: "no time" (the zero time.Time would be written truncated).
		zw.ModTime = time.Unix(0, 0)
		return zw, nil
	case "zst":
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(zstdConcurrency))
	case "xz":
		return newXZWriter(w), nil
	}
	return nil, fmt.Errorf("tarball: unknown compression %q (known: gz, zst, xz)", compression)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// WriteFile writes the tar file src as dst in format, through a
// temporary file renamed into place: dst is whole or absent. It stops
// at its next read of src once ctx (nil: never) is done.
func WriteFile(ctx context.Context, dst, src, format string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("tarball: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("tarball: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if err := Compress(tmp, ctxio.Reader(ctx, in), format); err != nil {
		tmp.Close()
		return fmt.Errorf("tarball: %s: %w", dst, err)
	}
	if err := errors.Join(tmp.Chmod(0o644), tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("tarball: %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("tarball: %w", err)
	}
	return nil
}

// Copy copies the tar stream r into tw entry by entry, after edit has
// seen each header: it may change it, or return false to drop the entry.
// Each header keeps its PAX records (xattrs); the format is left to tw.
func Copy(tw *tar.Writer, r io.Reader, edit func(*tar.Header) bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tarball: %w", err)
		}
		if !edit(h) {
			continue
		}
		h.Format = tar.FormatUnknown
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tarball: %s: %w", h.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("tarball: %s: %w", h.Name, err)
		}
	}
}

// AddFile writes a regular file entry owned by root.
func AddFile(tw *tar.Writer, name string, data []byte, mode int64, mtime time.Time) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime.Truncate(time.Second)}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tarball: %s: %w", name, err)
	}
	_, err := tw.Write(data)
	return err
}
