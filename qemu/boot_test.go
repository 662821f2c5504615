package qemu_test

import (
	"strings"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/qemu"
)

// TestBootKernelTCG boots each tested profile's kernel from the generated
// repository under TCG with no initramfs: it must start, find no root
// filesystem, panic and (panic=-1, -no-reboot) make QEMU exit.
func TestBootKernelTCG(t *testing.T) {
	for _, arch := range vmtest.Arches {
		t.Run(arch, func(t *testing.T) {
			p, bin := vmtest.Binary(t, arch)
			// quiet hides the banner; loglevel brings the panic back.
			p.BootArgs = append([]string{"loglevel=4"}, p.BootArgs[1:]...)
			v := &qemu.VM{Profile: p, Accel: "tcg", MemoryMiB: 256, Kernel: testrepo.Extract(t, arch, "linux-virt", "boot/vmlinuz-virt"),
				Cmdline: []string{"root=/dev/nonexistent"}}
			out, _ := vmtest.Boot(t, v, bin)
			if !strings.Contains(out, "Kernel panic") {
				t.Errorf("no kernel panic on the console:\n%s", out)
			}
		})
	}
}
