package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"log/slog"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

func qemuX86(t *testing.T) string {
	t.Helper()
	bin := hosttool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	return bin
}

// TestProbeFirmwareRunsUnderTCG proves the probe itself: under TCG the
// firmware runs and QEMU exits with the probe's status.
func TestProbeFirmwareRunsUnderTCG(t *testing.T) {
	p := ProbeKVM(context.Background(), qemuX86(t), "tcg", 10*time.Second)
	if !p.Usable {
		t.Fatalf("probe under TCG: %+v", p)
	}
}

// TestProbeKVMHere: on these machines /dev/kvm exists but KVM is broken
// (nested: -cpu host aborts with "failed to set MSR"); the probe must
// say so quickly. Where KVM works, it must say that instead.
func TestProbeKVMHere(t *testing.T) {
	bin := qemuX86(t)
	start := time.Now()
	p := ProbeKVM(context.Background(), bin, "kvm", ProbeTimeout)
	t.Logf("KVM probe: %+v in %v", p, time.Since(start))
	if time.Since(start) > ProbeTimeout+2*time.Second {
		t.Errorf("probe took %v", time.Since(start))
	}
	if !p.Usable && p.Reason == "" {
		t.Error("no reason given")
	}
}

func TestProbeHangIsCaught(t *testing.T) {
	// A missing binary and a QEMU that cannot start give reasons, not hangs.
	p := ProbeKVM(context.Background(), "/nonexistent/qemu", "tcg", time.Second)
	if p.Usable || !strings.Contains(p.Reason, "QEMU failed") {
		t.Errorf("%+v", p)
	}
	// A "hang": sleep stands in for a QEMU whose vCPU never runs.
	dir := t.TempDir()
	fake := filepath.Join(dir, "qemu")
	os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755)
	start := time.Now()
	p = ProbeKVM(context.Background(), fake, "tcg", 300*time.Millisecond)
	if p.Usable || !strings.Contains(p.Reason, "hung") || time.Since(start) > 5*time.Second {
		t.Errorf("%+v after %v", p, time.Since(start))
	}
}

func TestDetectKVMCaches(t *testing.T) {
	bin := qemuX86(t)
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	first := DetectKVM(context.Background(), bin, dir, log)
	data, err := os.ReadFile(filepath.Join(dir, "kvm.json"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second := DetectKVM(context.Background(), bin, dir, log)
	if time.Since(start) > 200*time.Millisecond {
		t.Errorf("cached answer took %v", time.Since(start))
	}
	if first.Usable != second.Usable || first.Reason != second.Reason || !first.Checked.Equal(second.Checked) {
		t.Errorf("cache: %+v vs %+v", first, second)
	}
	if !first.Usable && strings.Count(logs.String(), "using TCG emulation") != 2 {
		t.Errorf("fallback not logged: %s", logs.String())
	}
	// A different host key invalidates the cache.
	os.WriteFile(filepath.Join(dir, "kvm.json"), bytes.Replace(data, []byte(first.Key), []byte("other-host"), 1), 0o644)
	third := DetectKVM(context.Background(), bin, dir, nil)
	if third.Checked.Equal(first.Checked) {
		t.Error("stale host key reused")
	}
}
