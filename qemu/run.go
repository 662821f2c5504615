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
	// (default 60s; a healthy VM's kernel speaks within seconds, even
	// emulated). Past it, Run fails with ErrSilent.
	SilenceTimeout time.Duration
}

// ErrSilent is a VM that printed nothing at all, not a firmware, kernel
// or agent line: it never got going, which a second start usually cures
// (it was seen once, on a loaded emulated host).
var ErrSilent = errors.New("QEMU printed nothing")

// silentError is Run's error for a silent VM: errors.Is(err, ErrSilent).
type silentError struct{ error }

func (e silentError) Is(target error) bool { return target == ErrSilent }

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
// own process group and is always killed before Run returns.
func Run(ctx context.Context, v *VM, opts RunOptions) (*Result, error) {
	args, err := v.Args()
	if err != nil {
		return nil, err
	}
	bin := opts.Binary
	if bin == "" {
		bin = v.Profile.Binary
	}
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = 2 * time.Minute
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.SilenceTimeout <= 0 {
		opts.SilenceTimeout = time.Minute
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // QEMU's own errors go to the console tail too
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("build VM: starting %s: %w", bin, err)
	}
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	exited := make(chan error, 1)

	msgs := make(chan proto.Message)
	readErr := make(chan error, 1)
	tail := &consoleTail{}
	var spoke atomic.Bool
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			spoke.Store(true)
			line := sc.Bytes()
			m, ok, err := proto.Parse(line)
			if err != nil {
				readErr <- err
				break
			}
			if ok {
				msgs <- m
				continue
			}
			tail.add(strings.TrimRight(string(line), "\r"))
			if opts.Console != nil {
				opts.Console.Write(append(line, '\n'))
			}
		}
		close(msgs)
		exited <- cmd.Wait()
	}()

	res := &Result{}
	fail := func(format string, a ...any) (*Result, error) {
		kill()
		// Drain so the reader goroutine ends and Wait reaps QEMU.
		go func() {
			for range msgs {
			}
		}()
		<-waitOrTimeout(exited, 5*time.Second)
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("build VM (%s): %s\n%s", v.Profile.Arch, fmt.Sprintf(format, a...), tail)
	}
	ready := false
	timer := time.NewTimer(opts.BootTimeout)
	defer timer.Stop()
	silence := time.NewTimer(opts.SilenceTimeout)
	defer silence.Stop()
	for {
		select {
		case <-silence.C:
			if !spoke.Load() {
				res, err := fail("%v for %v (killed)", ErrSilent, opts.SilenceTimeout)
				return res, silentError{err}
			}
		case <-ctx.Done():
			return fail("stopped: %v", ctx.Err())
		case err := <-readErr:
			return fail("%v", err)
		case <-timer.C:
			if !ready {
				return fail("the agent did not report ready within %v (killed)", opts.BootTimeout)
			}
			return fail("no word from the agent for %v after %q (killed as hung)", opts.IdleTimeout, lastPhase(res.Messages))
		case m, ok := <-msgs:
			if !ok {
				select {
				case err := <-readErr: // sent before msgs was closed
					return fail("%v", err)
				default:
				}
				var err error
				select {
				case err = <-exited:
				case <-time.After(10 * time.Second):
					return fail("the console closed but QEMU did not exit")
				}
				res.Elapsed = time.Since(start)
				if err == nil {
					err = errors.New("exit status 0")
				}
				return res, fmt.Errorf("build VM (%s): QEMU ended (%v) before the agent finished\n%s", v.Profile.Arch, err, tail)
			}
			res.Messages = append(res.Messages, m)
			if m.Type == proto.TypeReady && !ready {
				ready = true
				res.Ready = time.Since(start)
			}
			if opts.OnMessage != nil {
				if err := opts.OnMessage(m); err != nil {
					return fail("%v", err)
				}
			}
			switch m.Type {
			case proto.TypeError:
				return fail("agent: %s", m.Text)
			case proto.TypeDone:
				// The agent powers off; wait for QEMU to go.
				go func() {
					for range msgs {
					}
				}()
				select {
				case <-waitOrTimeout(exited, 30*time.Second):
				case <-ctx.Done():
				}
				kill()
				res.Elapsed = time.Since(start)
				return res, nil
			}
			if ready {
				timer.Reset(opts.IdleTimeout)
			}
		}
	}
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
