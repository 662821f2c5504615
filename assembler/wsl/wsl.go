// Package wsl writes the rootfs as a tarball that Windows Subsystem for
// Linux imports (`wsl --import NAME DIR FILE.tar.gz`): the root
// filesystem gzip'ed, with /etc/wsl.conf from the spec when it gives one.
package wsl

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"context"
	"github.com/alpinist/alpinist/assembler/tarball"
	"github.com/alpinist/alpinist/internal/atomicfile"
	"github.com/alpinist/alpinist/internal/ctxio"
)

// ConfPath is wsl.conf's name in the tar.
const ConfPath = "etc/wsl.conf"

// WriteFile writes the rootfs tar file src as the WSL tarball dst. A
// non-nil conf replaces any /etc/wsl.conf of the rootfs, dated mtime.
// It stops at its next read of src once ctx (nil: never) is done.
func WriteFile(ctx context.Context, dst, src string, conf []byte, mtime time.Time) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("wsl: %w", err)
	}
	defer in.Close()
	err = atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		return Write(w, ctxio.Reader(ctx, in), conf, mtime)
	})
	if err != nil {
		return fmt.Errorf("wsl: %s: %w", dst, err)
	}
	return nil
}

// Write writes the rootfs tar stream r to w as a WSL tarball.
func Write(w io.Writer, r io.Reader, conf []byte, mtime time.Time) error {
	zw, err := tarball.NewWriter(w, "gz")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	err = tarball.Copy(tw, r, func(h *tar.Header) bool {
		return conf == nil || h.Name != ConfPath
	})
	if err == nil && conf != nil {
		err = tarball.AddFile(tw, ConfPath, conf, 0o644, mtime)
	}
	return errors.Join(err, tw.Close(), zw.Close())
}
