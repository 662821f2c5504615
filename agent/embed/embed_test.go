package embed

import (
	"bytes"
	"debug/elf"
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
