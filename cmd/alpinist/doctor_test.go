package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/rootfstest"
	"github.com/vbauerster/mpb/v8"
)

func TestDoctor(t *testing.T) {
	hosttool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	cache := t.TempDir()
	code, out, errs := cli(t, "doctor", "--cache", cache)
	if code != 0 {
		t.Errorf("doctor on this host: exit %d: %s\n%s", code, errs, out)
	}
	// Every arch's QEMU (one line per binary) and firmware: make test's
	// dependencies have them all.
	for _, re := range []string{`qemu-system-x86_64\s+ok\s+x86_64: `, `qemu-system-i386\s+ok\s+x86: `, `qemu-system-aarch64\s+ok\s+aarch64: `,
		`qemu-system-arm\s+ok\s+armv7, armhf: `, `qemu-system-ppc64\s+ok\s+ppc64le: `, `qemu-system-s390x\s+ok\s+s390x: `, `qemu-system-riscv64\s+ok\s+riscv64: `,
		`UEFI firmware x86_64 \(OVMF\)\s+ok`, `UEFI firmware x86 \(OVMF32\)\s+ok`, `UEFI firmware aarch64 \(AAVMF\)\s+ok`,
		`UEFI firmware armv7 \(AAVMF32\)\s+ok`, `UEFI firmware riscv64 \(u-boot-qemu\)\s+ok.*OpenSBI`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no %s in:\n%s", re, out)
		}
	}
	for _, want := range []string{"qemu-img", "KVM ", "cache ", cache + ": 0 packages", "free disk (cache)", "free disk (here)", "alpinist can build here"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}

	// Without QEMU: what is missing and what to install, on each system.
	t.Setenv("PATH", t.TempDir())
	code, out, _ = cli(t, "doctor", "--cache", cache, "--arch", "x86_64")
	if code != 1 {
		t.Errorf("doctor without QEMU: exit %d", code)
	}
	if !regexp.MustCompile(`qemu-system-x86_64\s+missing`).MatchString(out) {
		t.Errorf("qemu-system-x86_64 is not said missing:\n%s", out)
	}
	for _, want := range []string{"qemu-img", "to fix:",
		"apt-get install qemu-system-x86", "dnf install qemu-system-x86", "pacman -S qemu-system-x86", "brew install qemu", "apt-get install qemu-utils"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	saved, savedDate := commit, commitDate
	defer func() { commit, commitDate = saved, savedDate }()
	commit, commitDate = "0123456789abcdef0123456789abcdef01234567-dirty", "2026-11-23T16:32:57+00:00"
	got := versionLine()
	if !strings.HasPrefix(got, "alpinist devel-0123456789ab (commit 0123456789abcdef0123456789abcdef01234567 of 2026-11-23T16:32:57+00:00, with local changes) ") {
		t.Errorf("version line %q", got)
	}
	if code, out, _ := cli(t, "version"); code != 0 || !strings.HasPrefix(out, "alpinist ") {
		t.Errorf("version: %d %q", code, out)
	}
	// Shell completion, from cobra.
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if code, out, _ := cli(t, "completion", sh); code != 0 || !strings.Contains(out, "alpinist") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes", sh, code, len(out))
		}
	}
	// The built binary answers --version with its commit (make passes it).
	bin := alpinistBinary(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !regexp.MustCompile(`^alpinist \S+ \(commit [0-9a-f]{40} of \d{4}-`).Match(out) {
		t.Errorf("bin/alpinist --version: %v %q", err, out)
	}
}

// TestLogFlags: -q leaves only warnings and errors, --log-format json
// writes one JSON object per line, and bad combinations are refused.
func TestLogFlags(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(in, rootfstest.Tar(t), 0o644)
	_, _, errs := cli(t, "assemble", in, "-o", filepath.Join(dir, "a"), "--arch", "x86_64", "--output", "tar,ext4", "--log-format", "json")
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if len(lines) < 2 {
		t.Fatalf("log: %q", errs)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("not a JSON log line: %q", l)
		}
	}
	code, out, errs := cli(t, "assemble", in, "-o", filepath.Join(dir, "b"), "--arch", "x86_64", "--output", "tar,ext4", "-q")
	if code != 0 || strings.TrimSpace(errs) != "" || !strings.Contains(out, "x86_64: ext4: ") || !strings.Contains(out, "sha256 ") {
		t.Errorf("-q: exit %d, stderr %q, stdout %q", code, errs, out)
	}
	for args, want := range map[string]string{"-q -v version": "-v and -q: choose one", "--log-format xml version": `--log-format "xml": want text or json`} {
		if code, _, errs := cli(t, strings.Fields(args)...); code == 0 || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d %s", args, code, errs)
		}
	}
}

// TestBuildBars: the build's display shows each arch's phase, the
// download once bytes flow, and how each arch ended; logs go above it at
// warning level only.
func TestBuildBars(t *testing.T) {
	var buf syncBuffer
	e := &env{stderr: &buf, logFormat: "text", level: slog.LevelInfo}
	b := e.buildBarsTo(&buf, []string{"x86_64", "aarch64"}, 1<<20, mpb.WithAutoRefresh(), mpb.WithRefreshRate(5*time.Millisecond))
	b.phase("x86_64", "install")
	b.phase("aarch64", "boot")
	e.log.Info("not shown")
	e.log.Warn("shown above the bars")
	b.bytes(512 << 10)
	time.Sleep(50 * time.Millisecond)
	b.finish("x86_64", "built")
	b.finish("aarch64", "failed")
	b.wait(e)
	out := buf.String()
	for _, want := range []string{"x86_64", "aarch64", "install", "boot", "download", "512.0 KiB / ", "built", "failed", "shown above the bars"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not shown") {
		t.Errorf("info lines under the bars:\n%s", out)
	}
	// The log is stderr's again.
	e.log.Info("after")
	if !strings.Contains(buf.String(), "after") {
		t.Error("the log did not come back")
	}
	// Off the terminal: nothing.
	var plain bytes.Buffer
	e2 := &env{stderr: &plain, logFormat: "text"}
	nb := e2.newBuildBars([]string{"x86_64"}, 100)
	nb.phase("x86_64", "install")
	nb.bytes(10)
	nb.finish("x86_64", "built")
	nb.wait(e2)
	if plain.Len() != 0 {
		t.Errorf("drew on a pipe: %q", plain.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
