// Package vmtest helps tests boot VMs: it finds the QEMU binary for an
// arch (failing under CI, where make test installs it, and skipping
// elsewhere) and runs a VM to its end, capturing the console.
package vmtest

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/qemu"
)

// Arches are the architectures the boot tests cover.
// (arch.All's rows whose QEMU machine is Tested).
var Arches = arch.Where(func(a arch.Arch) bool { return a.QEMU.Tested })

// Binary returns arch's profile and the path of its QEMU binary.
func Binary(t testing.TB, arch string) (qemu.Profile, string) {
	t.Helper()
	p, err := qemu.Lookup(arch)
	if err != nil {
		t.Fatal(err)
	}
	return p, hosttool.Need(t, p.Binary, debPackage(p.Binary))
}

// Boot runs v under bin until QEMU exits (at most two minutes) and
// returns the console output and the run time.
func Boot(t testing.TB, v *qemu.VM, bin string) (string, time.Duration) {
	t.Helper()
	args, err := v.Args()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the VM did not stop within 2 minutes:\n%s", out.String())
	}
	t.Logf("%s: QEMU ran %v (%v)", v.Profile.Arch, d.Round(time.Millisecond), err)
	return out.String(), d
}

// debPackage is the Debian package of a qemu-system binary.
func debPackage(bin string) string {
	switch bin {
	case "qemu-system-x86_64", "qemu-system-i386":
		return "qemu-system-x86"
	case "qemu-system-aarch64", "qemu-system-arm":
		return "qemu-system-arm"
	}
	return "qemu-system-misc"
}
