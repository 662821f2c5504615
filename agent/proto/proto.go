// Package proto is how the build VM's agent reports to the host over the
// serial console, which also carries the kernel's messages: one message
// per line, "@@alpinist@@ " followed by a JSON object. Lines without the
// prefix are console output (kept for the build log).
package proto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Prefix starts every framed line.
const Prefix = "@@alpinist@@ "

// Message types.
const (
	TypeReady = "ready" // the agent is up: modules loaded, disks found
	TypePhase = "phase" // a phase started (Phase names it)
	TypeLog   = "log"   // a line for the build log
	TypeError = "error" // the build failed (Text says why); the VM powers off
	TypeDone  = "done"  // the work is complete; the VM powers off
)

// Message is one framed report.
type Message struct {
	Type  string `json:"type"`
	Phase string `json:"phase,omitempty"`
	Text  string `json:"text,omitempty"`
	// Arch and Kernel describe the VM (ready).
	Arch   string `json:"arch,omitempty"`
	Kernel string `json:"kernel,omitempty"`
	// Uptime is the VM's /proc/uptime when the message was sent.
	Uptime time.Duration `json:"uptime_ns,omitempty"`
	// Disks are the virtio disk serials the agent found (ready).
	Disks []string `json:"disks,omitempty"`
}

// Encode writes m as one framed line.
func Encode(w io.Writer, m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(append([]byte(Prefix), b...), '\n'))
	return err
}

// Parse reads one console line (without its newline; a trailing \r is
// ignored). ok is false for lines that are not framed; a framed line that
// does not decode is an error. Text after the message's JSON object is
// the kernel's: its console output can land between the message and its
// newline (printk writes past the tty's buffer), and is ignored.
func Parse(line []byte) (m Message, ok bool, err error) {
	line = bytes.TrimRight(line, "\r")
	i := bytes.Index(line, []byte(Prefix))
	if i < 0 {
		return Message{}, false, nil
	}
	if err := json.NewDecoder(bytes.NewReader(line[i+len(Prefix):])).Decode(&m); err != nil {
		return Message{}, true, fmt.Errorf("agent message %q: %w", truncate(line[i:]), err)
	}
	if m.Type == "" {
		return Message{}, true, fmt.Errorf("agent message %q: no type", truncate(line[i:]))
	}
	return m, true, nil
}

func truncate(b []byte) string {
	if len(b) > 120 {
		return string(b[:117]) + "..."
	}
	return string(b)
}
