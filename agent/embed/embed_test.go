package embed

import (
	"bytes"
	"debug/elf"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestAgent(t *testing.T) {
	for arch, machine := range map[string]elf.Machine{"x86_64": elf.EM_X86_64, "aarch64": elf.EM_AARCH64, "riscv64": elf.EM_RISCV} {
		b, err := Agent(arch)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s: agent is %v", arch, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: agent is dynamically linked", arch)
			}
		}
	}
	if _, err := Agent("mips"); err == nil {
		t.Error("mips accepted")
	}
}

// TestMakefileAgentSources: the Makefile rebuilds the embedded agents
// when any file they are built from changes, on every agent arch: its
// AGENT_SRC holds every file that go list -deps names (an edit to
// apk/apkfile once left a stale installer in the VM).
func TestMakefileAgentSources(t *testing.T) {
	make, err := exec.LookPath("make")
	if err != nil {
		t.Fatal("make is needed: apt-get install make")
	}
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	cmd := exec.Command(make, "-s", "--no-print-directory", "print-agent-src")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make print-agent-src: %v", err)
	}
	inMake := map[string]bool{}
	for _, f := range strings.Fields(string(out)) {
		if !filepath.IsAbs(f) {
			f = filepath.Join(root, f)
		}
		inMake[filepath.Clean(f)] = true
	}
	for _, goarch := range []string{"amd64", "arm64", "riscv64"} {
		files, err := Sources(root, goarch)
		if err != nil {
			t.Fatal(err)
		}
		var dirs []string
		for _, f := range files {
			if !inMake[filepath.Clean(f)] {
				t.Errorf("%s: %s is missing from the Makefile's AGENT_SRC", goarch, f)
			}
			dirs = append(dirs, filepath.Dir(f))
		}
		// The packages beyond agent/ that once were missed (internal/fsprobe
		// took assembler/ext4's place: the agent links no assembler code).
		for _, want := range []string{"apk/apkfile", "apk/db", "internal/fsprobe", "internal/atomicfile", "cmd/alpinist-agent"} {
			if !slices.ContainsFunc(dirs, func(d string) bool { return strings.HasSuffix(d, want) }) {
				t.Errorf("%s: no file of %s among the agent's sources", goarch, want)
			}
		}
	}
}

// TestPack: an agent packed as the build embeds it unpacks to the same
// bytes, is much smaller, and packs to the same bytes twice.
func TestPack(t *testing.T) {
	b, err := Agent("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	z, err := Pack(b)
	if err != nil {
		t.Fatal(err)
	}
	z2, _ := Pack(b)
	if !bytes.Equal(z, z2) {
		t.Error("two packs of one agent differ")
	}
	got, err := unpack(z)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("unpack: %d bytes, %v", len(got), err)
	}
	if len(z)*2 > len(b) {
		t.Errorf("packed %d of %d bytes", len(z), len(b))
	}
	t.Logf("%d bytes packed to %d", len(b), len(z))
	if _, err := unpack(z[:len(z)/2]); err == nil || !strings.Contains(err.Error(), "does not unpack") {
		t.Errorf("a cut agent: %v", err)
	}
}
