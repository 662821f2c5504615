package apkfile

import (
	"fmt"
	"io"
)

// ReadPrepared reads a package that was read and verified before (by
// Read, on the host) and handed on decompressed: its control tar
// (Package.ControlTar) and its data tar (what ReadOptions.DataTar
// received). It checks the entries as Read does (names, duplicates,
// links, types) and calls Control and Entry as Read does, but verifies
// no signature or hash: there is none to verify against a decompressed
// part, and that was done where the package was prepared. The build VM
// installs from it, so that under emulation it neither inflates nor
// hashes what the host already did natively.
//
// Info.Checksum and Info.Size are not known here; the caller has them
// from where the package was verified.
func ReadPrepared(control []byte, data io.Reader, opts ReadOptions) (*Package, error) {
	pr := &reader{opts: opts, pkg: &Package{Scripts: map[string][]byte{}, ControlTar: control}}
	if err := pr.parseControl(control); err != nil {
		return nil, err
	}
	err := pr.control()
	if err == nil {
		err = pr.entries(data, false)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pr.pkg.Info, err)
	}
	return pr.pkg, nil
}
