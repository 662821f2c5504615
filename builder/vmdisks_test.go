package builder

import (
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/repo"
)

// TestKernelPackage: the build VM's kernel is the newest linux-virt of
// all the repositories; without one the error says what to do, for
// armhf (whose Alpine repositories have linux-rpi only) armv7's kernel.
func TestKernelPackage(t *testing.T) {
	idx := []*repo.Index{
		{Packages: []*apk.Package{{Name: "linux-virt", Version: "6.6.1-r0"}, {Name: "busybox", Version: "1.36.1-r5"}}},
		{Packages: []*apk.Package{{Name: "linux-virt", Version: "6.6.10-r0"}, {Name: "linux-lts", Version: "6.6.20-r0"}}},
	}
	it, err := kernelPackage(idx, "x86_64")
	if err != nil || it.Package.Version != "6.6.10-r0" || it.Arch != "x86_64" {
		t.Errorf("kernelPackage = %+v, %v", it.Package, err)
	}
	none := []*repo.Index{{Packages: []*apk.Package{{Name: "linux-rpi", Version: "6.6.31-r0"}}}}
	for arch, want := range map[string]string{
		"x86_64": "no linux-virt package for x86_64, so there is no kernel for the build VM: give the build VM a kernel with --kernel FILE --modules DIR",
		"armhf":  "armv7's linux-virt",
	} {
		if _, err := kernelPackage(none, arch); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s without linux-virt: %v", arch, err)
		}
	}
}
