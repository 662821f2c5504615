package proto

import (
	"bytes"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	in := Message{Type: TypeReady, Arch: "aarch64", Kernel: "6.1", Uptime: 1500 * time.Millisecond, Disks: []string{"pkgs", "out"}}
	if err := Encode(&b, in); err != nil {
		t.Fatal(err)
	}
	// Kernel output may precede the frame on the same line.
	line := append([]byte("[    1.234] random: crng init done"), bytes.TrimRight(b.Bytes(), "\n")...)
	m, ok, err := Parse(append(line, '\r'))
	if err != nil || !ok || m.Type != TypeReady || m.Arch != "aarch64" || m.Uptime != in.Uptime || len(m.Disks) != 2 {
		t.Fatalf("%+v %v %v", m, ok, err)
	}
	// The kernel's last words may land between a message and its
	// newline (CI saw riscv64's "reboot: Power down" there).
	done := []byte(Prefix + `{"type":"done","text":"225280","uptime_ns":5650000000}[    6.214656] reboot: Power down`)
	if m, ok, err := Parse(done); err != nil || !ok || m.Type != TypeDone || m.Text != "225280" {
		t.Errorf("a message with the kernel's text after it: %+v %v %v", m, ok, err)
	}
	if _, ok, _ := Parse([]byte("plain console output")); ok {
		t.Error("plain line parsed as a message")
	}
	if _, ok, err := Parse([]byte(Prefix + "{broken")); !ok || err == nil {
		t.Error("broken frame accepted")
	}
	if _, _, err := Parse([]byte(Prefix + "{}")); err == nil {
		t.Error("frame without type accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(Prefix + `{"type":"log","text":"x"}`))
	f.Add([]byte(Prefix + `{"type":"done","text":"1"}[    6.2] reboot: Power down`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, ok, err := Parse(line)
		if ok && err == nil {
			var b bytes.Buffer
			Encode(&b, m)
			m2, ok2, err2 := Parse(bytes.TrimRight(b.Bytes(), "\n"))
			if !ok2 || err2 != nil || m2.Type != m.Type || m2.Text != m.Text {
				t.Fatalf("%+v -> %q -> %+v %v", m, b.String(), m2, err2)
			}
		}
	})
}
