package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/alpinist/alpinist/agent/proto"
)

// icountRuns is how many times icountSet builds, to show how well the
// guest's clock repeats.
const icountRuns = 2

// icountSet times the real VM set's build in the build VM's own clock.
// With QEMU's -icount shift=2,sleep=off the guest's clock counts emulated
// instructions (4 ns each) instead of the host's time: its phases repeat
// to about 1% whatever the host's load, where wall times drift by 1.6×
// and more in a day on this machine. It sees the work the guest does,
// not TCG's translation of it nor the host's, so it is the measure for a
// change to what runs in the VM (the agent, its system calls, the
// scripts), beside the wall times. One vCPU (-icount runs them on one
// thread and two hang in SMP bring-up) and x86_64 only.
func icountSet(bin, real, work string) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		add("real v3.19 VM set in the VM's clock", "skipped: "+err.Error(), "")
		return
	}
	dir := filepath.Join(work, "icount")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatal("%v", err)
	}
	console := filepath.Join(dir, "console")
	// A wrapper on PATH: one vCPU, -icount, and the console copied for
	// the agent's messages, which carry its uptime.
	wrapper := `#!/bin/bash
args=()
prev=
for a in "$@"; do
	if [ "$prev" = -smp ]; then a=1; fi
	args+=("$a")
	prev=$a
done
exec ` + qemu + ` "${args[@]}" -icount shift=2,sleep=off > >(tee ` + console + `)
`
	if err := os.WriteFile(filepath.Join(dir, "qemu-system-x86_64"), []byte(wrapper), 0o755); err != nil {
		fatal("%v", err)
	}
	oldPath := os.Getenv("PATH")
	os.Setenv("PATH", dir+string(os.PathListSeparator)+oldPath)
	defer os.Setenv("PATH", oldPath)
	var got [][]time.Duration
	for i := range icountRuns {
		os.Remove(console)
		coldBuild(work, bin, "real-icount", realVM(real), "tar", i)
		steps, err := guestSteps(console)
		if err != nil {
			fatal("icount: %v", err)
		}
		got = append(got, steps)
	}
	names := []string{"boot to agent ready", "install", "of which the triggers", "export"}
	for j, n := range names {
		var vs []string
		for _, steps := range got {
			vs = append(vs, fmt.Sprintf("%.2fs", steps[j].Seconds()))
		}
		add(fmt.Sprintf("real v3.19 VM set, tar, cold, in the VM's clock (-icount shift=2, 1 vCPU, %d runs): %s", icountRuns, n), strings.Join(vs, ", "), "")
	}
}

// guestSteps reads the agent's messages in a console copy and gives, in
// the guest's clock: boot to ready, install, its triggers, and export.
func guestSteps(console string) ([]time.Duration, error) {
	f, err := os.Open(console)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	at := map[string]time.Duration{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		_, msg, ok := strings.Cut(sc.Text(), proto.Prefix)
		if !ok {
			continue
		}
		var m proto.Message
		if err := json.Unmarshal([]byte(strings.TrimRight(msg, "\r")), &m); err != nil {
			continue
		}
		key := m.Type
		switch {
		case m.Type == proto.TypePhase:
			key = "phase " + m.Phase
		case m.Type == proto.TypeLog:
			key = m.Text
		}
		if _, seen := at[key]; !seen {
			at[key] = m.Uptime
		}
	}
	need := []string{proto.TypeReady, "phase install", "running triggers", "writing the database", "phase configure", "phase export", proto.TypeDone}
	for _, k := range need {
		if _, ok := at[k]; !ok {
			return nil, fmt.Errorf("%s: no %q message from the agent", console, k)
		}
	}
	return []time.Duration{at[proto.TypeReady], at["phase configure"] - at["phase install"],
		at["writing the database"] - at["running triggers"], at[proto.TypeDone] - at["phase export"]}, nil
}
