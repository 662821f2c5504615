// Package pvh takes the kernel ELF out of an x86 bzImage so that QEMU
// boots it through its PVH entry point instead.
//
// A bzImage is a real-mode setup, a decompressor and the compressed
// kernel (the payload). Booted as it is, QEMU runs SeaBIOS's Linux loader
// and the kernel's own decompressor, which under TCG is emulated: 0.3 to
// 0.4 s of every build VM's boot on this project's machine. A kernel
// built with CONFIG_PVH (Alpine's linux-virt and Debian's kernels are)
// carries a Xen PVH entry note, and QEMU's -kernel loads such an ELF
// directly into the guest's memory and jumps to it in 32-bit mode. The
// payload is that ELF, compressed: it is decompressed here, natively.
//
// The payload's place is in the boot protocol's setup header (protocol
// 2.08 and later: payload_offset, payload_length); its format is known
// by its magic (gzip, xz, zstd, LZ4's legacy frame, bzip2), and the
// kernel's build appends the decompressed size, which is checked.
package pvh

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/alpinist/alpinist/internal/kcomp"
	"github.com/alpinist/alpinist/internal/sparse"
)

// ErrNotPVH is Extract's error for a kernel it cannot boot through PVH:
// not a bzImage, an old boot protocol, a payload compressed in a format
// not read here (LZMA, LZO), or an ELF without the PVH entry note. The
// caller boots the image as it is.
var ErrNotPVH = errors.New("not a bzImage with a PVH entry")

// MaxSize bounds the decompressed kernel: the size the payload claims
// is checked against it before anything is decompressed.
const MaxSize = kcomp.MaxSize

// xenNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the PVH entry point.
const xenNotePhys32Entry = 18

// Extract writes the kernel ELF inside the bzImage r (size bytes) to w
// and returns its size. It fails with ErrNotPVH (wrapped, with the
// reason) for an image that is not a bzImage or whose payload it cannot
// read; whether the ELF has the PVH entry is HasEntry's to say.
func Extract(r io.ReaderAt, size int64, w io.Writer) (int64, error) {
	return extract(r, size, func(dec io.Reader) (int64, error) { return io.Copy(w, dec) })
}

// extract decompresses the payload of the bzImage r into copyOut, and
// checks the size copyOut gives against the size the image claims.
func extract(r io.ReaderAt, size int64, copyOut func(io.Reader) (int64, error)) (int64, error) {
	off, n, err := payload(r, size)
	if err != nil {
		return 0, err
	}
	var magic [6]byte
	if _, err := r.ReadAt(magic[:], off); err != nil {
		return 0, fmt.Errorf("%w: reading the payload: %v", ErrNotPVH, err)
	}
	var trailer [4]byte
	if _, err := r.ReadAt(trailer[:], off+n-4); err != nil {
		return 0, fmt.Errorf("%w: reading the payload: %v", ErrNotPVH, err)
	}
	want := int64(binary.LittleEndian.Uint32(trailer[:]))
	if want > MaxSize {
		return 0, fmt.Errorf("%w: the payload claims %d bytes decompressed (at most %d)", ErrNotPVH, want, MaxSize)
	}
	// The compressed stream, without the size the build appended.
	dec, closeDec, err := kcomp.Reader(magic[:], io.NewSectionReader(r, off, n-4))
	if errors.Is(err, kcomp.ErrFormat) {
		return 0, fmt.Errorf("%w: the payload: %v", ErrNotPVH, err)
	}
	if err != nil {
		return 0, err
	}
	defer closeDec()
	got, err := copyOut(io.LimitReader(dec, want+1))
	if err != nil {
		return got, fmt.Errorf("decompressing the kernel: %w", err)
	}
	if got != want {
		return got, fmt.Errorf("decompressing the kernel: %d bytes, but the image says %d", got, want)
	}
	return got, nil
}

// payload finds the compressed kernel in a bzImage's setup header.
func payload(r io.ReaderAt, size int64) (off, n int64, err error) {
	var hdr [0x250]byte
	if size < int64(len(hdr)) {
		return 0, 0, fmt.Errorf("%w: %d bytes is too short for a bzImage", ErrNotPVH, size)
	}
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrNotPVH, err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return 0, 0, fmt.Errorf("%w: no Linux boot header (HdrS)", ErrNotPVH)
	}
	if v := binary.LittleEndian.Uint16(hdr[0x206:]); v < 0x208 {
		return 0, 0, fmt.Errorf("%w: boot protocol %d.%02d has no payload fields (2.08)", ErrNotPVH, v>>8, v&0xff)
	}
	setup := int64(hdr[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := (setup + 1) * 512
	off = start + int64(binary.LittleEndian.Uint32(hdr[0x248:]))
	n = int64(binary.LittleEndian.Uint32(hdr[0x24c:]))
	if n < 10 || off < start || off+n > size {
		return 0, 0, fmt.Errorf("%w: payload at %d, %d bytes, outside the %d-byte image", ErrNotPVH, off, n, size)
	}
	return off, n, nil
}

// HasEntry says whether the ELF r is an x86 kernel with a PVH entry
// note, which QEMU needs to boot it.
func HasEntry(r io.ReaderAt) (bool, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return false, fmt.Errorf("the decompressed kernel is not an ELF: %w", err)
	}
	if f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_386 {
		return false, nil
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > 1<<20 {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			return false, fmt.Errorf("the kernel's notes: %w", err)
		}
		if hasXenNote(data, f.ByteOrder, xenNotePhys32Entry) {
			return true, nil
		}
	}
	return false, nil
}

// hasXenNote walks ELF notes (namesz, descsz, type, name, desc; 4-byte
// aligned) for a "Xen" note of type typ.
func hasXenNote(data []byte, bo binary.ByteOrder, typ uint32) bool {
	for len(data) >= 12 {
		namesz, descsz, t := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
		data = data[12:]
		nameEnd := (uint64(namesz) + 3) &^ 3
		descEnd := nameEnd + (uint64(descsz)+3)&^3
		if descEnd > uint64(len(data)) {
			return false
		}
		if t == typ && namesz >= 3 && string(data[:3]) == "Xen" {
			return true
		}
		data = data[descEnd:]
	}
	return false
}

// Convert writes the kernel ELF of the bzImage file src to dst and says
// whether it boots through PVH. When it cannot (ErrNotPVH, or an ELF
// without the entry note) it returns false and leaves no dst; any other
// error is an error. dst is not synced: it is for the VM about to boot.
func Convert(src, dst string) (bool, error) {
	return kcomp.UnpackFile(src, dst, func(in *os.File, size int64, out *os.File) (bool, error) {
		// A kernel is 40% zeros (its .bss, alignment): left as holes, and
		// the segments' zero tails made memory size only.
		tr := &trimmer{w: out}
		n, err := extract(in, size, func(dec io.Reader) (int64, error) { return sparse.Copy(tr, 0, dec) })
		if err != nil {
			if errors.Is(err, ErrNotPVH) {
				return false, nil
			}
			return false, fmt.Errorf("%s: %w", src, err)
		}
		if cut, err := tr.finish(); err != nil {
			return false, err
		} else if cut > 0 {
			n = cut
		}
		if err := out.Truncate(n); err != nil {
			return false, err
		}
		ok, err := HasEntry(out)
		if err != nil {
			return false, fmt.Errorf("%s: %w", src, err)
		}
		return ok, nil
	})
}
