package install

import (
	"archive/tar"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/fsroot"
)

// Refs records the target's files whose bytes are a prepared package's,
// as they are on the package disk: the export then names where they are
// instead of copying them out of the VM (emulated, every byte), and the
// host, which has the disk, fills them in.
//
// A file is recorded by inode with its size, mtime and ctime once the
// installer has made it. Nothing can change a file's content without
// changing its ctime, which no one can set back; and whatever else runs
// in the target (scripts, triggers, the configuration) starts only once
// the clock has passed every recorded ctime (settle), so that a change
// in the same clock tick cannot go unseen.
type Refs struct {
	mu     sync.Mutex
	byIno  map[uint64]ref
	latest unix.Timespec
}

type ref struct {
	off, size    int64
	mtime, ctime unix.Timespec
}

// NewRefs returns an empty record.
func NewRefs() *Refs { return &Refs{byIno: map[uint64]ref{}} }

// note records the file at p, just written from an entry whose bytes
// are at off on the disk (-1: not known), or, for a hard link, the
// link's new ctime.
func (r *Refs) note(root *fsroot.Root, p string, h *tar.Header, off int64) error {
	if r == nil {
		return nil
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeLink:
	default:
		return nil
	}
	st, err := root.Lstat(p)
	if err != nil {
		return err
	}
	r.noteStat(st, h, off)
	return nil
}

// noteStat is note with the file's status at hand.
func (r *Refs) noteStat(st *unix.Stat_t, h *tar.Header, off int64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if later(st.Ctim, r.latest) {
		r.latest = st.Ctim
	}
	if h.Typeflag == tar.TypeLink {
		// A new name changes the inode's ctime, not its content.
		if old, ok := r.byIno[st.Ino]; ok {
			old.ctime = st.Ctim
			r.byIno[st.Ino] = old
		}
		return
	}
	if off < 0 || st.Size != h.Size || st.Mode&unix.S_IFMT != unix.S_IFREG {
		delete(r.byIno, st.Ino)
		return
	}
	r.byIno[st.Ino] = ref{off: off, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// Lookup tells where on the package disk the bytes of the regular file
// st describes are, when it is unchanged since the installer made it.
func (r *Refs) Lookup(st *syscall.Stat_t) (off, size int64, ok bool) {
	if r == nil {
		return 0, 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.byIno[st.Ino]
	if !ok || st.Size != f.size || unix.Timespec(st.Mtim) != f.mtime || unix.Timespec(st.Ctim) != f.ctime {
		return 0, 0, false
	}
	return f.off, f.size, true
}

// settle waits until the coarse clock, which file times come from, is
// past every ctime recorded: from then on a change to a recorded file
// gives it a later ctime.
func (r *Refs) settle() {
	if r == nil {
		return
	}
	r.mu.Lock()
	latest := r.latest
	r.mu.Unlock()
	for {
		var now unix.Timespec
		if unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &now) != nil || later(now, latest) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func later(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}
