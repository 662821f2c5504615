package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/agent/proto"
)

// fakeQEMU writes a shell script standing in for QEMU.
func fakeQEMU(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func frame(m proto.Message) string {
	var b bytes.Buffer
	proto.Encode(&b, m)
	return strings.TrimSpace(b.String())
}

func testVM() *VM {
	p, _ := Lookup("x86_64")
	return &VM{Profile: p, Accel: "tcg", Kernel: "/k"}
}

func TestRunDone(t *testing.T) {
	bin := fakeQEMU(t, "echo booting\necho '"+frame(proto.Message{Type: "ready", Arch: "x86_64"})+"'\necho '"+
		frame(proto.Message{Type: "phase", Phase: "install"})+"'\necho '"+frame(proto.Message{Type: "done"})+"'\n")
	var console bytes.Buffer
	var seen []string
	res, err := Run(context.Background(), testVM(), RunOptions{Binary: bin, Console: &console, OnMessage: func(m proto.Message) error {
		seen = append(seen, m.Type)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "ready,phase,done" || len(res.Messages) != 3 || res.Ready <= 0 {
		t.Errorf("%v %+v", seen, res)
	}
	if console.String() != "booting\n" {
		t.Errorf("console %q", console.String())
	}
}

func TestRunFailures(t *testing.T) {
	ready := "echo '" + frame(proto.Message{Type: "ready"}) + "'\n"
	cases := []struct {
		name, body string
		opts       RunOptions
		want       string
	}{
		{"boot hang", "echo stuck in firmware\nexec sleep 60\n", RunOptions{BootTimeout: 300 * time.Millisecond, SilenceTimeout: 100 * time.Millisecond}, "did not report ready within 300ms"},
		{"silent", "exec sleep 60\n", RunOptions{SilenceTimeout: 300 * time.Millisecond}, "QEMU printed nothing for 300ms (killed)"},
		{"phase hang", ready + "echo '" + frame(proto.Message{Type: "phase", Phase: "install"}) + "'\nexec sleep 60\n", RunOptions{IdleTimeout: 300 * time.Millisecond}, `after "install" (killed as hung)`},
		{"agent error", ready + "echo '" + frame(proto.Message{Type: "error", Text: "busybox-1.36: pre-install failed"}) + "'\nexec sleep 60\n", RunOptions{}, "agent: busybox-1.36: pre-install failed"},
		{"qemu dies", "echo 'qemu: could not load kernel' >&2\nexit 1\n", RunOptions{}, "QEMU ended (exit status 1)"},
		{"dies in a phase", ready + "echo '" + frame(proto.Message{Type: "phase", Phase: "install"}) + "'\necho 'Kernel panic - not syncing: Out of memory'\nexit 0\n", RunOptions{}, "Kernel panic"},
		{"garbage frame", "echo '@@alpinist@@ {nope'\nexec sleep 60\n", RunOptions{}, "agent message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Binary = fakeQEMU(t, c.body)
			start := time.Now()
			_, err := Run(context.Background(), testVM(), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if c.name == "qemu dies" && !strings.Contains(err.Error(), "could not load kernel") {
				t.Errorf("console tail missing: %v", err)
			}
			// Only a VM that said nothing at all is silent (build retries it).
			if errors.Is(err, ErrSilent) != (c.name == "silent") {
				t.Errorf("errors.Is(ErrSilent) = %v: %v", errors.Is(err, ErrSilent), err)
			}
		})
	}
}

// TestRunCancelKillsProcessGroup: Ctrl-C (a cancelled context) kills QEMU
// and anything it started.
func TestRunCancelKillsProcessGroup(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "child.pid")
	bin := fakeQEMU(t, "sleep 60 &\necho $! > "+marker+"\necho '"+frame(proto.Message{Type: "ready"})+"'\nwait\n")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(500 * time.Millisecond)
		cancel()
	}()
	_, err := Run(ctx, testVM(), RunOptions{Binary: bin})
	if err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("got %v", err)
	}
	pid, _ := os.ReadFile(marker)
	time.Sleep(100 * time.Millisecond)
	// Gone, or a zombie waiting for its reaper: not running.
	if st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat"); err == nil {
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] != "Z" {
			t.Errorf("QEMU's child survived: %s", st)
		}
	}
}
