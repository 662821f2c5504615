package builder

import (
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/repo"
)

func items(sizes ...int64) []repo.Item {
	var out []repo.Item
	for i, s := range sizes {
		out = append(out, repo.Item{Package: &apk.Package{Name: string(rune('a' + i)), Version: "1-r0", InstalledSize: s}})
	}
	return out
}

// TestPackageSizesBounded: a signed package declaring 10 TB installed
// made the build ask QEMU for 20,971,844 MiB of memory. Sizes are summed
// without overflow, refused past 1 PiB, and checked against the host's
// memory and free disk before any VM starts, naming the largest package.
func TestPackageSizesBounded(t *testing.T) {
	if n, err := installedSize(items(1<<20, 2<<20)); err != nil || n != 3<<20 {
		t.Errorf("installedSize: %d %v", n, err)
	}
	for _, tc := range []struct {
		sizes []int64
		want  string
	}{
		{[]int64{1 << 60}, "a-1-r0 declares an installed size of 1152921504606846976 bytes"},
		{[]int64{-1}, "a-1-r0 declares an installed size of -1 bytes"},
		{[]int64{1 << 49, 1 << 49, 1 << 49}, "more than 1 PiB once installed (c-1-r0 brings it"},
	} {
		if _, err := installedSize(items(tc.sizes...)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.sizes, err, tc.want)
		}
	}
	avail, ok := memAvailable()
	if !ok || avail <= 0 {
		t.Fatal("no MemAvailable in /proc/meminfo")
	}
	big := items(1<<20, 10<<40)
	err := checkHost(big, int((10<<40)*2>>20), t.TempDir(), 1<<20)
	if err == nil || !strings.Contains(err.Error(), "more than this host has available") || !strings.Contains(err.Error(), "the largest is b-1-r0, 10485760 MiB") {
		t.Errorf("10 TB of memory: %v", err)
	}
	err = checkHost(items(1<<20), 64, t.TempDir(), 1<<60)
	if err == nil || !strings.Contains(err.Error(), "more than is free for the build's work directory") {
		t.Errorf("an output disk past the free space: %v", err)
	}
	if err := checkHost(items(1<<20), 64, t.TempDir(), 64<<20); err != nil {
		t.Errorf("a small build: %v", err)
	}
}
