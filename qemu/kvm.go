// Package qemu launches the build VM: per-architecture machine profiles,
// the KVM probe, and (in qmp) the control connection.
package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/internal/atomicfile"
)

// probeExit is the isa-debug-exit status of the probe firmware: it writes
// 0x2a to port 0xf4, which QEMU turns into exit status (0x2a<<1)|1.
const probeExit = 0x2a<<1 | 1

// probeFirmware is a 64 KiB x86 BIOS image whose reset vector (the last
// 16 bytes, run at 0xFFFFFFF0 in real mode) does
//
//	mov al, 0x2a ; out 0xf4, al ; hlt ; jmp $-1
//
// so a vCPU that really runs guest code makes QEMU exit with probeExit
// at once. Everything else is hlt.
func probeFirmware() []byte {
	fw := bytes.Repeat([]byte{0xf4}, 64<<10)
	copy(fw[len(fw)-16:], []byte{0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd})
	return fw
}

// KVMDevice is the KVM device the probe opens first. Tests that script
// a QEMU's KVM point it at a file of their own, so that they do not
// depend on the host's /dev/kvm.
var KVMDevice = "/dev/kvm"

// KVMProbe is what is known of KVM on this host: the probe firmware's
// answer, until a VM under KVM has booted Linux (or failed to).
type KVMProbe struct {
	Usable bool   `json:"usable"`
	Reason string `json:"reason"` // why not, or what ran under KVM
	// Source is who gave the answer: "probe" (the real-mode probe
	// firmware, which says nothing of Linux), or the VM that booted
	// Linux, or failed to, under KVM ("build VM", "run").
	Source  string    `json:"source"`
	Key     string    `json:"key"` // host identity the answer is valid for
	Checked time.Time `json:"checked"`
	Elapsed string    `json:"elapsed,omitempty"`
}

// FromVM tells whether the answer comes from a VM booting Linux, not
// only from the probe firmware.
func (p KVMProbe) FromVM() bool { return p.Source != "" && p.Source != "probe" }

// ProbeTimeout bounds the probe VM: a working KVM runs the probe firmware
// in a few milliseconds after QEMU starts; a broken one aborts or hangs.
const ProbeTimeout = 3 * time.Second

// ProbeKVM checks whether qemuBin (an x86_64 system emulator) can run
// guest code with accel (normally "kvm"; tests use "tcg" to prove the
// probe itself) by booting the probe firmware with a timeout. Missing
// /dev/kvm, no permission, QEMU aborting ("failed to set MSR"), a hang:
// each gives Usable false and a reason.
func ProbeKVM(ctx context.Context, qemuBin, accel string, timeout time.Duration) KVMProbe {
	start := time.Now()
	res := func(ok bool, format string, args ...any) KVMProbe {
		return KVMProbe{Usable: ok, Source: "probe", Reason: fmt.Sprintf(format, args...), Checked: start.UTC(), Elapsed: time.Since(start).Round(time.Millisecond).String()}
	}
	if accel == "kvm" {
		if runtime.GOOS != "linux" {
			return res(false, "KVM needs Linux")
		}
		f, err := os.OpenFile(KVMDevice, os.O_RDWR, 0)
		if err != nil {
			return res(false, "%s: %v", KVMDevice, unwrapPath(err))
		}
		f.Close()
	}
	dir, err := os.MkdirTemp("", "alpinist-kvm-probe-")
	if err != nil {
		return res(false, "%v", err)
	}
	defer os.RemoveAll(dir)
	fw := filepath.Join(dir, "probe.bin")
	if err := os.WriteFile(fw, probeFirmware(), 0o644); err != nil {
		return res(false, "%v", err)
	}
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuBin, "-accel", accel, "-cpu", cpu, "-M", "pc", "-m", "16",
		"-nodefaults", "-display", "none", "-no-reboot", "-bios", fw,
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return res(false, "the probe VM hung (no guest code ran within %v)", timeout)
	case errors.As(err, &ee) && ee.ExitCode() == probeExit:
		return res(true, "guest code ran under %s", accel)
	case err == nil:
		return res(false, "QEMU exited without running the probe")
	default:
		msg := strings.TrimSpace(out.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if msg == "" {
			msg = err.Error()
		}
		return res(false, "QEMU failed: %s", msg)
	}
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// KVMCacheTTL is how long a probe's answer is reused.
const KVMCacheTTL = 24 * time.Hour

// hostKey identifies what the KVM answer depends on: the kernel, the
// QEMU binary and /dev/kvm's identity.
func hostKey(qemuBin string) string {
	h := sha256.New()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		for _, f := range [][]byte{u.Nodename[:], u.Release[:], u.Version[:], u.Machine[:]} {
			h.Write([]byte(unix.ByteSliceToString(f)))
			h.Write([]byte{0})
		}
	}
	if p, err := exec.LookPath(qemuBin); err == nil {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", p, st.Size(), st.ModTime().UnixNano())
		}
	}
	if st, err := os.Stat(KVMDevice); err == nil {
		fmt.Fprintf(h, "kvm %v %v\n", st.Mode(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// kvmFile is the answer's file in the host's alpinist cache directory
// (not a build's --cache: the answer is the host's).
const kvmFile = "kvm.json"

// DetectKVM answers whether a VM may use KVM on this host for an x86_64
// guest: from dir's kvm.json when the host is the same and the answer
// younger than KVMCacheTTL, else by the probe firmware (and caching it).
// The probe only shows that real-mode guest code runs; the first VM
// under KVM gives the real answer (KVMFailed, KVMBooted). A negative
// answer is logged on one line, saying why.
func DetectKVM(ctx context.Context, qemuBin, dir string, log *slog.Logger) KVMProbe {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if runtime.GOARCH != "amd64" {
		return KVMProbe{Reason: "KVM is only probed on x86_64 hosts so far"}
	}
	key := hostKey(qemuBin)
	if p, ok := readKVM(dir, key); ok {
		if !p.Usable {
			log.Info("KVM does not work here; using TCG emulation", "reason", p.Reason, "found_by", p.Source, "since", p.Checked.Format(time.RFC3339))
		}
		return p
	}
	p := ProbeKVM(ctx, qemuBin, "kvm", ProbeTimeout)
	p.Key = key
	if !p.Usable {
		log.Info("KVM does not work here; using TCG emulation", "reason", p.Reason)
	}
	if ctx.Err() == nil {
		writeKVM(dir, p)
	}
	return p
}

// KVMFailed records that a VM (source: "build VM", "run") failed under
// KVM for reason, so that later VMs use TCG at once, and says so on one
// line.
func KVMFailed(qemuBin, dir, source, reason string, log *slog.Logger) {
	if log != nil {
		log.Warn("KVM failed: the same work under TCG emulation instead, and TCG on this host for the next "+strings.TrimSuffix(KVMCacheTTL.String(), "0m0s"), "reason", reason, "found_by", source)
	}
	writeKVM(dir, KVMProbe{Usable: false, Reason: reason, Source: source, Key: hostKey(qemuBin), Checked: time.Now().UTC()})
}

// KVMBooted records that a VM (source) booted Linux under KVM, its agent
// or console speaking after ready, unless a VM already said so.
func KVMBooted(qemuBin, dir, source string, ready time.Duration) {
	key := hostKey(qemuBin)
	if p, ok := readKVM(dir, key); ok && p.Usable && p.FromVM() {
		return
	}
	writeKVM(dir, KVMProbe{Usable: true, Reason: "Linux booted under KVM", Source: source, Key: key, Checked: time.Now().UTC(),
		Elapsed: ready.Round(time.Millisecond).String()})
}

// ReadKVM is the cached answer for qemuBin on this host, if there is a
// fresh one.
func ReadKVM(qemuBin, dir string) (KVMProbe, bool) {
	return readKVM(dir, hostKey(qemuBin))
}

func readKVM(dir, key string) (KVMProbe, bool) {
	if dir == "" {
		return KVMProbe{}, false
	}
	data, err := os.ReadFile(filepath.Join(dir, kvmFile))
	if err != nil {
		return KVMProbe{}, false
	}
	var p KVMProbe
	if json.Unmarshal(data, &p) != nil || p.Key != key || time.Since(p.Checked) >= KVMCacheTTL || p.Source == "" {
		return KVMProbe{}, false
	}
	return p, true
}

// writeKVM stores p; a cache that cannot be written costs the next VM a
// probe, not this one its result.
func writeKVM(dir string, p KVMProbe) {
	if dir == "" {
		return
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil || os.MkdirAll(dir, 0o755) != nil {
		return
	}
	atomicfile.WriteBytes(filepath.Join(dir, kvmFile), append(data, '\n'), 0o644)
}

// KVMFallback is what a caller that boots VMs under KVM does when one
// fails for KVM's sake: Failed says whether to do the same work again
// under TCG (recording or noting the failure, and saying so on one
// line); Done, after the work succeeded, records what was learnt.
type KVMFallback struct {
	Bin, Dir string
	Source   string // "build VM", "run"
	Log      *slog.Logger
	blame    *KVMError // KVM's failure, blamed once TCG succeeds
}

// Failed tells whether err is KVM's failure, to be redone under TCG. A
// sure one is recorded at once; an unsure one (a VM that ended early or
// never got ready) only once TCG has done the same work (Done).
func (f *KVMFallback) Failed(err error) bool {
	var kerr *KVMError
	if !errors.As(err, &kerr) {
		return false
	}
	if kerr.Sure {
		KVMFailed(f.Bin, f.Dir, f.Source, kerr.Reason, f.Log)
		return true
	}
	if f.Log != nil {
		f.Log.Warn("the "+f.Source+" failed under KVM: the same work again under TCG emulation", "reason", kerr.Reason)
	}
	f.blame = kerr
	return true
}

// Done records, after the work succeeded under accel, that Linux booted
// under KVM (ready: the time it took), or that KVM was to blame for the
// failure that TCG has now done without.
func (f *KVMFallback) Done(accel string, ready time.Duration) {
	if accel == "kvm" {
		KVMBooted(f.Bin, f.Dir, f.Source, ready)
	}
	if f.blame != nil {
		KVMFailed(f.Bin, f.Dir, f.Source, f.blame.Reason, nil)
	}
}

// KVMFile is the file in dir that holds the host's KVM answer.
func KVMFile(dir string) string { return filepath.Join(dir, kvmFile) }
