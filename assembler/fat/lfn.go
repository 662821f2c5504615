package fat

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
)

// dirent is one name's directory entries: its 8.3 entry, preceded by
// VFAT long-name entries when the name does not fit 8.3
// (EFI/BOOT/BOOTRISCV64.EFI, BOOTLOONGARCH64.EFI).
type dirent struct {
	short [11]byte
	nt    uint8
	lfn   [][32]byte // in the order they are written (the last part first)
}

// checkName accepts a name that fits 8.3 or is a valid long name.
func checkName(name string) error {
	if _, _, err := shortName(name); err == nil {
		return nil
	}
	if len(name) == 0 || len(utf16.Encode([]rune(name))) > 255 || strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") || name == ".." {
		return fmt.Errorf("fat: %q is not a valid file name", name)
	}
	for _, c := range name {
		if c < ' ' || strings.ContainsRune(`"*/:<>?\|`, c) {
			return fmt.Errorf("fat: %q has a character a FAT name cannot", name)
		}
	}
	return nil
}

// dirents gives the entries of names, in order: an 8.3 name as it is,
// a long name its LFN entries and a short alias (BASIS~N.EXT) that no
// other name of the directory has, N counted up in the names' order, so
// that the same names give the same aliases.
func dirents(names []string) []dirent {
	out := make([]dirent, len(names))
	taken := map[[11]byte]bool{}
	for i, n := range names {
		if s, nt, err := shortName(n); err == nil {
			out[i] = dirent{short: s, nt: nt}
			taken[s] = true
		}
	}
	for i, n := range names {
		if _, _, err := shortName(n); err == nil {
			continue
		}
		base, ext := aliasParts(n)
		var s [11]byte
		for k := 1; ; k++ {
			tail := "~" + strconv.Itoa(k)
			copy(s[:], fmt.Sprintf("%-8s%-3s", base[:min(len(base), 8-len(tail))]+tail, ext))
			if !taken[s] {
				break
			}
		}
		taken[s] = true
		out[i] = dirent{short: s, lfn: lfnEntries(n, s)}
	}
	return out
}

// aliasParts are the short alias's basis and extension: upper case,
// without spaces and dots, characters 8.3 names cannot have as '_'.
func aliasParts(name string) (base, ext string) {
	clean := func(s string) string {
		var b strings.Builder
		for _, c := range strings.ToUpper(s) {
			switch {
			case c == ' ' || c == '.':
			case c > 0x7e || strings.ContainsRune(`+,;=[]`, c):
				b.WriteByte('_')
			default:
				b.WriteRune(c)
			}
		}
		return b.String()
	}
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = clean(name[:i]), clean(name[i+1:])
	} else {
		base = clean(name)
	}
	if base == "" {
		base = "_"
	}
	return base, ext[:min(len(ext), 3)]
}

// lfnEntries are a long name's entries: 13 UTF-16 units each, the name
// ended by a NUL and padded with 0xFFFF, each with the checksum of the
// short alias; the last part is written first, its ordinal marked 0x40.
func lfnEntries(name string, short [11]byte) [][32]byte {
	units := utf16.Encode([]rune(name))
	if len(units)%13 != 0 {
		units = append(units, 0)
	}
	for len(units)%13 != 0 {
		units = append(units, 0xFFFF)
	}
	var sum uint8
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	n := len(units) / 13
	out := make([][32]byte, n)
	for part := range n {
		var e [32]byte
		e[0] = byte(part + 1)
		if part == n-1 {
			e[0] |= 0x40
		}
		e[11], e[13] = 0x0F, sum
		u := units[part*13 : part*13+13]
		for j, off := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
			binary.LittleEndian.PutUint16(e[off:], u[j])
		}
		out[n-1-part] = e
	}
	return out
}

// entryCount is how many directory entries the names take.
func entryCount(ents []dirent) int {
	n := 0
	for _, e := range ents {
		n += 1 + len(e.lfn)
	}
	return n
}
