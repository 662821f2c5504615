package pvh

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/alpinist/alpinist/internal/testkit/kerneltest"
	"github.com/alpinist/alpinist/internal/testkit/testrepo"
)

// kernelELF is a minimal x86_64 ELF whose one program header is a note
// segment: the PVH entry note when pvh, else another Xen note. pad
// bytes follow, standing for the kernel's code.
func kernelELF(pvh bool, pad int) []byte {
	typ := uint32(xenNotePhys32Entry)
	if !pvh {
		typ = 6 // XEN_ELFNOTE_GUEST_OS
	}
	var note bytes.Buffer
	binary.Write(&note, binary.LittleEndian, []uint32{4, 8, typ})
	note.WriteString("Xen\x00")
	binary.Write(&note, binary.LittleEndian, uint64(0x1000000))
	var b bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_NOTE), Off: 120, Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4})
	b.Write(note.Bytes())
	for i := range pad {
		b.WriteByte(byte(i * 7))
	}
	return b.Bytes()
}

// bzImage wraps a compressed payload as a bzImage: setup sectors with
// the boot header, the protected-mode part with a stand-in decompressor,
// the payload and the decompressed size after it.
func bzImage(payload []byte, size int, version uint16) []byte {
	const setupSects = 3
	img := make([]byte, (setupSects+1)*512+256) // the setup, then 256 bytes of "decompressor"
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], version)
	binary.LittleEndian.PutUint32(img[0x248:], 256)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)+4))
	img = append(img, payload...)
	return binary.LittleEndian.AppendUint32(img, uint32(size))
}

func TestExtract(t *testing.T) {
	want := kernelELF(true, 300000)
	for _, format := range kerneltest.Formats {
		t.Run(format, func(t *testing.T) {
			img := bzImage(kerneltest.Compress(t, format, want), len(want), 0x20f)
			var out bytes.Buffer
			n, err := Extract(bytes.NewReader(img), int64(len(img)), &out)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("%d bytes out, not the kernel's %d", n, len(want))
			}
			if ok, err := HasEntry(bytes.NewReader(out.Bytes())); !ok || err != nil {
				t.Errorf("HasEntry = %v, %v", ok, err)
			}
		})
	}
}

// TestExtractRejects: what cannot boot through PVH is ErrNotPVH (the
// build boots the image as it is); a payload that is corrupt is another
// error.
func TestExtractRejects(t *testing.T) {
	k := kernelELF(true, 1000)
	good := bzImage(kerneltest.Compress(t, "gzip", k), len(k), 0x20f)
	lzo := bzImage(append([]byte{0x89, 'L', 'Z', 'O', 0, 0x0d}, make([]byte, 50)...), 100, 0x20f)
	noMagic := bytes.Clone(good)
	copy(noMagic[0x202:], "NoPe")
	corrupt := bytes.Clone(good)
	for i := len(good) - 60; i < len(good)-20; i++ {
		corrupt[i] ^= 0x5a
	}
	outside := bytes.Clone(good)
	binary.LittleEndian.PutUint32(outside[0x24c:], 1<<30)
	for _, c := range []struct {
		name  string
		img   []byte
		notPV bool
	}{
		{"short", good[:100], true},
		{"no boot header", noMagic, true},
		{"protocol 2.06", bzImage(kerneltest.Compress(t, "gzip", k), len(k), 0x206), true},
		{"payload outside the image", outside, true},
		{"LZO", lzo, true},
		{"too big", bzImage(kerneltest.Compress(t, "gzip", k), MaxSize+1, 0x20f), true},
		{"size differs", bzImage(kerneltest.Compress(t, "gzip", k), len(k)+1, 0x20f), false},
		{"corrupt", corrupt, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Extract(bytes.NewReader(c.img), int64(len(c.img)), io.Discard)
			if err == nil || errors.Is(err, ErrNotPVH) != c.notPV {
				t.Errorf("err = %v, want ErrNotPVH %v", err, c.notPV)
			}
		})
	}
}

func TestConvert(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		img  []byte
		ok   bool
	}{
		{"pvh", bzImage(kerneltest.Compress(t, "zstd", kernelELF(true, 5000)), len(kernelELF(true, 5000)), 0x20f), true},
		{"no entry note", bzImage(kerneltest.Compress(t, "zstd", kernelELF(false, 5000)), len(kernelELF(false, 5000)), 0x20f), false},
		{"not a bzImage", kernelELF(true, 5000), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, dst := filepath.Join(dir, c.name), filepath.Join(dir, c.name+".elf")
			if err := os.WriteFile(src, c.img, 0o644); err != nil {
				t.Fatal(err)
			}
			ok, err := Convert(src, dst)
			if err != nil || ok != c.ok {
				t.Fatalf("Convert = %v, %v; want %v", ok, err, c.ok)
			}
			if _, err := os.Stat(dst); (err == nil) != c.ok {
				t.Errorf("the ELF is there: %v, want %v", err == nil, c.ok)
			}
		})
	}
}

// TestConvertRealKernel takes the ELF out of the test repository's
// x86_64 linux-virt (Debian's kernel, LZ4) and finds its PVH entry.
func TestConvertRealKernel(t *testing.T) {
	src := testrepo.Extract(t, "x86_64", "linux-virt", "boot/vmlinuz-virt")
	dst := filepath.Join(t.TempDir(), "vmlinux")
	ok, err := Convert(src, dst)
	if err != nil || !ok {
		t.Fatalf("Convert = %v, %v", ok, err)
	}
	f, err := elf.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("machine %v, type %v", f.Machine, f.Type)
	}
}

func FuzzExtract(f *testing.F) {
	k := kernelELF(true, 2000)
	for _, format := range kerneltest.Formats {
		f.Add(bzImage(kerneltest.Compress(f, format, k), len(k), 0x20f))
	}
	f.Add(k)
	f.Fuzz(func(t *testing.T, img []byte) {
		var out bytes.Buffer
		n, err := Extract(bytes.NewReader(img), int64(len(img)), &out)
		if err == nil && n != int64(out.Len()) {
			t.Fatalf("said %d bytes, wrote %d", n, out.Len())
		}
		HasEntry(bytes.NewReader(img))
		HasEntry(bytes.NewReader(out.Bytes()))
	})
}

// segmentedELF is an ELF (64- or 32-bit) with the PVH note in a note
// segment and one loadable segment at 0x1000: a block of code, a zero
// block, another block of code, then tailBlocks zero blocks (a .bss as
// a kernel's build leaves it in the file), and section headers after.
func segmentedELF(wide bool, tailBlocks int) []byte {
	const blk, segOff = 4096, 0x1000
	seg := make([]byte, (3+tailBlocks)*blk)
	for i := range blk {
		seg[i], seg[2*blk+i] = byte(i|1), byte(i|2)
	}
	var note bytes.Buffer
	binary.Write(&note, binary.LittleEndian, []uint32{4, 4, xenNotePhys32Entry})
	note.WriteString("Xen\x00\x00\x00\x00\x01")
	var b bytes.Buffer
	shoff := uint64(segOff + len(seg))
	if wide {
		h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1, Phoff: 64, Shoff: shoff, Ehsize: 64, Phentsize: 56, Phnum: 2, Shentsize: 64, Shnum: 1}
		copy(h.Ident[:], elf.ELFMAG)
		h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
		binary.Write(&b, binary.LittleEndian, h)
		binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_NOTE), Off: 176, Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4})
		binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_LOAD), Off: segOff, Paddr: 0x100000, Filesz: uint64(len(seg)), Memsz: uint64(len(seg)) + blk, Align: blk})
	} else {
		h := elf.Header32{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_386), Version: 1, Phoff: 52, Shoff: uint32(shoff), Ehsize: 52, Phentsize: 32, Phnum: 2, Shentsize: 40, Shnum: 1}
		copy(h.Ident[:], elf.ELFMAG)
		h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS32), byte(elf.ELFDATA2LSB), 1
		binary.Write(&b, binary.LittleEndian, h)
		binary.Write(&b, binary.LittleEndian, elf.Prog32{Type: uint32(elf.PT_NOTE), Off: 116, Filesz: uint32(note.Len()), Memsz: uint32(note.Len()), Align: 4})
		binary.Write(&b, binary.LittleEndian, elf.Prog32{Type: uint32(elf.PT_LOAD), Off: segOff, Paddr: 0x100000, Filesz: uint32(len(seg)), Memsz: uint32(len(seg)) + blk, Align: blk})
	}
	b.Write(note.Bytes())
	b.Write(make([]byte, segOff-b.Len()))
	b.Write(seg)
	b.Write(make([]byte, 64)) // a zero section header
	return b.Bytes()
}

// TestConvertTrims: a loadable segment's zero tail becomes memory size
// only, the section headers are cut off, and the bytes QEMU loads are
// the same.
func TestConvertTrims(t *testing.T) {
	for _, wide := range []bool{true, false} {
		t.Run(map[bool]string{true: "ELF64", false: "ELF32"}[wide], func(t *testing.T) {
			k := segmentedELF(wide, 5)
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "bzImage"), filepath.Join(dir, "vmlinux")
			if err := os.WriteFile(src, bzImage(kerneltest.Compress(t, "zstd", k), len(k), 0x20f), 0o644); err != nil {
				t.Fatal(err)
			}
			if ok, err := Convert(src, dst); !ok || err != nil {
				t.Fatalf("Convert = %v, %v", ok, err)
			}
			f, err := elf.Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			load := f.Progs[1]
			if load.Filesz != 3*4096 || load.Memsz != 9*4096 || len(f.Sections) != 0 {
				t.Errorf("filesz %d, memsz %d, %d sections; want 12288, 36864, 0", load.Filesz, load.Memsz, len(f.Sections))
			}
			got := make([]byte, load.Filesz)
			if _, err := load.ReadAt(got, 0); err != nil || !bytes.Equal(got, k[0x1000:0x1000+3*4096]) {
				t.Errorf("the segment's bytes differ: %v", err)
			}
			if st, _ := os.Stat(dst); st.Size() != 0x1000+3*4096 {
				t.Errorf("the file is %d bytes, want %d", st.Size(), 0x1000+3*4096)
			}
			in, _ := os.Open(dst)
			defer in.Close()
			if ok, err := HasEntry(in); !ok || err != nil {
				t.Errorf("HasEntry after trimming = %v, %v", ok, err)
			}
		})
	}
}
