package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// KVMGapTimeout is how long a disk VM under KVM may go quiet before its
// system is up: long enough for a firmware, a boot loader's timeout and
// a quiet kernel under KVM, short against a Linux that hangs.
const KVMGapTimeout = 20 * time.Second

// Console runs a VM whose console is a person's or a test's (alpinist
// run): QEMU's output goes to Out and In to its input, until QEMU exits,
// ctx ends, or Until appears.
type Console struct {
	Bin  string
	Args []string
	In   io.Reader
	Out  io.Writer
	// Until, when set, stops QEMU with success once it appears on the
	// console; Timeout bounds the wait for it.
	Until   string
	Timeout time.Duration
	// KVM: the VM runs under KVM, so KVM's failures are watched for and
	// returned as a *KVMError: QEMU's KVM errors and register dumps,
	// QEMU failing before the system is up, and a console that stays
	// quiet for Gap (KVMGapTimeout when 0) before Until, or "login:"
	// when Until is empty, has appeared.
	KVM bool
	Gap time.Duration
}

// Run runs the VM; see Console.
func (c Console) Run(ctx context.Context) error {
	if c.Until != "" && c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	up := c.Until
	if up == "" {
		up = "login:"
	}
	gap := c.Gap
	if gap <= 0 {
		gap = KVMGapTimeout
	}
	cmd := exec.Command(c.Bin, c.Args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.In, pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu: starting %s: %w", c.Bin, err)
	}
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()

	w := &consoleWatch{up: []byte(up), kvm: c.KVM, spoke: make(chan struct{}, 1), isUp: make(chan struct{}), trouble: make(chan string, 1)}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				c.Out.Write(buf[:n])
				w.feed(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	stop := func() {
		kill()
		go io.Copy(io.Discard, pr)
		<-waitOrTimeout(done, 5*time.Second)
	}
	quiet := time.NewTimer(gap)
	defer quiet.Stop()
	systemUp := false
	isUp := w.isUp
	for {
		select {
		case <-w.spoke:
			quiet.Reset(gap)
		case <-isUp:
			isUp = nil
			systemUp = true
			quiet.Stop()
			if c.Until != "" {
				stop()
				return nil
			}
		case <-quiet.C:
			if c.KVM && !systemUp {
				stop()
				seen, _ := w.state()
				what := "printed nothing"
				if seen {
					what = "went quiet"
				}
				return &KVMError{Reason: fmt.Sprintf("the VM %s for %v under KVM before %q appeared", what, gap, up), Sure: !seen,
					err: fmt.Errorf("qemu: the VM %s for %v under KVM before %q appeared (killed)", what, gap, up)}
			}
		case line := <-w.trouble:
			stop()
			return &KVMError{Reason: "QEMU: " + line, Sure: true, err: fmt.Errorf("qemu: KVM failed: %s (killed)", line)}
		case <-ctx.Done():
			stop()
			if c.Until != "" && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("qemu: %q did not appear on the console within %v", c.Until, c.Timeout)
			}
			return ctx.Err()
		case err := <-done:
			<-readDone // QEMU's last words are read
			select {
			case <-isUp:
				systemUp = true
				if c.Until != "" {
					return nil
				}
			default:
			}
			if c.Until == "" && err == nil {
				return nil // the person quit, or the system powered off
			}
			what := fmt.Sprintf("QEMU stopped (%v)", err)
			if err == nil {
				what = "QEMU stopped"
			}
			if c.Until != "" {
				err = fmt.Errorf("qemu: %s before %q appeared on the console", what, c.Until)
			} else {
				err = fmt.Errorf("qemu: %s", what)
			}
			if c.KVM && !systemUp {
				_, last := w.state()
				return &KVMError{Reason: what + " under KVM, last console line: " + last, err: err}
			}
			return err
		}
	}
}

// consoleWatch follows a console's bytes for the first output, the text
// that says the system is up, and QEMU's KVM error lines.
type consoleWatch struct {
	up      []byte
	kvm     bool
	mu      sync.Mutex // guards seen and last
	seen    bool
	window  []byte // the end of the output, to find up across reads
	line    []byte // the current line
	last    string // the last whole non-empty line
	spoke   chan struct{}
	isUp    chan struct{}
	trouble chan string
}

func (w *consoleWatch) feed(b []byte) {
	w.mu.Lock()
	w.seen = true
	w.mu.Unlock()
	select {
	case w.spoke <- struct{}{}:
	default:
	}
	if w.up != nil {
		w.window = append(w.window, b...)
		if bytes.Contains(w.window, w.up) {
			w.up = nil
			close(w.isUp)
		} else if len(w.window) > len(w.up) {
			w.window = append(w.window[:0], w.window[len(w.window)-len(w.up):]...)
		}
	}
	for _, ch := range b {
		if ch != '\n' {
			if len(w.line) < 4096 {
				w.line = append(w.line, ch)
			}
			continue
		}
		l := string(bytes.TrimRight(w.line, "\r"))
		w.line = w.line[:0]
		if l == "" {
			continue
		}
		w.mu.Lock()
		w.last = l
		w.mu.Unlock()
		if w.kvm && kvmTrouble(l) {
			select {
			case w.trouble <- l:
			default:
			}
		}
	}
}

// state is whether anything came, and the last whole line.
func (w *consoleWatch) state() (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == "" {
		return w.seen, "(none)"
	}
	return w.seen, w.last
}
