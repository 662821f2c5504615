package qemu

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/agent/proto"
)

// TestRunKVMFailures: under KVM, the failures that blame KVM are
// *KVMError with a one-line reason, found fast; the work's own failures
// are not; under TCG nothing is.
func TestRunKVMFailures(t *testing.T) {
	ready := "echo '" + frame(proto.Message{Type: "ready"}) + "'\n"
	install := "echo '" + frame(proto.Message{Type: "phase", Phase: "install"}) + "'\n"
	dump := "echo 'KVM internal error. Suberror: 1'\necho 'emulation failure'\necho 'EAX=00000007 EBX=00000000 ECX=00000007 EDX=0000cf46'\nexec sleep 60\n"
	cases := []struct {
		name, body string
		opts       RunOptions
		kvm, sure  bool
		reason     string
	}{
		{"silent", "exec sleep 60\n", RunOptions{SilenceTimeout: 300 * time.Millisecond}, true, true, "printed nothing for 300ms under KVM"},
		{"register dump at boot", "echo 'Probing EDD (edd=off to disable)... ok'\n" + dump, RunOptions{}, true, true, "QEMU: KVM internal error. Suberror: 1"},
		{"register dump mid-install", ready + install + dump, RunOptions{}, true, true, "QEMU: KVM internal error"},
		{"msr abort", "echo 'qemu-system-x86_64: error: failed to set MSR 0x48b to 0x1ffff00000000' >&2\nexit 134\n", RunOptions{}, true, true, "failed to set MSR"},
		{"entry failed", ready + "echo 'KVM: entry failed, hardware error 0x80000021'\nexec sleep 60\n", RunOptions{}, true, true, "KVM: entry failed"},
		{"dies mid-install", ready + install + "exit 1\n", RunOptions{}, true, false, "QEMU ended (exit status 1) under KVM in phase install"},
		{"never ready", "echo 'Probing EDD (edd=off to disable)... ok'\nexec sleep 60\n", RunOptions{BootTimeout: 300 * time.Millisecond}, true, false, "did not report ready within 300ms under KVM"},
		// The work's own failures are not KVM's.
		{"agent error", ready + "echo '" + frame(proto.Message{Type: "error", Text: "busybox: post-install failed"}) + "'\nexec sleep 60\n", RunOptions{}, false, false, ""},
		{"phase hang", ready + install + "exec sleep 60\n", RunOptions{IdleTimeout: 300 * time.Millisecond}, false, false, ""},
		// A guest's own oops prints "RAX: ...", not QEMU's "RAX=... RBX=".
		{"guest oops", ready + "echo 'RAX: 0000000000000000 RBX: 0000000000000000'\necho '" + frame(proto.Message{Type: "error", Text: "oops"}) + "'\nexec sleep 60\n", RunOptions{}, false, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, accel := range []string{"kvm", "tcg"} {
				c.opts.Binary = fakeQEMU(t, c.body)
				if accel == "tcg" {
					// TCG does not watch for KVM: bound the fakes' hangs.
					c.opts.BootTimeout, c.opts.IdleTimeout = 2*time.Second, 2*time.Second
				}
				v := testVM()
				v.Accel = accel
				start := time.Now()
				_, err := Run(context.Background(), v, c.opts)
				if err == nil {
					t.Fatalf("%s: no error", accel)
				}
				if time.Since(start) > 10*time.Second {
					t.Errorf("%s: took %v", accel, time.Since(start))
				}
				var kerr *KVMError
				isKVM := errors.As(err, &kerr)
				if isKVM != (c.kvm && accel == "kvm") || errors.Is(err, ErrKVM) != isKVM {
					t.Fatalf("%s: KVM error %v: %v", accel, isKVM, err)
				}
				if !isKVM {
					continue
				}
				if kerr.Sure != c.sure || !strings.Contains(kerr.Reason, c.reason) || strings.Contains(kerr.Reason, "\n") {
					t.Errorf("reason %q (sure %v), want %q (sure %v)", kerr.Reason, kerr.Sure, c.reason, c.sure)
				}
			}
		})
	}
}

// TestConsoleKVM: alpinist run's console under KVM: a KVM error, a VM
// that never speaks and one that goes quiet before login are KVM's
// failures; the same under TCG, or after login, are not.
func TestConsoleKVM(t *testing.T) {
	cases := []struct {
		name, body, until string
		kvm, sure         bool
		ok                bool
	}{
		{"up", "echo 'SYSLINUX 6.04'\necho 'alpine login: '\nexec sleep 60\n", "login:", false, false, true},
		{"register dump", "echo 'SYSLINUX 6.04'\necho 'KVM internal error. Suberror: 1'\necho 'EAX=00000007 EBX=00000000 ECX=00000007 EDX=0000cf46'\nexec sleep 60\n", "login:", true, true, false},
		{"silent", "exec sleep 60\n", "login:", true, true, false},
		{"quiet after the boot loader", "echo 'SYSLINUX 6.04'\nexec sleep 60\n", "login:", true, false, false},
		{"exits", "echo 'qemu: failed to set MSR 0x48b' >&2\nexit 1\n", "login:", true, true, false},
		// Interactive: up at login:, then quiet is the person's business;
		// QEMU ending with 0 is a person quitting.
		{"interactive quiet after login", "echo 'alpine login: '\nsleep 1\nexit 0\n", "", false, false, true},
		{"interactive dies before login", "echo 'Booting'\nexit 1\n", "", true, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, kvm := range []bool{true, false} {
				var out bytes.Buffer
				start := time.Now()
				err := Console{Bin: fakeQEMU(t, c.body), Out: &out, Until: c.until, Timeout: 3 * time.Second, KVM: kvm, Gap: 500 * time.Millisecond}.Run(context.Background())
				if time.Since(start) > 8*time.Second {
					t.Errorf("kvm %v: took %v", kvm, time.Since(start))
				}
				if (err == nil) != c.ok {
					t.Fatalf("kvm %v: %v\n%s", kvm, err, out.String())
				}
				var kerr *KVMError
				if errors.As(err, &kerr) != (c.kvm && kvm) {
					t.Fatalf("kvm %v: KVM error: %v", kvm, err)
				}
				if kerr != nil && kerr.Sure != c.sure {
					t.Errorf("sure %v: %s", kerr.Sure, kerr.Reason)
				}
			}
		})
	}
}

// TestKVMAnswer: a VM's answer replaces the probe's and is what DetectKVM
// gives next, without probing; a failure is logged once with its reason.
func TestKVMAnswer(t *testing.T) {
	dir := t.TempDir()
	// A QEMU that fails the test if it is ever started.
	bin := fakeQEMU(t, "echo started >&2\nexit 99\n")
	KVMBooted(bin, dir, "build VM", 600*time.Millisecond)
	p := DetectKVM(context.Background(), bin, dir, nil)
	if !p.Usable || !p.FromVM() || p.Source != "build VM" || p.Elapsed != "600ms" {
		t.Fatalf("after a boot: %+v", p)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	KVMFailed(bin, dir, "run", "QEMU: KVM internal error. Suberror: 1", log)
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "KVM internal error") || !strings.Contains(logs.String(), "TCG") {
		t.Errorf("log: %q", logs.String())
	}
	logs.Reset()
	p = DetectKVM(context.Background(), bin, dir, log)
	if p.Usable || p.Source != "run" || !strings.Contains(logs.String(), "KVM internal error") {
		t.Fatalf("after a failure: %+v, %s", p, logs.String())
	}
	// A later boot does not overwrite a failure: only KVMBooted after a
	// failure's TTL, or a probe on another host, tries KVM again.
	if q, ok := ReadKVM(bin, dir); !ok || q.Usable {
		t.Errorf("ReadKVM: %+v %v", q, ok)
	}
	// The probe's own answer says where it came from.
	if q := ProbeKVM(context.Background(), bin, "tcg", time.Second); q.Source != "probe" || q.FromVM() {
		t.Errorf("probe: %+v", q)
	}
}
