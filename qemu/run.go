package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alpinist/alpinist/agent/proto"
)

// RunOptions control Run.
type RunOptions struct {
	// Binary overrides the profile's QEMU binary.
	Binary string
	// Console receives the VM's console lines that are not agent
	// messages (the build log); nil discards them.
	Console io.Writer
	// OnMessage sees each agent message as it arrives; an error stops the VM.
	OnMessage func(proto.Message) error
	// BootTimeout bounds the time until the agent reports ready.
	BootTimeout time.Duration
	// IdleTimeout bounds the time between two agent messages after ready:
	// a phase that sends nothing for this long is taken as hung.
	IdleTimeout time.Duration
	// SilenceTimeout bounds the time until QEMU prints anything at all
	// (default 60s under TCG; a healthy VM's kernel speaks within
	// seconds, even emulated). Past it, Run fails with ErrSilent. Under
	// KVM the default is KVMSilenceTimeout, and the error is also ErrKVM.
	SilenceTimeout time.Duration
}

// KVMSilenceTimeout is how long a VM under KVM may print nothing at all
// before KVM is taken as broken: a build VM's kernel and agent speak
// within a second under KVM, and within about 2 s even under TCG.
const KVMSilenceTimeout = 10 * time.Second

// ErrSilent is a VM that printed nothing at all, not a firmware, kernel
// or agent line: it never got going, which a second start usually cures
// (it was seen once, on a loaded emulated host).
var ErrSilent = errors.New("QEMU printed nothing")

// silentError is Run's error for a silent VM: errors.Is(err, ErrSilent).
type silentError struct{ error }

func (e silentError) Is(target error) bool { return target == ErrSilent }

// ErrKVM is a VM under KVM that failed in a way that blames KVM, not the
// work: it printed nothing, QEMU reported a KVM error or dumped the
// vCPU's registers, QEMU ended before the agent finished, or the agent
// never reported ready. The cure is the same work under TCG. An agent's
// own error, a hung phase and a cancelled context are not ErrKVM.
var ErrKVM = errors.New("KVM failed")

// KVMError is Run's error for ErrKVM, with the reason in one line.
type KVMError struct {
	Reason string
	// Sure: only KVM can be the cause (silence, QEMU's KVM errors). A
	// VM that ended early or never got ready may have failed for its own
	// reasons: KVM is blamed only once TCG does the same work.
	Sure bool
	err  error
}

func (e *KVMError) Error() string        { return e.err.Error() }
func (e *KVMError) Unwrap() error        { return e.err }
func (e *KVMError) Is(target error) bool { return target == ErrKVM }

// kvmTrouble tells whether a console line is QEMU saying that KVM failed:
// its error lines, and the register dump it prints when a vCPU stops
// (after which the VM stays paused, so nothing more will come).
func kvmTrouble(line string) bool {
	for _, p := range []string{"KVM internal error", "KVM: entry failed", "KVM: injection failed", "error: kvm run failed", "kvm run failed"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	if strings.Contains(line, "failed to set MSR") || strings.Contains(line, "kvm_init_vcpu failed") {
		return true
	}
	// QEMU's register dump: "RAX=0000000000000000 RBX=...", "EAX=00000000 EBX=...".
	return strings.HasPrefix(line, "RAX=") && strings.Contains(line, " RBX=") ||
		strings.HasPrefix(line, "EAX=") && strings.Contains(line, " EBX=")
}

// Result is what a finished VM run reported.
type Result struct {
	Messages []proto.Message
	// Ready is the host time from start to the agent's ready message.
	Ready time.Duration
	// Elapsed is the whole run.
	Elapsed time.Duration
}

// consoleTail keeps the last lines of the console for error messages.
type consoleTail struct {
	mu    sync.Mutex
	lines []string
}

func (c *consoleTail) add(l string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, l)
	if len(c.lines) > 15 {
		c.lines = c.lines[1:]
	}
}

// last is the last console line, or "no console output".
func (c *consoleTail) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) == 0 {
		return "no console output"
	}
	return c.lines[len(c.lines)-1]
}

func (c *consoleTail) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) == 0 {
		return "(no console output)"
	}
	return "last console lines:\n  " + strings.Join(c.lines, "\n  ")
}

// Run boots the VM and follows the agent until it reports done (success)
// or error, QEMU exits, a timeout passes or ctx ends. QEMU runs in its
// own process group and is always killed before Run returns. Under KVM a
// failure that blames KVM is a *KVMError (errors.Is(err, ErrKVM)).
func Run(ctx context.Context, v *VM, opts RunOptions) (*Result, error) {
	args, err := v.Args()
	if err != nil {
		return nil, err
	}
	bin := opts.Binary
	if bin == "" {
		bin = v.Profile.Binary
	}
	kvm := v.Accel == "kvm"
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = 2 * time.Minute
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.SilenceTimeout <= 0 {
		opts.SilenceTimeout = time.Minute
		if kvm {
			opts.SilenceTimeout = KVMSilenceTimeout
		}
	}
	cmd := exec.Command(bin, args...)
	// Its own process group (a terminal's ^C goes to alpinist, which
	// stops the VM); killed with alpinist, even by SIGKILL, never left
	// running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // QEMU's own errors go to the console tail too
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("build VM: starting %s: %w", bin, err)
	}
	r := &vmRun{
		v: v, opts: opts, kvm: kvm, cmd: cmd, start: start,
		exited:  make(chan error, 1),
		msgs:    make(chan proto.Message),
		readErr: make(chan error, 1),
		trouble: make(chan string, 1), // QEMU's first KVM error line
		tail:    &consoleTail{},
		spoke:   &firstByte{r: stdout},
		res:     &Result{},
	}
	go r.readConsole()
	return r.follow(ctx)
}

// vmRun is one run of QEMU: the console reader's channels, and what the
// run has seen.
type vmRun struct {
	v     *VM
	opts  RunOptions
	kvm   bool
	cmd   *exec.Cmd
	start time.Time

	exited  chan error
	msgs    chan proto.Message
	readErr chan error
	trouble chan string // QEMU's first KVM error line
	tail    *consoleTail
	spoke   *firstByte

	res   *Result
	ready bool
}

// kill kills QEMU's process group.
func (r *vmRun) kill() { syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) }

// readConsole reads the console: agent messages go to msgs, other lines
// to the tail and the Console, QEMU's KVM errors to trouble. At the end
// it closes msgs and reaps QEMU.
func (r *vmRun) readConsole() {
	sc := bufio.NewScanner(r.spoke)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		m, ok, err := proto.Parse(line)
		if err != nil {
			r.readErr <- err
			break
		}
		if ok {
			r.msgs <- m
			continue
		}
		text := strings.TrimRight(string(line), "\r")
		r.tail.add(text)
		if r.opts.Console != nil {
			r.opts.Console.Write(append(line, '\n'))
		}
		if r.kvm && kvmTrouble(text) {
			select {
			case r.trouble <- text:
			default:
			}
		}
	}
	close(r.msgs)
	r.exited <- r.cmd.Wait()
}

// stop kills the VM and returns the error for the reason given.
func (r *vmRun) stop(format string, a ...any) error {
	r.kill()
	// Drain so the reader goroutine ends and Wait reaps QEMU.
	go func() {
		for range r.msgs {
		}
	}()
	<-waitOrTimeout(r.exited, 5*time.Second)
	r.res.Elapsed = time.Since(r.start)
	return fmt.Errorf("build VM (%s): %s\n%s", r.v.Profile.Arch, fmt.Sprintf(format, a...), r.tail)
}

// fail stops the VM and returns the result so far with the error.
func (r *vmRun) fail(format string, a ...any) (*Result, error) {
	return r.res, r.stop(format, a...)
}

// kvmFail stops the VM; under KVM the error blames KVM with reason.
func (r *vmRun) kvmFail(sure bool, reason string, err error) (*Result, error) {
	if !r.kvm {
		return r.res, err
	}
	return r.res, &KVMError{Reason: reason, Sure: sure, err: err}
}

// follow follows the agent's messages until the run ends.
func (r *vmRun) follow(ctx context.Context) (*Result, error) {
	opts := r.opts
	timer := time.NewTimer(opts.BootTimeout)
	defer timer.Stop()
	silence := time.NewTimer(opts.SilenceTimeout)
	defer silence.Stop()
	for {
		select {
		case <-silence.C:
			if !r.spoke.seen.Load() {
				err := silentError{r.stop("%v for %v (killed)", ErrSilent, opts.SilenceTimeout)}
				return r.kvmFail(true, fmt.Sprintf("the VM printed nothing for %v under KVM", opts.SilenceTimeout), err)
			}
		case line := <-r.trouble:
			return r.kvmFail(true, "QEMU: "+line, r.stop("KVM failed: %s (killed)", line))
		case <-ctx.Done():
			return r.fail("stopped: %v", ctx.Err())
		case err := <-r.readErr:
			return r.fail("%v", err)
		case <-timer.C:
			if !r.ready {
				return r.kvmFail(false, fmt.Sprintf("the agent did not report ready within %v under KVM", opts.BootTimeout),
					r.stop("the agent did not report ready within %v (killed)", opts.BootTimeout))
			}
			return r.fail("no word from the agent for %v after %q (killed as hung)", opts.IdleTimeout, lastPhase(r.res.Messages))
		case m, ok := <-r.msgs:
			if !ok {
				return r.consoleClosed()
			}
			if end, res, err := r.message(ctx, m); end {
				return res, err
			}
			if r.ready {
				timer.Reset(opts.IdleTimeout)
			}
		}
	}
}

// consoleClosed ends a run whose console closed before the agent
// finished.
func (r *vmRun) consoleClosed() (*Result, error) {
	select {
	case err := <-r.readErr: // sent before msgs was closed
		return r.fail("%v", err)
	case line := <-r.trouble:
		return r.kvmFail(true, "QEMU: "+line, r.stop("KVM failed: %s", line))
	default:
	}
	var err error
	select {
	case err = <-r.exited:
	case <-time.After(10 * time.Second):
		return r.fail("the console closed but QEMU did not exit")
	}
	r.kill() // what QEMU left behind
	r.res.Elapsed = time.Since(r.start)
	if err == nil {
		err = errors.New("exit status 0")
	}
	return r.kvmFail(false, fmt.Sprintf("QEMU ended (%v) under KVM in phase %s, last console line: %s", err, lastPhase(r.res.Messages), r.tail.last()),
		fmt.Errorf("build VM (%s): QEMU ended (%v) before the agent finished\n%s", r.v.Profile.Arch, err, r.tail))
}

// message takes agent message m; end says the run is over, with res and
// err its outcome.
func (r *vmRun) message(ctx context.Context, m proto.Message) (end bool, res *Result, err error) {
	r.res.Messages = append(r.res.Messages, m)
	if m.Type == proto.TypeReady && !r.ready {
		r.ready = true
		r.res.Ready = time.Since(r.start)
	}
	if r.opts.OnMessage != nil {
		if err := r.opts.OnMessage(m); err != nil {
			res, err := r.fail("%v", err)
			return true, res, err
		}
	}
	switch m.Type {
	case proto.TypeError:
		res, err := r.fail("agent: %s", m.Text)
		return true, res, err
	case proto.TypeDone:
		// The agent powers off; wait for QEMU to go.
		go func() {
			for range r.msgs {
			}
		}()
		select {
		case <-waitOrTimeout(r.exited, 30*time.Second):
		case <-ctx.Done():
		}
		r.kill()
		r.res.Elapsed = time.Since(r.start)
		return true, r.res, nil
	}
	return false, nil, nil
}

// firstByte reads r and notes whether anything came at all.
type firstByte struct {
	r    io.Reader
	seen atomic.Bool
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.seen.Store(true)
	}
	return n, err
}

func lastPhase(ms []proto.Message) string {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Type == proto.TypePhase {
			return ms[i].Phase
		}
	}
	return "ready"
}

// waitOrTimeout returns a channel closed when ch yields or d passes.
func waitOrTimeout(ch <-chan error, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-time.After(d):
		}
		close(done)
	}()
	return done
}
