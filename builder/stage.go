package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/assembler/output"
)

// staging is where a command writes its outputs before they replace the
// previous ones in the output directory, all at the end: an error, a full
// disk or a signal before then leaves the previous outputs as they were
// and nothing half-made beside them.
type Staging struct {
	// Out is the output directory, Dir the stage in it.
	Out, Dir string
	// Results are the outputs written, with their final paths.
	Results []output.Result
	made    bool // Out did not exist before
}

func NewStaging(out, name string) (*Staging, error) {
	_, err := os.Stat(out)
	made := os.IsNotExist(err)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	removeStale(out, name)
	// The stage's name holds our pid: a later run removes the stage of a
	// run that was killed (SIGKILL leaves it; it once held 9.6 GB).
	dir, err := os.MkdirTemp(out, "."+name+".stage-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	return &Staging{Out: out, Dir: dir, made: made}, nil
}

// removeStale removes the stages of name in out left by runs that are no
// longer alive.
func removeStale(out, name string) {
	stages, _ := filepath.Glob(filepath.Join(out, "."+name+".stage-*"))
	for _, st := range stages {
		rest := strings.TrimPrefix(filepath.Base(st), "."+name+".stage-")
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			os.RemoveAll(st)
		}
	}
}

// final is where a staged path goes.
func (s *Staging) Final(p string) string {
	if rel, err := filepath.Rel(s.Dir, p); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.Join(s.Out, rel)
	}
	return p
}

// add records written outputs, to print once they are in place.
func (s *Staging) Add(rs []output.Result) {
	for _, r := range rs {
		r.Path = s.Final(r.Path)
		s.Results = append(s.Results, r)
	}
}

// commit moves every staged output into the output directory (a
// directory output, such as NAME.oci, replaces the previous one whole),
// unless ctx was cancelled (Ctrl-C, SIGTERM) meanwhile.
func (s *Staging) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: the previous outputs in %s are left as they were", s.Out)
	}
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return err
	}
	// Files first, then directories, each in name order.
	slices.SortStableFunc(ents, func(a, b os.DirEntry) int {
		if a.IsDir() != b.IsDir() {
			if a.IsDir() {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Name(), b.Name())
	})
	for _, en := range ents {
		if strings.HasPrefix(en.Name(), ".") {
			continue // work directories
		}
		src, dst := filepath.Join(s.Dir, en.Name()), filepath.Join(s.Out, en.Name())
		if en.IsDir() {
			if st, err := os.Lstat(dst); err == nil && st.IsDir() {
				old, err := os.MkdirTemp(s.Out, "."+en.Name()+".old-")
				if err != nil {
					return err
				}
				if err := os.Rename(dst, filepath.Join(old, "x")); err != nil {
					os.Remove(old)
					return err
				}
				defer os.RemoveAll(old)
			}
		}
		if err := os.Rename(src, dst); err != nil {
			return err
		}
	}
	return nil
}

// cleanup removes the staging directory and what is left in it, and the
// output directory when it made it and nothing went there.
func (s *Staging) Cleanup() {
	os.RemoveAll(s.Dir)
	if s.made {
		os.Remove(s.Out) // only when empty
	}
}
