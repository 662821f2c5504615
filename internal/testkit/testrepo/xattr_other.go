//go:build !linux

package testrepo

import "errors"

func setxattr(path, name string, value []byte) error {
	return errors.New("xattrs are only written on Linux")
}
