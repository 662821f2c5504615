package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/qemu"
)

// kvmQEMU is a scripted qemu-system-x86_64 whose KVM fails in one way
// (mode); under TCG it is the real QEMU. It logs each KVM start to
// kvm.log: "probe" for the probe firmware, "vm" for a VM.
const kvmQEMU = `#!/bin/sh
real=@REAL@
log=@LOG@
kvm=no probe=no
for a in "$@"; do
	case $a in
	kvm) kvm=yes ;;
	*probe.bin) probe=yes ;;
	esac
done
[ $kvm = no ] && exec "$real" "$@"
if [ $probe = yes ]; then echo probe >> "$log"; else echo vm >> "$log"; fi
msr() {
	echo "qemu-system-x86_64: error: failed to set MSR 0x48b to 0x1ffff00000000" >&2
	echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:2996: kvm_buf_set_msrs: Assertion failed." >&2
	exit 134
}
# The real-mode probe firmware works in every mode but msr.
if [ $probe = yes ]; then
	[ @MODE@ = msr ] && msr
	exit 85
fi
dump() {
	echo "KVM internal error. Suberror: 1"
	echo "emulation failure"
	echo "RAX=0000000000000007 RBX=0000000000000000 RCX=0000000000000007 RDX=000000000000cf46"
	exec sleep 600 # QEMU stops the VM and waits
}
fault=true
case @MODE@ in
msr-linux) msr ;;
hang) exec sleep 600 ;;
dump) fault=dump ;;
dies) fault="exit 1" ;;
esac
# Else the same VM under TCG, with the fault in the install phase.
n=$#
for a in "$@"; do
	case $a in kvm) a=tcg ;; host) a=max ;; esac
	set -- "$@" "$a"
done
shift $n
"$real" "$@" 2>&1 | while IFS= read -r l; do
	printf '%s\n' "$l"
	case $l in *'"phase":"install"'*) $fault ;; esac
done
`

// TestKVMFallback: a KVM that fails in each way seen on real hosts ends
// in a TCG build that succeeds, the fallback logged once with its reason
// and remembered for the next build, which starts under TCG at once;
// doctor tells the same. Scripted QEMUs stand in for the broken KVMs, a
// file for /dev/kvm: the test does not depend on the host's KVM.
func TestKVMFallback(t *testing.T) {
	_, real := vmtest.Binary(t, "x86_64")
	body, _ := smallSpec(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "small.yaml")
	writeFile(t, spec, body, 0o644)
	dev := filepath.Join(dir, "kvm")
	writeFile(t, dev, "", 0o666)
	defer func(d string) { qemu.KVMDevice = d }(qemu.KVMDevice)
	qemu.KVMDevice = dev

	cases := []struct {
		mode     string
		reason   string // in the log line and kvm.json
		source   string
		vmStarts int // VMs started under KVM
	}{
		// KVM aborts at once ("failed to set MSR"): the probe catches it.
		{"msr", "failed to set MSR", "probe", 0},
		// The probe's real-mode code runs, but QEMU aborts the VM.
		{"msr-linux", "failed to set MSR", "build VM", 1},
		// The probe's real-mode code runs, but Linux hangs with no output.
		{"hang", "printed nothing for 10s under KVM", "build VM", 1},
		// The VM dies mid-install: QEMU reports a KVM error, dumps the
		// registers and stops the VM.
		{"dump", "KVM internal error", "build VM", 1},
		// The VM dies mid-install: QEMU just ends. KVM is blamed once TCG
		// has done the same work.
		{"dies", "QEMU ended (exit status 1) under KVM in phase install", "build VM", 1},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			bin := t.TempDir()
			state := t.TempDir()
			kvmLog := filepath.Join(state, "kvm.log")
			script := strings.NewReplacer("@REAL@", real, "@LOG@", kvmLog, "@MODE@", c.mode).Replace(kvmQEMU)
			writeFile(t, filepath.Join(bin, "qemu-system-x86_64"), script, 0o755)
			t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			t.Setenv("ALPINIST_CACHE", state) // the host's KVM answer goes here
			if p, _ := exec.LookPath("qemu-system-x86_64"); p != filepath.Join(bin, "qemu-system-x86_64") {
				t.Fatalf("the scripted QEMU is not first in PATH: %s", p)
			}

			out := filepath.Join(dir, c.mode)
			code, stdout, stderr := cli(t, "build", spec, "-o", out, "--cache", t.TempDir(), "--output", "tar")
			if code != 0 {
				t.Fatalf("build failed (%d):\n%s%s", code, stdout, stderr)
			}
			if _, err := os.Stat(filepath.Join(out, "small-x86_64.tar")); err != nil {
				t.Fatal(err)
			}
			// One line says why, and that TCG does the work.
			lines := grepLines(stderr, "TCG emulation")
			if len(lines) != 1 || !strings.Contains(lines[0], c.reason) {
				t.Errorf("want one fallback line with %q, got %q\n%s", c.reason, lines, stderr)
			}
			if !strings.Contains(stderr, "accel=tcg") {
				t.Errorf("no build VM under TCG:\n%s", stderr)
			}
			starts := func() (probes, vms int) {
				b, _ := os.ReadFile(kvmLog)
				for _, l := range strings.Fields(string(b)) {
					if l == "probe" {
						probes++
					} else {
						vms++
					}
				}
				return
			}
			if p, v := starts(); p != 1 || v != c.vmStarts {
				t.Errorf("KVM starts: %d probes, %d VMs; want 1, %d", p, v, c.vmStarts)
			}
			var answer qemu.KVMProbe
			b, err := os.ReadFile(filepath.Join(state, "kvm.json"))
			if err == nil {
				err = json.Unmarshal(b, &answer)
			}
			if err != nil || answer.Usable || !strings.Contains(answer.Reason, c.reason) || answer.Source != c.source {
				t.Errorf("kvm.json: %+v (%v), want not usable, %q, from %s", answer, err, c.reason, c.source)
			}

			// The next build knows: TCG at once, no KVM start at all.
			code, stdout, stderr = cli(t, "build", spec, "-o", out+"-again", "--cache", t.TempDir(), "--output", "tar")
			if code != 0 {
				t.Fatalf("second build failed (%d):\n%s%s", code, stdout, stderr)
			}
			if p, v := starts(); p != 1 || v != c.vmStarts {
				t.Errorf("the second build started KVM again: %d probes, %d VMs", p, v)
			}
			if lines := grepLines(stderr, "TCG emulation"); len(lines) != 1 || !strings.Contains(lines[0], c.reason) {
				t.Errorf("second build: want one line with the cached reason, got %q", lines)
			}
			// doctor tells the same truth.
			_, doc, _ := cli(t, "doctor", "--arch", "x86_64")
			if l := grepLines(doc, "KVM  "); len(l) != 1 || !strings.Contains(l[0], "broken") || !strings.Contains(l[0], c.reason) {
				t.Errorf("doctor: %q\n%s", l, doc)
			}
		})
	}
}

// grepLines are the lines of s that contain sub.
func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
