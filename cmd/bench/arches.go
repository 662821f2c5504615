package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/alpinist/alpinist/arch"
)

// archSpec is the demo's system without its disk: the same packages for
// every arch the test repository is made for.
const archSpec = `name: arches
arch: [%s]
repositories: [%s/main]
keys: [%s/keys/]
packages: [alpine-base, busybox, alpine-baselayout, linux-virt, alpinist-test-scripts, alpinist-test-consumer]
`

// arches builds the same spec for every tested arch under TCG, forced
// rebuilds alternating across the arches (packages and boot kits warm
// alike), and gives each arch's median of 3 with its ratio to
// x86_64's, and where its time goes (VM boot, install in the VM).
func arches(bin, work string) {
	repo, err := filepath.Abs("testdata/repo")
	if err != nil {
		fatal("%v", err)
	}
	names := arch.Where(func(a arch.Arch) bool { return a.QEMU.Tested })
	spec := filepath.Join(work, "arches.yaml")
	if err := os.WriteFile(spec, fmt.Appendf(nil, archSpec, strings.Join(names, ", "), repo, repo), 0o644); err != nil {
		fatal("%v", err)
	}
	cache := filepath.Join(work, "arches-cache")
	type run struct{ total, boot, install time.Duration }
	build := func(name string) run {
		d, _, events := alp(bin, "build", spec, "--arch", name, "-o", filepath.Join(work, "arches-"+name), "--cache", cache, "--output", "tar", "--no-cache", "--accel", "tcg")
		r := run{total: d}
		for _, e := range events {
			if e["msg"] == "phase done" {
				switch e["phase"] {
				case "boot":
					r.boot = dur(e["time"])
				case "install":
					r.install = dur(e["time"])
				}
			}
		}
		return r
	}
	runs := map[string][]run{}
	for _, n := range names {
		build(n) // warm: packages fetched, boot kit made
	}
	for range 3 {
		for _, n := range names {
			runs[n] = append(runs[n], build(n))
		}
	}
	median := func(n string) run {
		rs := slices.Clone(runs[n])
		slices.SortFunc(rs, func(a, b run) int { return int(a.total - b.total) })
		return rs[len(rs)/2]
	}
	x86 := median("x86_64")
	for _, n := range names {
		m := median(n)
		add(fmt.Sprintf("arch %s: forced rebuild, TCG (median of 3), its ratio to x86_64", n),
			fmt.Sprintf("%s, %.2f× (boot %s, install %s)", ms(m.total), float64(m.total)/float64(x86.total), ms(m.boot), ms(m.install)), "≤ 1.5×")
	}
}
