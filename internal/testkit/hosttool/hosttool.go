// Package hosttool finds the host programs tests check outputs with
// (qemu, skopeo, umoci, ...): `make test` installs them, so under CI a
// missing one fails the test; elsewhere the test is skipped, saying what
// to install.
package hosttool

import (
	"os"
	"os/exec"
	"testing"
)

// Need returns the path of the program name, from the Debian package
// pkg.
func Need(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (make test installs it: apt-get install %s)", name, pkg)
		}
		t.Skipf("%s is not installed (apt-get install %s, or run make test)", name, pkg)
	}
	return p
}
