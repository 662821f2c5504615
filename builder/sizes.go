package builder

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/apk/repo"
)

// installedSize adds up the packages' installed sizes, which come from
// signed but untrusted indexes: a size past 1 PiB (or negative) is
// refused, naming the package, and the sum cannot overflow.
func installedSize(items []repo.Item) (int64, error) {
	const limit = 1 << 50
	var sum int64
	for _, it := range items {
		p := it.Package
		if p.InstalledSize < 0 || p.InstalledSize > limit {
			return 0, fmt.Errorf("%s-%s declares an installed size of %d bytes: refused", p.Name, p.Version, p.InstalledSize)
		}
		sum += p.InstalledSize
		if sum > limit {
			return 0, fmt.Errorf("the packages declare more than 1 PiB once installed (%s-%s brings it to %d bytes): refused", p.Name, p.Version, sum)
		}
	}
	return sum, nil
}

// largest names the package with the largest installed size.
func largest(items []repo.Item) string {
	var best *repo.Item
	for i := range items {
		if best == nil || items[i].Package.InstalledSize > best.Package.InstalledSize {
			best = &items[i]
		}
	}
	if best == nil {
		return "none"
	}
	return fmt.Sprintf("%s-%s, %s", best.Package.Name, best.Package.Version, mib(best.Package.InstalledSize))
}

func mib(n int64) string { return strconv.FormatInt(n>>20, 10) + " MiB" }

// checkHost refuses, before the VM starts, a build the host cannot hold:
// the VM's memory (the target lives in it, a tmpfs) past what the host
// has available, or the output disk past the free space where it goes.
func checkHost(items []repo.Item, memMiB int, outDisk string, outSize int64) error {
	if avail, ok := memAvailable(); ok && int64(memMiB)<<20 > avail {
		return fmt.Errorf("the build VM needs %d MiB of memory for these packages (they install %s; the largest is %s), more than this host has available (%s): use a host with more memory, or fewer packages",
			memMiB, mib(sum(items)), largest(items), mib(avail))
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(outDisk, &fs); err == nil {
		if free := int64(fs.Bavail) * int64(fs.Bsize); outSize > free {
			return fmt.Errorf("the build's output disk needs up to %s for these packages (they install %s; the largest is %s), more than is free for the build's work directory (%s)",
				mib(outSize), mib(sum(items)), largest(items), mib(free))
		}
	}
	return nil
}

func sum(items []repo.Item) int64 {
	var s int64
	for _, it := range items {
		s += it.Package.InstalledSize
	}
	return s
}

// memAvailable is the host's MemAvailable (/proc/meminfo), when known.
func memAvailable() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}
