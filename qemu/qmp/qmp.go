// Package qmp is a small client for the QEMU Machine Protocol: connect,
// negotiate capabilities, run commands (query-status, system_powerdown,
// quit, ...) and receive asynchronous events, over QEMU's -qmp socket.
//
// Protocol: QEMU greets with {"QMP": {...}}; the client must send
// qmp_capabilities before anything else. Each command is
// {"execute": NAME, "arguments": {...}, "id": ID} and gets one reply,
// {"return": ...} or {"error": {"class": ..., "desc": ...}}, with the same
// id. Events ({"event": NAME, "data": ..., "timestamp": ...}) come at any
// time in between.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Error is a command's failure as QEMU reports it.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp: %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// Event is an asynchronous QMP event.
type Event struct {
	Name string
	Data json.RawMessage
	Time time.Time
}

// Version is QEMU's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// ErrClosed is returned for commands on a closed connection (QEMU exited
// or Close was called).
var ErrClosed = errors.New("qmp: connection closed")

// Client is a QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn    net.Conn
	version Version

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan reply
	err     error // set when the reader stops

	events  chan Event
	dropped int
	done    chan struct{}
}

type reply struct {
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
}

// message is any QMP message from the server.
type message struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
	} `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// EventBuffer is how many undelivered events are kept; older ones are
// dropped (Dropped counts them) so a slow reader never stalls QEMU.
const EventBuffer = 256

// Dial connects to a QMP unix socket, retrying until ctx ends (QEMU
// creates the socket shortly after it starts), reads the greeting and
// negotiates capabilities.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return NewClient(ctx, conn)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// NewClient starts a QMP session on an open connection.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, pending: map[string]chan reply{}, events: make(chan Event, EventBuffer), done: make(chan struct{})}
	dec := json.NewDecoder(bufio.NewReader(conn))
	if dl, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(dl)
	}
	var greet message
	if err := dec.Decode(&greet); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: reading the greeting: %w", err)
	}
	if greet.QMP == nil {
		conn.Close()
		return nil, errors.New("qmp: the server did not greet with {\"QMP\": ...}")
	}
	v := greet.QMP.Version
	c.version = Version{v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro, v.Package}
	conn.SetReadDeadline(time.Time{})
	go c.read(dec)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Version is the QEMU version the server announced.
func (c *Client) Version() Version { return c.version }

// Events delivers asynchronous events; it is closed when the connection ends.
func (c *Client) Events() <-chan Event { return c.events }

// Dropped is the number of events dropped because nobody read them.
func (c *Client) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) read(dec *json.Decoder) {
	var err error
	for {
		var m message
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.Event != "":
			ev := Event{Name: m.Event, Data: m.Data}
			if m.Timestamp != nil {
				ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
			}
			c.deliver(ev)
		case len(m.ID) > 0:
			c.mu.Lock()
			ch := c.pending[string(m.ID)]
			delete(c.pending, string(m.ID))
			c.mu.Unlock()
			if ch != nil {
				ch <- reply{Return: m.Return, Error: m.Error}
			}
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		err = ErrClosed
	} else {
		err = fmt.Errorf("qmp: reading: %w", err)
	}
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

func (c *Client) deliver(ev Event) {
	for {
		select {
		case c.events <- ev:
			return
		default:
		}
		// Full: drop the oldest.
		select {
		case <-c.events:
			c.mu.Lock()
			c.dropped++
			c.mu.Unlock()
		default:
		}
	}
}

// Execute runs a command with optional arguments and decodes its return
// value into result (when not nil). QEMU's errors are *Error.
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	c.nextID++
	id := fmt.Sprintf("%d", c.nextID)
	ch := make(chan reply, 1)
	c.pending[`"`+id+`"`] = ch
	c.mu.Unlock()

	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	}
	_, err = c.conn.Write(append(data, '\n'))
	c.conn.SetWriteDeadline(time.Time{})
	c.wmu.Unlock()
	if err != nil {
		c.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			return fmt.Errorf("qmp: %s: %w", command, err)
		}
		if r.Error != nil {
			r.Error.Command = command
			return r.Error
		}
		if result != nil && len(r.Return) > 0 {
			if err := json.Unmarshal(r.Return, result); err != nil {
				return fmt.Errorf("qmp: %s: decoding the reply: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, ctx.Err())
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.pending, `"`+id+`"`)
	c.mu.Unlock()
}

// Status is query-status's answer.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "running", "paused", "prelaunch", "shutdown", ...
}

// QueryStatus asks for the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// SystemPowerdown sends an ACPI (or PSCI) power-button request.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit asks QEMU to exit now. QEMU may close the connection before or
// after it replies; both count as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// WaitEvent waits for an event with the given name, discarding others.
func (c *Client) WaitEvent(ctx context.Context, name string) (Event, error) {
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return Event{}, fmt.Errorf("qmp: waiting for %s: %w", name, ErrClosed)
			}
			if ev.Name == name {
				return ev, nil
			}
		case <-ctx.Done():
			return Event{}, fmt.Errorf("qmp: waiting for %s: %w", name, ctx.Err())
		}
	}
}

// Close ends the connection.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
