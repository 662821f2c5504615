package kmod

import (
	"slices"
	"strings"
	"testing"
)

func TestModulesDep(t *testing.T) {
	md, err := ParseModulesDep(strings.NewReader("kernel/a.ko.gz: kernel/b.ko.gz kernel/c.ko.gz\nkernel/b.ko.gz: kernel/c.ko.gz\nkernel/c.ko.gz:\nkernel/virtio-x.ko.xz:\n"))
	if err != nil {
		t.Fatal(err)
	}
	order, err := md.LoadOrder([]string{"a", "virtio-x", "b", "builtin_one"}, map[string]bool{"builtin_one": true})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "kernel/c.ko.gz kernel/b.ko.gz kernel/a.ko.gz kernel/virtio-x.ko.xz" {
		t.Errorf("order %s", got)
	}
	if got := md.Waves(order); !slices.Equal(got, []int{0, 1, 2, 0}) {
		t.Errorf("waves %v", got)
	}
	if _, err := md.LoadOrder([]string{"nope"}, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing module: %v", err)
	}
	if _, err := ParseModulesDep(strings.NewReader("garbage\n")); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := Decompress("x.ko.bz2", nil); err == nil {
		t.Error("unknown compression accepted")
	}
}

func FuzzModulesDep(f *testing.F) {
	f.Add("kernel/a.ko.gz: kernel/b.ko.gz\nkernel/b.ko.gz:\n", "a")
	f.Fuzz(func(t *testing.T, dep, want string) {
		md, err := ParseModulesDep(strings.NewReader(dep))
		if err != nil {
			return
		}
		order, err := md.LoadOrder(strings.Fields(want), nil)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, p := range order {
			if seen[p] {
				t.Fatalf("%s twice in %v", p, order)
			}
			seen[p] = true
		}
		// A module's wave is above every earlier dependency's.
		waves := md.Waves(order)
		for i, p := range order {
			for j, q := range order[:i] {
				if slices.Contains(md.Deps[ModName(p)], q) && waves[j] >= waves[i] {
					t.Fatalf("%s (wave %d) depends on %s (wave %d)", p, waves[i], q, waves[j])
				}
			}
		}
	})
}

// TestAddBuiltinModinfo: modules.builtin.modinfo's records name built-in
// code that modules.builtin misses (s390x's virtio_ccw).
func TestAddBuiltinModinfo(t *testing.T) {
	b := ParseBuiltin([]byte("kernel/fs/ext4/ext4.ko\n"))
	AddBuiltinModinfo(b, []byte("virtio_ccw.parm=no_auto:list of ccw bus id ranges\x00virtio_ccw.parmtype=no_auto:charp\x00crc-t10dif.license=GPL\x00\x00=x\x00"))
	for _, m := range []string{"ext4", "virtio_ccw", "crc_t10dif"} {
		if !b[m] {
			t.Errorf("%s is not built in: %v", m, b)
		}
	}
	if len(b) != 3 {
		t.Errorf("%d built in: %v", len(b), b)
	}
}
