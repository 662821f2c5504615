package iso

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Firmware is what an ISO's El Torito catalog boots with.
type Firmware struct {
	// ISO: the image has an ISO 9660 primary volume descriptor.
	ISO bool
	// BIOS and EFI: it has a bootable entry for x86 BIOS, for UEFI.
	BIOS, EFI bool
}

// Detect reads an image's volume descriptors and El Torito catalog (r
// is untrusted: any bytes give an answer or an error, never a panic).
func Detect(r io.ReaderAt) (Firmware, error) {
	var fw Firmware
	sector := make([]byte, SectorSize)
	if _, err := r.ReadAt(sector, 16*SectorSize); err != nil {
		return fw, nil // too small for ISO 9660: not one
	}
	if sector[0] != 1 || string(sector[1:6]) != "CD001" {
		return fw, nil
	}
	fw.ISO = true
	// The volume descriptor set: a boot record before the terminator.
	for lba := int64(17); lba < 16+64; lba++ {
		if _, err := r.ReadAt(sector, lba*SectorSize); err != nil {
			return fw, fmt.Errorf("iso: volume descriptor %d: %w", lba, err)
		}
		if string(sector[1:6]) != "CD001" {
			return fw, fmt.Errorf("iso: volume descriptor %d has no CD001", lba)
		}
		switch sector[0] {
		case 255:
			return fw, nil
		case 0:
			if !bytes.HasPrefix(sector[7:39], []byte("EL TORITO SPECIFICATION")) {
				continue
			}
			return fw, readCatalog(r, int64(binary.LittleEndian.Uint32(sector[71:])), &fw)
		}
	}
	return fw, fmt.Errorf("iso: no volume descriptor set terminator in 64 sectors")
}

// readCatalog reads the El Torito catalog at lba for the platforms of
// its bootable entries.
func readCatalog(r io.ReaderAt, lba int64, fw *Firmware) error {
	cat := make([]byte, SectorSize)
	if _, err := r.ReadAt(cat, lba*SectorSize); err != nil {
		return fmt.Errorf("iso: boot catalog at %d: %w", lba, err)
	}
	if cat[0] != 1 || cat[30] != 0x55 || cat[31] != 0xAA {
		return fmt.Errorf("iso: boot catalog at %d: no validation entry", lba)
	}
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	if sum != 0 {
		return fmt.Errorf("iso: boot catalog at %d: validation entry checksum", lba)
	}
	mark := func(platform byte) {
		switch platform {
		case 0:
			fw.BIOS = true
		case 0xEF:
			fw.EFI = true
		}
	}
	if cat[32] == 0x88 {
		mark(cat[1])
	}
	for off := 64; off+32 <= len(cat); {
		h := cat[off : off+32]
		if h[0] != 0x90 && h[0] != 0x91 {
			return nil
		}
		n := int(binary.LittleEndian.Uint16(h[2:]))
		off += 32
		for i := 0; i < n && off+32 <= len(cat); i++ {
			if cat[off] == 0x88 {
				mark(h[1])
			}
			off += 32
			// Extension entries (0x44) follow an entry that has them.
			for off+32 <= len(cat) && cat[off] == 0x44 {
				off += 32
			}
		}
		if h[0] == 0x91 {
			return nil
		}
	}
	return nil
}
