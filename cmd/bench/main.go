// Command bench measures alpinist end to end and prints one table: the
// phases of a build of the demo spec, a cache-hit rebuild, one arch and
// two, the writers against the reference tools side by side (ext4 against
// mke2fs -d, qcow2 against qemu-img convert, the layer against gzip -6),
// alpinist assemble to ext4 end to end against mke2fs -d,
// the build VM's boot against a bare kernel+busybox floor, alpinist's
// peak RSS while writing the outputs of a 1 GiB rootfs, and Alpine's
// real packages built cold beside Alpine's apk on the host (real.go;
// with -before, an older alpinist timed beside this one). make bench runs
// it; the numbers and the machine go to docs/performance.md. The fleet
// part (fleet.go) runs a local fleet cold and warm against a registry
// on loopback, for docs/scale-out.md.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/initramfs"
	"github.com/alpinist/alpinist/internal/pvh"
	"github.com/alpinist/alpinist/qemu"
)

// work is the scratch directory, removed even when the bench fails.
var work string

// fatal reports, removes the scratch directory and exits.
func fatal(format string, args ...any) {
	os.RemoveAll(work)
	log.Fatalf(format, args...)
}

// row is one line of the table.
type row struct{ what, value, target string }

var rows []row

// parts are what -only picks from, in the order they run.
var parts = []string{"phases", "arches", "real", "icount", "ratios", "assemble", "boot", "fleet", "rss"}

func add(what, value, target string) {
	rows = append(rows, row{what, value, target})
	fmt.Fprintf(os.Stderr, "bench: %-52s %s\n", what, value)
}

func main() {
	bin := flag.String("alpinist", "bin/alpinist", "the alpinist binary")
	specPath := flag.String("spec", "testdata/specs/demo.yaml", "the spec to build")
	skipRSS := flag.Bool("no-rss", false, "skip the 1 GiB peak RSS measure")
	realDir := flag.String("real", "../shared/fixtures/alpine-real", "Alpine's real packages (\"\" skips the real set)")
	realOnly := flag.Bool("real-only", false, "measure the real set alone (-only real)")
	only := flag.String("only", "", "measure only these parts, comma-separated: "+strings.Join(parts, ", "))
	before := flag.String("before", "", "an older alpinist `BINARY` to time beside -alpinist on the real set's cold builds")
	gen := flag.String("gen", "", "write the assemble row's input, `DIR`/tree and DIR/tree.tar, and exit")
	flag.Parse()
	log.SetFlags(0)
	if *gen != "" {
		if _, err := genTree(filepath.Join(*gen, "tree"), filepath.Join(*gen, "tree.tar"), treeFiles); err != nil {
			log.Fatal(err)
		}
		return
	}
	want := map[string]bool{}
	switch {
	case *only != "":
		for _, p := range strings.Split(*only, ",") {
			if !slices.Contains(parts, p) {
				log.Fatalf("-only %s: want one of %s", p, strings.Join(parts, ", "))
			}
			want[p] = true
		}
	case *realOnly:
		want["real"] = true
	default:
		for _, p := range parts {
			want[p] = true
		}
		want["real"] = *realDir != ""
		want["icount"] = *realDir != ""
		want["rss"] = !*skipRSS
	}
	var err error
	work, err = os.MkdirTemp("", "alpinist-bench-")
	if err != nil {
		fatal("%v", err)
	}
	defer os.RemoveAll(work)
	ctx := context.Background()

	if want["phases"] {
		phases(*bin, *specPath, work)
	}
	if want["arches"] {
		arches(*bin, work)
	}
	if want["real"] {
		realSet(*bin, *before, *realDir, work)
	}
	if want["icount"] {
		icountSet(*bin, *realDir, work)
	}
	if want["ratios"] {
		ratios()
	}
	if want["assemble"] {
		assembleVsMke2fs(*bin, work, 3)
	}
	if want["boot"] {
		boot(ctx, work)
	}
	if want["fleet"] {
		fleetBench(*bin, work, 3)
	}
	if want["rss"] {
		peakRSS(*bin, work)
	}

	fmt.Printf("| measure | value | target |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.what, r.value, r.target)
	}
	fmt.Printf("\n%s, %d CPUs, %s\n", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), machine())
}

// alp runs alpinist with JSON logs and returns its wall time, stdout and
// log events.
func alp(bin string, args ...string) (time.Duration, string, []map[string]any) {
	cmd := exec.Command(bin, append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		fatal("alpinist %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	d := time.Since(start)
	var events []map[string]any
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		// A fleet's workers' lines start with "NAME/ARCH: ".
		line := sc.Bytes()
		if i := bytes.IndexByte(line, '{'); i > 0 {
			line = line[i:]
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			events = append(events, m)
		}
	}
	return d, stdout.String(), events
}

// dur reads a duration of a JSON log event (slog writes nanoseconds).
func dur(v any) time.Duration {
	switch x := v.(type) {
	case float64:
		return time.Duration(x)
	case string:
		d, _ := time.ParseDuration(x)
		return d
	}
	return 0
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// phases builds the spec's x86_64 system with a cold cache and times
// each phase and output, then a cache-hit rebuild, then both arches.
func phases(bin, spec, work string) {
	cache := filepath.Join(work, "cache")
	d, _, _ := alp(bin, "resolve", spec, "--arch", "x86_64", "--cache", cache)
	add("resolve (x86_64)", ms(d), "")
	d, _, _ = alp(bin, "fetch", spec, "--arch", "x86_64", "--cache", cache)
	add("fetch, cold cache (x86_64)", ms(d), "")
	d, _, _ = alp(bin, "fetch", spec, "--arch", "x86_64", "--cache", cache)
	add("fetch, warm cache", ms(d), "")

	outputs := "tar,tar.gz,oci,ext4,raw,qcow2"
	// The build cache is empty: the VM runs (and fills it).
	total, _, events := alp(bin, "build", spec, "--arch", "x86_64", "-o", filepath.Join(work, "one"), "--cache", cache, "--output", outputs)
	for _, e := range events {
		switch e["msg"] {
		case "phase done":
			name, _ := e["phase"].(string)
			what := map[string]string{"kernel+initramfs": "kernel + initramfs (the kit)", "boot": "VM boot to agent ready", "agent": "agent start"}[name]
			if what == "" {
				what = name
			}
			add("build phase: "+what, ms(dur(e["time"])), "")
		case "output written":
			o, _ := e["output"].(string)
			add("output: "+o, ms(dur(e["time"])), "")
		}
	}
	add("build, x86_64, all of it ("+outputs+")", ms(total), "")

	hit, _, _ := alp(bin, "build", spec, "--arch", "x86_64", "-o", filepath.Join(work, "hit"), "--cache", cache, "--output", "tar")
	add("rebuild with nothing changed (build cache), tar", ms(hit), "< 2 s plus outputs")

	// Both arches warm alike (packages and boot kit cached), then the
	// forced rebuilds alternating, medians of 3.
	rebuild := func(arch string) time.Duration {
		d, _, _ := alp(bin, "build", spec, "--arch", arch, "-o", filepath.Join(work, arch), "--cache", cache, "--output", "tar", "--no-cache")
		return d
	}
	rebuild("aarch64")
	var a64s, x86s []time.Duration
	for range 3 {
		a64s, x86s = append(a64s, rebuild("aarch64")), append(x86s, rebuild("x86_64"))
	}
	slices.Sort(a64s)
	slices.Sort(x86s)
	one, x86 := a64s[1], x86s[1]
	both, _, _ := alp(bin, "build", spec, "-o", filepath.Join(work, "both"), "--cache", cache, "--output", "tar", "--no-cache")
	add("aarch64 / x86_64, the same spec, forced rebuild each (TCG, medians of 3)", fmt.Sprintf("%.2f× (%s against %s)", float64(one)/float64(x86), ms(one), ms(x86)), "≤ 1.2×")
	add("x86_64 + aarch64 in one build, against each alone", fmt.Sprintf("%s vs %s + %s = %s (%.2f×)", ms(both), ms(x86), ms(one), ms(x86+one), float64(both)/float64(x86+one)), "< 1.0×")
}

var ratioRE = regexp.MustCompile(`^Benchmark(\S+)-\d+\s+\d+\s+(.*)$`)

// ratios runs the side-by-side writer benchmarks.
func ratios() {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "Vs", "-benchtime", "5x", "./assembler/ext4", "./assembler/qcow2", "./assembler/vhd", "./assembler/vmdk", "./assembler/iso", "./assembler/oci")
	out, err := cmd.CombinedOutput()
	if err != nil {
		fatal("go test -bench Vs: %v\n%s", err, out)
	}
	names := map[string][2]string{
		"VsMke2fs":      {"ext4 writer / mke2fs -d (128 MiB tree, 4,000 files)", "≤ 1.0×"},
		"VsQemuImg":     {"qcow2 writer / qemu-img convert -O qcow2 (64 MiB; both sync the image, qemu-img with -t writeback)", "≤ 1.0×"},
		"VmdkVsQemuImg": {"streamOptimized VMDK writer / qemu-img convert -O vmdk -o subformat=streamOptimized (64 MiB; both synced)", "≤ 1.0×"},
		"VhdVsQemuImg":  {"VHD writer / qemu-img convert -O vpc -o subformat=fixed,force_size (64 MiB; both synced)", "≤ 1.0×"},
		"IsoVsXorriso":  {"live ISO writer / xorriso -as mkisofs, Alpine's options (88 MiB of files)", "≤ 1.0×"},
		"VsGzip":        {"OCI layer gzip (parallel) / gzip -6 (32 MiB)", "≤ 0.5×"},
	}
	for _, l := range strings.Split(string(out), "\n") {
		m := ratioRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		metrics := map[string]string{}
		for i := 0; i+1 < len(f); i += 2 {
			metrics[f[i+1]] = f[i]
		}
		n, ok := names[m[1]]
		if !ok {
			continue
		}
		var theirs string
		for k, v := range metrics {
			if strings.HasSuffix(k, "-ms/op") && k != "ours-ms/op" {
				theirs = v + " ms"
			}
		}
		r, _ := strconv.ParseFloat(metrics["ratio"], 64)
		add(n[0], fmt.Sprintf("%.2f× (%s ms against %s)", r, metrics["ours-ms/op"], theirs), n[1])
	}
}

// boot times the build VM's agent to ready against a kernel whose /init
// is busybox powering off at once, under the accelerator builds use:
// both with the kernel as builds boot it (x86_64: its ELF, through PVH)
// and as its package has it (the bzImage).
func boot(ctx context.Context, work string) {
	prof, err := qemu.Lookup("x86_64")
	if err != nil {
		fatal("%v", err)
	}
	bin, err := prof.Find()
	if err != nil {
		fatal("%v", err)
	}
	pkgs, _ := filepath.Glob("testdata/repo/main/x86_64/linux-virt-*.apk")
	bbs, _ := filepath.Glob("testdata/repo/main/x86_64/busybox-[0-9]*.apk")
	if len(pkgs) != 1 || len(bbs) != 1 {
		fatal("the test repository (make testrepo) has no linux-virt or busybox: %v %v", pkgs, bbs)
	}
	keys, err := sign.LoadKeyring("testdata/repo/keys")
	if err != nil {
		fatal("%v", err)
	}
	kit, err := initramfs.KitFromPackage(pkgs[0], keys, work, initramfs.BuildVMModules(prof.Transport))
	if err != nil {
		fatal("%v", err)
	}
	elfKernel := filepath.Join(work, "vmlinux")
	if ok, err := pvh.Convert(kit.Kernel, elfKernel); err != nil || !ok {
		fatal("the test repository's x86_64 kernel does not boot through PVH: %v", err)
	}
	busybox := fileFromAPK(bbs[0], "bin/busybox")
	agent, err := embed.Agent("x86_64")
	if err != nil {
		fatal("%v", err)
	}
	disk := filepath.Join(work, "empty.img")
	os.WriteFile(disk, make([]byte, 1<<20), 0o644)
	initrd := func(name string, withAgent bool) string {
		a := initramfs.New()
		var errs []error
		if withAgent {
			errs = append(errs, a.File("init", 0o755, agent), kit.AddTo(a))
		} else {
			errs = append(errs, a.File("bin/busybox", 0o755, busybox), a.File("init", 0o755, []byte("#!/bin/busybox sh\n/bin/busybox poweroff -f\n")))
		}
		errs = append(errs, a.CharDev("dev/console", 0o600, 5, 1))
		img, err := a.Bytes()
		if err = errors.Join(append(errs, err)...); err != nil {
			fatal("%v", err)
		}
		p := filepath.Join(work, name)
		os.WriteFile(p, img, 0o644)
		return p
	}
	agentInitrd, floorInitrd := initrd("agent.cpio", true), initrd("floor.cpio", false)
	run := func(withAgent bool, kernel string) time.Duration {
		v := &qemu.VM{Profile: prof, Accel: "tcg", MemoryMiB: 256, Kernel: kernel, Initrd: floorInitrd,
			Cmdline: []string{"alpinist.disks=pkgs", "alpinist.mode=ready"}, Disks: []qemu.Disk{{Path: disk, ReadOnly: true, Serial: "pkgs"}}}
		if !withAgent {
			start := time.Now()
			args, err := v.Args()
			if err != nil {
				fatal("%v", err)
			}
			cmd := exec.CommandContext(ctx, bin, args...)
			if out, err := cmd.CombinedOutput(); err != nil {
				fatal("the busybox floor VM: %v\n%s", err, out)
			}
			return time.Since(start)
		}
		v.Initrd = agentInitrd
		res, err := qemu.Run(ctx, v, qemu.RunOptions{Binary: bin, BootTimeout: 2 * time.Minute})
		if err != nil {
			fatal("%v", err)
		}
		return res.Ready
	}
	// Alternating, so that the machine's drift hits each alike.
	var agentPVH, floorPVH, agentBz, floorBz []time.Duration
	for range 5 {
		agentPVH = append(agentPVH, run(true, elfKernel))
		floorPVH = append(floorPVH, run(false, elfKernel))
		agentBz = append(agentBz, run(true, kit.Kernel))
		floorBz = append(floorBz, run(false, kit.Kernel))
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	a, f, ab, fb := med(agentPVH), med(floorPVH), med(agentBz), med(floorBz)
	add("build VM boot to agent ready / kernel+busybox to poweroff, the same kernel through PVH (TCG, median of 5)", fmt.Sprintf("%.2f× (%s against %s)", float64(a)/float64(f), ms(a), ms(f)), "≤ 1.2×")
	add("build VM boot to agent ready: the bzImage / its ELF through PVH (TCG, median of 5)", fmt.Sprintf("%s / %s (%.2f× the bzImage's busybox floor of %s)", ms(ab), ms(a), float64(a)/float64(fb), ms(fb)), "")
}

// fileFromAPK reads one file out of a package.
func fileFromAPK(p, name string) []byte {
	f, err := os.Open(p)
	if err != nil {
		fatal("%v", err)
	}
	defer f.Close()
	var data []byte
	_, err = apkfile.Read(f, apkfile.ReadOptions{AllowUntrusted: true, Entry: func(h *tar.Header, r io.Reader) error {
		if h.Name == name {
			var err error
			data, err = io.ReadAll(r)
			return err
		}
		return nil
	}})
	if err != nil || data == nil {
		fatal("%s: %s: %v", p, name, err)
	}
	return data
}

// peakRSS writes a 1 GiB rootfs tar (20,000 files, half compressible)
// and measures alpinist assemble's peak RSS writing its outputs.
func peakRSS(bin, work string) {
	in := filepath.Join(work, "big.tar")
	f, err := os.Create(in)
	if err != nil {
		fatal("%v", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	var total int64
	for i := 0; total < 1<<30; i++ {
		size := int64(rng.IntN(100 << 10))
		if i%500 == 0 {
			size = 8 << 20 // some large files
		}
		h := &tar.Header{Name: fmt.Sprintf("usr/lib/d%03d/f%05d", i/200, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(h); err != nil {
			fatal("%v", err)
		}
		for left := size; left > 0; {
			n := min(left, int64(len(buf)))
			if i%2 == 0 {
				for j := range buf[:n] {
					buf[j] = byte(rng.Uint32())
				}
			} else {
				copy(buf[:n], bytes.Repeat([]byte("alpinist "), int(n)/9+1))
			}
			tw.Write(buf[:n])
			left -= n
		}
		total += size
	}
	if err := tw.Close(); err != nil {
		fatal("%v", err)
	}
	if err := bw.Flush(); err != nil {
		fatal("%v", err)
	}
	f.Close()
	out := filepath.Join(work, "big-out")
	cmd := exec.Command(bin, "-q", "assemble", in, "-o", out, "--arch", "x86_64", "--output", "tar.gz,oci,docker-archive,ext4,lxc")
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	start := time.Now()
	if o, err := cmd.CombinedOutput(); err != nil {
		fatal("assemble: %v\n%s", err, o)
	}
	d := time.Since(start)
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	rss := int64(0)
	if ru != nil {
		rss = int64(ru.Maxrss) << 10
	}
	add("peak RSS, assemble of a 1 GiB rootfs to tar.gz, oci, docker-archive, ext4, lxc", fmt.Sprintf("%d MiB (in %s)", rss>>20, ms(d)), "< 256 MiB")
}

// machine describes the CPU and memory.
func machine() string {
	var model, mem string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok && model == "" {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(l)[1:], " ")
	}
	return fmt.Sprintf("%s, %s memory", model, mem)
}
