// Command alpinist-agent is PID 1 of alpinist's build VM. As the
// initramfs of a system booted from one of alpinist's disk images (root=
// on the command line, no alpinist.mode), it mounts the root file system
// and switches to it instead (boot.go). In the build VM it mounts the
// kernel filesystems, loads the kernel modules listed in the initramfs,
// finds its virtio disks by serial, reports to the host over the console
// (see agent/proto), does the work the kernel command line asks for, and
// powers the VM off, whatever happens.
//
// It is built static (CGO_ENABLED=0) for each target arch and embedded in
// alpinist; it is not meant to be run by hand.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alpinist/alpinist/internal/counting"

	"golang.org/x/sys/unix"

	"github.com/alpinist/alpinist/agent/apktools"
	"github.com/alpinist/alpinist/agent/configure"
	"github.com/alpinist/alpinist/agent/export"
	"github.com/alpinist/alpinist/agent/install"
	"github.com/alpinist/alpinist/agent/pkgdisk"
	"github.com/alpinist/alpinist/agent/proto"
)

// build installs the package disk ("pkgs") into a tmpfs target and writes
// the rootfs tar to the output disk ("out").
func build(disks map[string]string, args map[string]string) error {
	in, out := disks["pkgs"], disks["out"]
	if in == "" || out == "" {
		return fmt.Errorf("build needs the disks pkgs and out (found %v)", disks)
	}
	const target = "/target"
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	size := args["alpinist.tmpfs"]
	if size == "" {
		size = "90%"
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "mode=0755,size="+size); err != nil {
		return fmt.Errorf("mount the target tmpfs: %w", err)
	}
	if err := waitReady(in); err != nil {
		return err
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := pkgdisk.Open(f)
	if err != nil {
		return err
	}
	report(proto.Message{Type: proto.TypePhase, Phase: "install", Text: fmt.Sprintf("%d packages", len(d.Manifest.Packages))})
	var refs *install.Refs
	switch d.Manifest.Installer {
	case "":
		if d.Manifest.Prepared {
			refs = install.NewRefs()
		}
		inst := &install.Installer{Root: target, Log: os.Stdout, Refs: refs,
			Phase: func(what string) { report(proto.Message{Type: proto.TypeLog, Text: what}) }}
		if err := inst.Install(d); err != nil {
			return err
		}
	case "apk-tools":
		const tools = "/tools"
		if err := os.MkdirAll(tools, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", tools, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mount the tools tmpfs: %w", err)
		}
		if err := apktools.Install(d, target, tools, os.Stdout); err != nil {
			return err
		}
		unix.Unmount(tools, unix.MNT_DETACH)
	default:
		return fmt.Errorf("unknown installer %q", d.Manifest.Installer)
	}
	// Always: even without configuration, root's password is locked.
	report(proto.Message{Type: proto.TypePhase, Phase: "configure"})
	if err := configure.Apply(target, d.Manifest.Config, d, d.Manifest.SourceDateEpoch, true, os.Stdout); err != nil {
		return err
	}
	report(proto.Message{Type: proto.TypePhase, Phase: "export"})
	o, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(o, 1<<20)
	cw := &counting.Writer{W: bw}
	if err := export.WriteTar(cw, target, export.Options{Epoch: d.Manifest.SourceDateEpoch, Ref: refs.Lookup}); err != nil {
		o.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		o.Close()
		return fmt.Errorf("writing the rootfs to the output disk: %w", err)
	}
	if err := errors.Join(o.Sync(), o.Close()); err != nil {
		return fmt.Errorf("writing the rootfs to the output disk: %w", err)
	}
	report(proto.Message{Type: proto.TypeDone, Text: strconv.FormatInt(cw.N, 10)})
	return nil
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "alpinist-agent runs as PID 1 of alpinist's build VM; it is not a command to run by hand")
		os.Exit(2)
	}
	err := run()
	if err != nil {
		report(proto.Message{Type: proto.TypeError, Text: err.Error()})
	}
	poweroff()
}

func report(m proto.Message) {
	m.Uptime = uptime()
	proto.Encode(os.Stdout, m)
}

func run() error {
	if err := mountKernelFS(); err != nil {
		return err
	}
	args := cmdline()
	if err := loadModules("/lib/modules"); err != nil {
		return err
	}
	if _, build := args["alpinist.mode"]; !build && args["root"] != "" {
		// The initramfs of a booted system: on success it never returns.
		return bootRoot(args)
	}
	var want []string
	if d := args["alpinist.disks"]; d != "" {
		want = strings.Split(d, ",")
	}
	disks, err := waitDisks(want, 10*time.Second)
	if err != nil {
		return err
	}
	var u unix.Utsname
	unix.Uname(&u)
	var serials []string
	for s := range disks {
		serials = append(serials, s)
	}
	slices.Sort(serials)
	report(proto.Message{Type: proto.TypeReady, Arch: unix.ByteSliceToString(u.Machine[:]), Kernel: unix.ByteSliceToString(u.Release[:]), Disks: serials})
	switch mode := args["alpinist.mode"]; mode {
	case "", "ready":
		report(proto.Message{Type: proto.TypeDone})
		return nil
	case "build":
		return build(disks, args)
	default:
		return fmt.Errorf("unknown alpinist.mode=%q", mode)
	}
}

func mountKernelFS() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// cmdline reads key=value words of the kernel command line.
func cmdline() map[string]string {
	data, _ := os.ReadFile("/proc/cmdline")
	out := map[string]string{}
	for _, w := range strings.Fields(string(data)) {
		k, v, _ := strings.Cut(w, "=")
		out[k] = v
	}
	return out
}

// loadModules loads dir/load's modules, a line at a time (dependencies
// first, as the host wrote them): the modules of one line at once, each
// on its own thread, on as many CPUs as the VM has. A module already
// loaded is fine.
func loadModules(dir string) error {
	f, err := os.Open(filepath.Join(dir, "load"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		names := strings.Fields(sc.Text())
		errs := make([]error, len(names))
		var wg sync.WaitGroup
		for i, name := range names {
			wg.Go(func() { errs[i] = loadModule(filepath.Join(dir, name)) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return sc.Err()
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("module %s: %w", p, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loading module %s: %w", filepath.Base(p), err)
	}
	return nil
}

// waitDisks waits until every wanted serial names a virtio disk and
// returns serial -> /dev path for all disks found.
func waitDisks(want []string, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		found := map[string]string{}
		blocks, _ := filepath.Glob("/sys/block/vd*")
		for _, b := range blocks {
			s, err := os.ReadFile(filepath.Join(b, "serial"))
			if err != nil {
				continue
			}
			found[strings.TrimSpace(string(s))] = "/dev/" + filepath.Base(b)
		}
		missing := []string{}
		for _, w := range want {
			if _, ok := found[w]; !ok {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return found, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("virtio disks %v did not appear within %v (found %v)", missing, timeout, found)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitReady waits until the package disk is written (pkgdisk.Ready: the
// host boots the VM while it still writes it), reading its first block
// around the page cache, then drops what the kernel cached of the disk
// before (it reads a disk's first blocks when it finds it).
func waitReady(dev string) error {
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // aligned, for O_DIRECT
	if err != nil {
		return err
	}
	defer unix.Munmap(buf)
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("package disk: %w", err)
	}
	defer unix.Close(fd)
	start, said := time.Now(), false
	for {
		if n, err := unix.Pread(fd, buf, 0); err != nil {
			return fmt.Errorf("package disk: %w", err)
		} else if pkgdisk.Ready(buf[:n]) {
			break
		}
		if !said {
			report(proto.Message{Type: proto.TypeLog, Text: "waiting for the host to finish the package disk"})
			said = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	if said {
		report(proto.Message{Type: proto.TypeLog, Text: fmt.Sprintf("the package disk was ready after %v", time.Since(start).Round(time.Millisecond))})
	}
	if err := unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("package disk: dropping its cache: %w", err)
	}
	return nil
}

func uptime() time.Duration {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

func poweroff() {
	// The last message may still be in the console tty's buffer: the
	// kernel's own "reboot: Power down", written past the tty, would cut
	// into its line. Wait until the tty has sent it (tcdrain), for a
	// moment at most: a console that never drains must not keep the VM
	// up.
	drained := make(chan struct{})
	go func() {
		unix.IoctlSetInt(int(os.Stdout.Fd()), unix.TCSBRK, 1)
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Not reached; if it were, PID 1 must not exit.
	select {}
}
