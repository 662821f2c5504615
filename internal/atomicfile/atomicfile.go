// Package atomicfile writes files so that a reader or a crash never sees
// half of one: the content goes to a temporary file in the same
// directory, is synced, gets its mode, and is renamed into place. On any
// error the temporary file is removed and the old file (if any) stays.
package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
)

// Write creates or replaces path with what fill writes, with mode.
func Write(path string, mode os.FileMode, fill func(w io.Writer) error) error {
	return WriteFile(path, mode, func(f *os.File) error { return fill(f) })
}

// WriteFile is Write for a fill that needs the file itself: to write at
// offsets, truncate it to a size (sparse images), or seek.
func WriteFile(path string, mode os.FileMode, fill func(f *os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// WriteBytes writes data to path as Write does.
func WriteBytes(path string, data []byte, mode os.FileMode) error {
	return Write(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
