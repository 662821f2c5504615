package builder

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
	"github.com/alpinist/alpinist/qemu"
)

// TestBootKit makes the build VM's kit from the test repository's
// linux-virt of each arch: x86_64's kernel becomes the ELF booted
// through PVH (x86's too), armv7's and armhf's their Image in a uImage,
// aarch64's stays as the package has it. keep puts both
// files into the boot cache while the kit's own files stay usable;
// close leaves nothing temporary; the next lookup finds the entry.
func TestBootKit(t *testing.T) {
	repo := testrepo.Generated(t)
	keys, err := sign.LoadKeyring(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	agent := []byte("#!/bin/sh\n")
	for _, c := range []struct {
		arch, form string
	}{
		{"x86_64", formPVH},
		{"x86", formPVH}, // 686-pae's xz payload has the x86 BCJ filter
		{"armv7", formUImage},
		{"armhf", formUImage},
		{"aarch64", formPackage},
	} {
		t.Run(c.arch, func(t *testing.T) {
			pkgs, _ := filepath.Glob(filepath.Join(repo, "main", c.arch, "linux-virt-*.apk"))
			if len(pkgs) != 1 {
				t.Fatalf("linux-virt for %s: %v", c.arch, pkgs)
			}
			dir := filepath.Join(t.TempDir(), "boot")
			const key = "0123456789abcdef0123456789abcdef"
			if cachedBootKit(dir, key) != nil {
				t.Fatal("an empty boot cache has a kit")
			}
			prof, err := qemu.Lookup(c.arch)
			if err != nil {
				t.Fatal(err)
			}
			k, err := makeBootKit(pkgs[0], keys, agent, prof, dir, key, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if k.form != c.form || kernelForm(k.kernel) != c.form {
				t.Errorf("form %s, the kernel's is %s; want %s", k.form, kernelForm(k.kernel), c.form)
			}
			k.keep(slog.New(slog.DiscardHandler))
			<-k.kept
			for _, p := range []string{k.kernel, k.initrd} {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("the booting VM's file is gone: %v", err)
				}
			}
			k.close()
			ents, _ := os.ReadDir(dir)
			if len(ents) != 2 {
				t.Errorf("the boot cache holds %v", ents)
			}
			got := cachedBootKit(dir, key)
			if got == nil || got.form != c.form || got.tmp != "" {
				t.Fatalf("the kit kept is not found: %+v", got)
			}
			entries, leftovers, err := BootEntries(filepath.Dir(dir))
			if err != nil || len(entries) != 1 || entries[0].Form != c.form || entries[0].Size == 0 || len(leftovers) != 0 {
				t.Errorf("BootEntries = %+v, %v, %v", entries, leftovers, err)
			}
			if err := RemoveBoot(filepath.Dir(dir), key); err != nil || cachedBootKit(dir, key) != nil {
				t.Errorf("RemoveBoot: %v", err)
			}
		})
	}
}

// TestBootKitFails: a kernel package that does not verify makes no kit
// and leaves nothing in the boot cache.
func TestBootKitFails(t *testing.T) {
	repo := testrepo.Generated(t)
	keys, err := sign.LoadKeyring(filepath.Join(repo, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs, _ := filepath.Glob(filepath.Join(repo, "main", "x86_64", "linux-virt-*.apk"))
	data, err := os.ReadFile(pkgs[0])
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "linux-virt.apk")
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "boot")
	if _, err := makeBootKit(bad, keys, []byte("agent"), qemu.Profiles["x86_64"], dir, "0123456789abcdef0123", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a corrupt kernel package made a kit")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the boot cache holds %v", ents)
	}
}
