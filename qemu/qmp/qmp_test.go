package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
)

// fakeQEMU serves one QMP session on a pipe: it greets, then answers
// each command with handle's reply lines (raw JSON, one per line; "ID"
// is replaced by the request's id).
func fakeQEMU(t *testing.T, handle func(cmd string) []string) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	go func() {
		defer server.Close()
		server.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 2, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}, "capabilities": ["oob"]}}` + "\r\n"))
		sc := bufio.NewScanner(server)
		for sc.Scan() {
			var req struct {
				Execute string `json:"execute"`
				ID      string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
				server.Write([]byte(`{"error": {"class": "GenericError", "desc": "bad json"}}` + "\n"))
				continue
			}
			for _, l := range handle(req.Execute) {
				if _, err := server.Write([]byte(strings.ReplaceAll(l, "ID", req.ID) + "\r\n")); err != nil {
					return
				}
			}
		}
	}()
	return client
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSession(t *testing.T) {
	conn := fakeQEMU(t, func(cmd string) []string {
		switch cmd {
		case "qmp_capabilities":
			return []string{`{"return": {}, "id": "ID"}`}
		case "query-status":
			return []string{
				`{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "RESUME"}`,
				`{"return": {"status": "running", "singlestep": false, "running": true}, "id": "ID"}`,
			}
		case "system_powerdown":
			return []string{`{"return": {}, "id": "ID"}`, `{"timestamp": {"seconds": 1700000001, "microseconds": 0}, "event": "POWERDOWN"}`}
		case "bogus":
			return []string{`{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}, "id": "ID"}`}
		case "quit":
			return nil // QEMU may exit before answering
		}
		return nil
	})
	c, err := NewClient(ctx(t), conn)
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Version(); v.String() != "7.2.2" || v.Package != "Debian 1:7.2" {
		t.Errorf("version %+v", v)
	}
	st, err := c.QueryStatus(ctx(t))
	if err != nil || !st.Running || st.Status != "running" {
		t.Fatalf("status %+v %v", st, err)
	}
	ev, err := c.WaitEvent(ctx(t), "RESUME")
	if err != nil || ev.Time.Unix() != 1700000000 {
		t.Errorf("event %+v %v", ev, err)
	}
	if err := c.SystemPowerdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitEvent(ctx(t), "POWERDOWN"); err != nil {
		t.Error(err)
	}
	var qe *Error
	if err := c.Execute(ctx(t), "bogus", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("bogus: %v", err)
	}
	// A command without an answer times out through its context.
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Execute(short, "quit", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered: %v", err)
	}
	c.Close()
	if err := c.Execute(ctx(t), "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, ok := <-c.Events(); ok {
		// drain: remaining buffered events are fine, but the channel must close
		for range c.Events() {
		}
	}
}

func TestQuitWhenQEMUExits(t *testing.T) {
	client, server := net.Pipe()
	go func() {
		server.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 9}, "package": ""}, "capabilities": []}}` + "\n"))
		sc := bufio.NewScanner(server)
		sc.Scan()
		var req struct{ ID string }
		json.Unmarshal(sc.Bytes(), &req)
		server.Write([]byte(`{"return": {}, "id": "` + req.ID + `"}` + "\n"))
		sc.Scan() // quit: exit without answering
		server.Close()
	}()
	c, err := NewClient(ctx(t), client)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx(t)); err != nil {
		t.Errorf("quit: %v", err)
	}
	<-c.Done()
}

func TestBadGreeting(t *testing.T) {
	for _, greet := range []string{"not json\n", `{"return": {}}` + "\n", ""} {
		client, server := net.Pipe()
		go func() {
			server.Write([]byte(greet))
			server.Close()
		}()
		if _, err := NewClient(ctx(t), client); err == nil {
			t.Errorf("greeting %q accepted", greet)
		}
	}
}

func TestEventOverflowDropsOldest(t *testing.T) {
	conn := fakeQEMU(t, func(cmd string) []string {
		if cmd == "qmp_capabilities" {
			return []string{`{"return": {}, "id": "ID"}`}
		}
		var out []string
		for range EventBuffer + 10 {
			out = append(out, `{"event": "X", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}}`)
		}
		return append(out, `{"return": {}, "id": "ID"}`)
	})
	c, err := NewClient(ctx(t), conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Execute(ctx(t), "flood", nil, nil); err != nil {
		t.Fatal(err)
	}
	if c.Dropped() != 10 {
		t.Errorf("dropped %d, want 10", c.Dropped())
	}
}

// TestRealQEMU talks to a real qemu-system-x86_64 with no machine.
func TestRealQEMU(t *testing.T) {
	bin := hosttool.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command(bin, "-M", "none", "-nodefaults", "-display", "none", "-S", "-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	c, err := Dial(ctx(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version().Major < 5 {
		t.Errorf("version %v", c.Version())
	}
	st, err := c.QueryStatus(ctx(t))
	if err != nil || st.Running || st.Status != "prelaunch" {
		t.Errorf("status %+v %v", st, err)
	}
	if err := c.Execute(ctx(t), "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitEvent(ctx(t), "RESUME"); err != nil {
		t.Error(err)
	}
	var qe *Error
	if err := c.Execute(ctx(t), "no-such-command", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}
	if err := c.Quit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("qemu did not exit after quit")
	}
	<-c.Done()
}
