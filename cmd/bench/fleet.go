package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/regserver"
)

// fleetSpecs are the fleet bench's two specs (2 × 2 arches).
var fleetSpecs = map[string]string{
	"fleet-a": "busybox, alpine-baselayout, alpinist-test-scripts",
	"fleet-b": "alpine-base, busybox, alpine-baselayout, alpinist-test-scripts, alpinist-test-consumer",
}

// fleetBench runs a local fleet (2 specs × x86_64, aarch64) cold, with an
// empty registry, then warm, from the registry's cache, n times each
// against a fresh registry, through a proxy that counts the bytes each
// way. It gives the medians, the warm/cold ratio, the bytes per build
// and the TCG slowdown of CPU-bound work on this machine (for the cost
// model of docs/scale-out.md).
func fleetBench(bin, work string, n int) {
	repo, err := filepath.Abs("testdata/repo")
	if err != nil {
		fatal("%v", err)
	}
	dir := filepath.Join(work, "fleet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatal("%v", err)
	}
	var names []string
	for name, pkgs := range fleetSpecs {
		names = append(names, name+".yaml")
		spec := fmt.Sprintf("name: %s\narch: [x86_64]\nrepositories: [%s/main]\nkeys: [%s/keys/]\npackages: [%s]\n", name, repo, repo, pkgs)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(spec), 0o644); err != nil {
			fatal("%v", err)
		}
	}
	slices.Sort(names)
	matrix := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(matrix, []byte("specs: ["+strings.Join(names, ", ")+"]\narch: [x86_64, aarch64]\n"), 0o644); err != nil {
		fatal("%v", err)
	}
	builds := 2 * 2
	var cold, warm []time.Duration
	var coldUp, coldDown, warmUp, warmDown int64
	var vmShare []float64
	for i := range n {
		reg, stop := startRegistry(filepath.Join(work, fmt.Sprintf("fleet-registry-%d", i)))
		px := newCountingProxy(reg)
		d, out, events := alp(bin, "fleet", "run", "--local", matrix, "--registry", px.addr, "--insecure", "--accel", "tcg")
		if !strings.Contains(out, "4 built in a VM") {
			fatal("fleet bench: the cold run did not build 4 VMs:\n%s", out)
		}
		cold = append(cold, d)
		var vm, all time.Duration
		for _, e := range events {
			if e["msg"] != "phase done" {
				continue
			}
			t := dur(e["time"])
			all += t
			switch e["phase"] {
			case "boot", "agent", "install", "configure", "export":
				vm += t
			}
		}
		vmShare = append(vmShare, vm.Seconds()/all.Seconds())
		coldUp, coldDown = px.up.Swap(0), px.down.Swap(0)
		d, out, _ = alp(bin, "fleet", "run", "--local", matrix, "--registry", px.addr, "--insecure", "--accel", "tcg")
		if !strings.Contains(out, "0 built in a VM, 4 from the build cache; packages: 0 downloaded") {
			fatal("fleet bench: the warm run was not all from the cache:\n%s", out)
		}
		warm = append(warm, d)
		warmUp, warmDown = px.up.Swap(0), px.down.Swap(0)
		px.close()
		stop()
	}
	c, w := medianDur(cold), medianDur(warm)
	add(fmt.Sprintf("fleet run --local, cold: %d builds in VMs, empty registry", builds), ms(c)+fmt.Sprintf(" (%s per build)", ms(c/time.Duration(builds))), "")
	add("fleet run --local, warm: every rootfs from the registry", ms(w)+fmt.Sprintf(" (%.2f× cold)", w.Seconds()/c.Seconds()), "no VM")
	slices.Sort(vmShare)
	add("cold build: share of its phases spent in the VM (boot to export)", fmt.Sprintf("%.0f%%", 100*vmShare[len(vmShare)/2]), "")
	add("registry bytes per cold build (pushed / pulled)", fmt.Sprintf("%s / %s", kib(coldUp/int64(builds)), kib(coldDown/int64(builds))), "")
	add("registry bytes per warm build (pushed / pulled)", fmt.Sprintf("%s / %s", kib(warmUp/int64(builds)), kib(warmDown/int64(builds))), "")
	kvmFleet(bin, work, matrix, builds, n, c)
	tcgFactor(work)
}

// kvmFleet runs the cold fleet again with KVM where KVM works here
// (alpinist doctor says so), else says why it cannot.
func kvmFleet(bin, work, matrix string, builds, n int, tcg time.Duration) {
	out, _ := exec.Command(bin, "doctor").CombinedOutput()
	state, detail := "missing", "alpinist doctor has no KVM line"
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "KVM" {
			state, detail = f[1], strings.Join(f[2:], " ")
		}
	}
	if state != "ok" && state != "untried" {
		add("fleet run --local, cold, with KVM", "not measurable here: KVM "+state+" ("+detail+")", "")
		return
	}
	var runs []time.Duration
	for i := range n {
		reg, stop := startRegistry(filepath.Join(work, fmt.Sprintf("fleet-kvm-registry-%d", i)))
		d, out, _ := alp(bin, "fleet", "run", "--local", matrix, "--registry", reg, "--insecure")
		stop()
		if !strings.Contains(out, "4 built in a VM") {
			fatal("fleet bench: the KVM run did not build 4 VMs:\n%s", out)
		}
		runs = append(runs, d)
	}
	k := medianDur(runs)
	add("fleet run --local, cold, with KVM (x86_64 under KVM, aarch64 emulated)", ms(k)+fmt.Sprintf(" (%s per build; %.2f× TCG)", ms(k/time.Duration(builds)), k.Seconds()/tcg.Seconds()), "")
}

func medianDur(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func kib(n int64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", (n+512)>>10)
}

// startRegistry starts Debian's docker-registry on loopback with its
// storage in dir.
func startRegistry(dir string) (addr string, stop func()) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		fatal("fleet bench: docker-registry is needed: apt-get install docker-registry")
	}
	addr, stop, err = regserver.Start(bin, dir)
	if err != nil {
		fatal("fleet bench: %v", err)
	}
	return addr, stop
}

// countingProxy forwards to a registry and counts the bytes each way
// (request and response bodies).
type countingProxy struct {
	addr     string
	up, down atomic.Int64
	srv      *http.Server
}

func newCountingProxy(target string) *countingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal("%v", err)
	}
	p := &countingProxy{addr: l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.ModifyResponse = func(r *http.Response) error {
		r.Body = &countingReader{r.Body, &p.down}
		return nil
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = &countingReader{r.Body, &p.up}
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(l)
	return p
}

func (p *countingProxy) close() { p.srv.Close() }

type countingReader struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.rc.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.rc.Close() }

// tcgFactor times CPU-bound work (xz -6 of 24 MiB, one thread) natively
// and under qemu-user's TCG on this machine: how much slower the build
// VM's work is emulated than under KVM, where it runs at the host's
// speed.
func tcgFactor(work string) {
	xz, err := exec.LookPath("xz")
	if err != nil {
		fatal("fleet bench: xz is needed")
	}
	qemu, err := exec.LookPath("qemu-x86_64")
	if err != nil {
		fatal("fleet bench: qemu-x86_64 (Debian's qemu-user) is needed for the TCG slowdown: apt-get install qemu-user")
	}
	in := filepath.Join(work, "tcg-input")
	if _, err := genTree(filepath.Join(work, "tcg-tree"), in, 400); err != nil {
		fatal("%v", err)
	}
	run := func(args ...string) time.Duration {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout = io.Discard
		start := time.Now()
		if err := cmd.Run(); err != nil {
			fatal("%s: %v", strings.Join(args, " "), err)
		}
		return time.Since(start)
	}
	var native, tcg []time.Duration
	for range 3 {
		native = append(native, run(xz, "-6", "-T1", "-c", in))
		tcg = append(tcg, run(qemu, xz, "-6", "-T1", "-c", in))
	}
	nm, tm := medianDur(native), medianDur(tcg)
	add("CPU-bound work under TCG / native (xz -6, qemu-user)", fmt.Sprintf("%.1f× (%s / %s)", tm.Seconds()/nm.Seconds(), ms(tm), ms(nm)), "")
}
