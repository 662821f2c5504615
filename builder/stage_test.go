package builder

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestStaleStages: a run killed with SIGKILL leaves its stage (once 9.6
// GB); the next run of the same name removes the stages of runs that are
// gone, and leaves those of live ones.
func TestStaleStages(t *testing.T) {
	out := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(out, ".web.stage-"+strconv.Itoa(dead.Process.Pid)+"-123")
	live := filepath.Join(out, ".web.stage-1-456") // pid 1 is alive
	other := filepath.Join(out, ".db.stage-"+strconv.Itoa(dead.Process.Pid)+"-789")
	for _, d := range []string{gone, live, other} {
		if err := os.MkdirAll(filepath.Join(d, "big"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewStaging(out, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(s.Dir)
	for d, want := range map[string]bool{gone: false, live: true, other: true, s.Dir: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}
