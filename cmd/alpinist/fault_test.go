package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
)

// dirState is an output directory's files and their sha256: what must
// not change when a build fails or is interrupted.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sums := fileSums(t, dir)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", n, sums[n])
	}
	return b.String()
}

// qemuFor lists the QEMU processes whose command line names path.
func qemuFor(path string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, path) {
			out = append(out, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	return out
}

// startUntil starts alpinist and returns once its log shows marker (the
// rest of stderr is collected).
func startUntil(t *testing.T, cmd *exec.Cmd, marker string) (*bytes.Buffer, chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	var stderr bytes.Buffer
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	seen := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if !found && strings.Contains(sc.Text(), marker) {
				found = true
				seen <- true
			}
		}
		if !found {
			seen <- false
		}
	}()
	select {
	case ok := <-seen:
		if !ok {
			t.Fatalf("alpinist ended before %q:\n%s", marker, stderr.String())
		}
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("no %q in 5 minutes", marker)
	}
	return &stderr, done
}

// TestFaults: a build interrupted (SIGTERM while the VM runs, SIGINT
// while the outputs are written) or out of disk space (a file size limit)
// fails with a clear message, stops QEMU, leaves no temporary file, and
// leaves the outputs of the earlier build as they were.
func TestFaults(t *testing.T) {
	body, repoDir := smallSpec(t)
	bin := alpinistBinary(t)
	vmtest.Binary(t, "x86_64")
	dir := t.TempDir()
	spec := filepath.Join(dir, "small.yaml")
	writeFile(t, spec, body, 0o644)
	changed := filepath.Join(dir, "changed.yaml")
	writeFile(t, changed, body+"run: [\"echo changed > /etc/changed\"]\n", 0o644)
	out, cache := filepath.Join(dir, "out"), filepath.Join(dir, "cache")
	outputs := "tar,ext4,tar.zst,lxc"
	alp := func(args ...string) *exec.Cmd {
		c := boundedCommand(t, bin, args...)
		c.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		return c
	}
	if o, err := alp("build", spec, "-o", out, "--cache", cache, "--output", outputs).CombinedOutput(); err != nil {
		t.Fatalf("the first build: %v\n%s", err, o)
	}
	before := dirState(t, out)
	check := func(name string, stderr string, err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: the build succeeded", name)
		}
		if !strings.Contains(stderr, want) {
			t.Errorf("%s: stderr does not say %q:\n%s", name, want, lastLines(stderr, 8))
		}
		if q := qemuFor(out); len(q) > 0 {
			t.Errorf("%s: QEMU still runs: %v", name, q)
		}
		if got := dirState(t, out); got != before {
			t.Errorf("%s: the earlier outputs changed:\nbefore:\n%s\nafter:\n%s", name, before, got)
		}
	}

	t.Run("SIGTERM in the VM", func(t *testing.T) {
		cmd := alp("build", changed, "-o", out, "--cache", cache, "--output", outputs)
		stderr, done := startUntil(t, cmd, "starting the build VM")
		time.Sleep(time.Second)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			time.Sleep(100 * time.Millisecond) // the stderr reader
			check("SIGTERM", stderr.String(), err, "interrupted: QEMU is stopped")
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatal("alpinist did not stop within a minute of SIGTERM")
		}
	})

	t.Run("SIGTERM in the fetch", func(t *testing.T) {
		// The repository over HTTP, stalling on packages.
		asked := make(chan bool, 1)
		files := http.FileServer(http.Dir(repoDir))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".apk") {
				select {
				case asked <- true:
				default:
				}
				<-r.Context().Done()
				return
			}
			files.ServeHTTP(w, r)
		}))
		defer srv.Close()
		remote := filepath.Join(dir, "remote.yaml")
		writeFile(t, remote, strings.ReplaceAll(body, repoDir+"/main", srv.URL+"/main"), 0o644)
		cmd := alp("build", remote, "-o", out, "--cache", t.TempDir(), "--output", outputs)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-asked:
		case err := <-done:
			t.Fatalf("ended before fetching: %v\n%s", err, stderr.String())
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatal("no package was asked for within a minute")
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			check("SIGTERM in the fetch", stderr.String(), err, "interrupted")
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("alpinist did not stop within 30 s of SIGTERM")
		}
	})

	// The changed system in the build cache, so that the next build
	// goes straight to its outputs.
	if o, err := alp("build", changed, "-o", filepath.Join(dir, "warm"), "--cache", cache, "--output", "tar").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	t.Run("SIGINT in the outputs", func(t *testing.T) {
		cmd := alp("build", changed, "-o", out, "--cache", cache, "--output", outputs)
		stderr, done := startUntil(t, cmd, "the rootfs comes from the build cache")
		cmd.Process.Signal(syscall.SIGINT)
		err := <-done
		time.Sleep(100 * time.Millisecond)
		if err == nil {
			// The signal came after the outputs were in place: they are
			// whole (the next subtests need the earlier ones back).
			t.Log("the outputs were in place before the signal came")
			os.RemoveAll(out)
			if o, err := alp("build", spec, "-o", out, "--cache", cache, "--output", outputs).CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, o)
			}
			before = dirState(t, out)
			return
		}
		check("SIGINT", stderr.String(), err, "interrupted")
	})

	// A file size limit (RLIMIT_FSIZE) stands in for a full disk: writes
	// beyond it fail with EFBIG as they would with ENOSPC. 4 MiB stops
	// a build that skips the build cache at the build VM's kernel (a hit
	// makes no kernel, nor does one whose kernel is in the boot cache:
	// that is emptied first); 16 MiB (the rootfs coming from the build
	// cache) at the ext4 output.
	for _, tc := range []struct {
		limit, where string
		extra        []string
	}{{"4194304", "kernel", []string{"--no-cache"}}, {"16777216", "output ext4", nil}} {
		t.Run("disk full at "+tc.where, func(t *testing.T) {
			prlimit := hosttool.Need(t, "prlimit", "util-linux")
			if err := os.RemoveAll(filepath.Join(cache, "boot")); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(prlimit, append([]string{"--fsize=" + tc.limit, bin, "build", changed, "-o", out, "--cache", cache, "--output", outputs}, tc.extra...)...)
			cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
			o, err := cmd.CombinedOutput()
			check("disk full", string(o), err, "the disk is full")
			if !strings.Contains(string(o), "x86_64: "+tc.where) {
				t.Errorf("not stopped at %s:\n%s", tc.where, lastLines(string(o), 4))
			}
		})
	}

	t.Run("qemu missing", func(t *testing.T) {
		cmd := alp("build", changed, "-o", out, "--cache", cache, "--output", outputs, "--no-cache")
		cmd.Env = append(cmd.Env, "PATH="+t.TempDir())
		o, err := cmd.CombinedOutput()
		check("qemu missing", string(o), err, "qemu-system-x86_64 is not installed (a x86_64 VM needs it): Debian/Ubuntu: apt-get install qemu-system-x86")
	})

	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind in the output directory: %s", e.Name())
		}
	}
	if !slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == "small-x86_64.ext4" }) {
		t.Error("the earlier outputs are gone")
	}
}

// TestKilledRunStopsQEMU: alpinist killed with SIGKILL cannot stop its
// VM; the kernel does (QEMU's parent-death signal). A VM that prints
// nothing (SeaBIOS with no bootable disk, a system at its login prompt)
// used to outlive a killed alpinist run for good: the real-Alpine test,
// which kills its run, left one behind at each run.
func TestKilledRunStopsQEMU(t *testing.T) {
	bin := alpinistBinary(t)
	vmtest.Binary(t, "x86_64")
	img := filepath.Join(t.TempDir(), "blank.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := boundedCommand(t, bin, "run", img, "--bios", "--until", "never printed", "--timeout", "5m")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for len(qemuFor(img)) == 0 {
		select {
		case err := <-done:
			t.Fatalf("alpinist run ended before QEMU started: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no QEMU within a minute of alpinist run")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // SeaBIOS is up, printing nothing
	cmd.Process.Kill()
	<-done
	for deadline = time.Now().Add(10 * time.Second); len(qemuFor(img)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			q := qemuFor(img)
			for _, p := range q {
				if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			t.Fatalf("QEMU still runs 10 s after alpinist was killed: %v", q)
		}
	}
}
