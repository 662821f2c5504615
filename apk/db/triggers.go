package db

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/alpinist/alpinist/apk"
)

// Trigger is one line of lib/apk/db/triggers: a package, by checksum, and
// the directory globs whose changes run its trigger script.
type Trigger struct {
	Checksum []byte
	Dirs     []string
}

// ReadTriggers reads lib/apk/db/triggers. Blank lines are skipped and
// empty globs (repeated spaces) ignored, as in apk; a line ends at "\n"
// alone (a "\r" before it is part of a glob, as apk reads it). Errors say
// "triggers:LINE: …".
func ReadTriggers(r io.Reader) ([]Trigger, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), apk.MaxLineLength)
	sc.Split(scanLF)
	var out []Trigger
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		if l == "" {
			continue
		}
		sum, rest, _ := strings.Cut(l, " ")
		c, err := decodeChecksum(sum)
		if err != nil {
			return nil, fmt.Errorf("triggers:%d: %w", line, err)
		}
		t := Trigger{Checksum: c}
		for _, d := range strings.Split(rest, " ") {
			if d != "" {
				t.Dirs = append(t.Dirs, d)
			}
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", apk.MaxLineLength)
		}
		return nil, fmt.Errorf("triggers:%d: %w", line+1, err)
	}
	return out, nil
}

// scanLF splits at "\n" only: bufio.ScanLines would drop a "\r" before
// it.
func scanLF(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// WriteTriggers writes lib/apk/db/triggers as apk_db_triggers_write:
// "CHECKSUM GLOB GLOB…" per line, in the order given.
func WriteTriggers(w io.Writer, triggers []Trigger) error {
	bw := bufio.NewWriter(w)
	for _, t := range triggers {
		c, err := encodeChecksum(t.Checksum)
		if err != nil {
			return fmt.Errorf("triggers: %w", err)
		}
		bw.WriteString(c)
		for _, d := range t.Dirs {
			if d == "" || strings.ContainsAny(d, " \n") {
				return fmt.Errorf("triggers: %s: glob %q: want non-empty, without spaces or newlines", c, short(d))
			}
			bw.WriteString(" " + d)
		}
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("triggers: %w", err)
	}
	return nil
}

// TriggersOf lists the triggers of pkgs (their Package.Triggers) in the
// order apk writes them: pkgs in the order given, which for apk is the
// installation order, skipping packages without triggers.
func TriggersOf(pkgs []*Installed) []Trigger {
	var out []Trigger
	for _, in := range pkgs {
		if len(in.Package.Triggers) > 0 {
			out = append(out, Trigger{Checksum: in.Package.Checksum, Dirs: in.Package.Triggers})
		}
	}
	return out
}

// AttachTriggers adds triggers to the Package.Triggers of pkgs as apk does
// when it opens a database: by package checksum, appending; lines of
// packages not in pkgs are dropped.
func AttachTriggers(pkgs []*Installed, triggers []Trigger) {
	byChecksum := make(map[string]*Installed, len(pkgs))
	for _, in := range pkgs {
		byChecksum[string(in.Package.Checksum)] = in
	}
	for _, t := range triggers {
		if in := byChecksum[string(t.Checksum)]; in != nil {
			in.Package.Triggers = append(in.Package.Triggers, t.Dirs...)
		}
	}
}
