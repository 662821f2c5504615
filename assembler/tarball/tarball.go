// Package tarball writes the canonical rootfs tar as the tar outputs:
// plain, gzip'ed or zstd-compressed, streaming and reproducibly (no file
// name or time in the gzip header; fixed zstd settings whatever the
// host's CPUs).
package tarball

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Formats are the tar outputs and their file name suffixes.
var Formats = map[string]string{"tar": ".tar", "tar.gz": ".tar.gz", "tar.zst": ".tar.zst"}

// zstdConcurrency is fixed so that the output never depends on the host.
const zstdConcurrency = 4

// Compress copies the tar stream r to w in format.
func Compress(w io.Writer, r io.Reader, format string) error {
	switch format {
	case "tar":
		_, err := io.Copy(w, r)
		return err
	case "tar.gz":
		zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return err
		}
		// 0: "no time" (the zero time.Time would be written truncated).
		zw.ModTime = time.Unix(0, 0)
		if _, err := io.Copy(zw, r); err != nil {
			return err
		}
		return zw.Close()
	case "tar.zst":
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(zstdConcurrency))
		if err != nil {
			return err
		}
		if _, err := zw.ReadFrom(r); err != nil {
			zw.Close()
			return err
		}
		return zw.Close()
	}
	return fmt.Errorf("tarball: unknown format %q (known: tar, tar.gz, tar.zst)", format)
}

// WriteFile writes the tar file src as dst in format, through a
// temporary file renamed into place: dst is whole or absent.
func WriteFile(dst, src, format string) (err error) {
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
	if err := Compress(tmp, in, format); err != nil {
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
