package ext4

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc is ext4's crc32c(seed, p): the raw CRC, no inversion on either
// side (Go's crc32 inverts both).
func crc(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

func crcU32(seed, v uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return crc(seed, b[:])
}

// dirHash is the half-MD4 directory hash (EXT2_HASH_HALF_MD4_UNSIGNED)
// of name with the superblock's hash seed: the major hash (low bit
// cleared, as htree uses it) and the minor hash.
func dirHash(name []byte, seed [4]uint32) (uint32, uint32) {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	var in [8]uint32
	for p := name; ; p = p[32:] {
		str2hashbuf(p, in[:])
		halfMD4(&buf, &in)
		if len(p) <= 32 {
			break
		}
	}
	h := buf[1] &^ 1
	if h == 0x7fffffff<<1 {
		h = (0x7fffffff - 1) << 1
	}
	return h, buf[2]
}

// str2hashbuf packs up to len(buf)*4 bytes of msg (unsigned chars) into
// buf, padded, as e2fsprogs' str2hashbuf does.
func str2hashbuf(msg []byte, buf []uint32) {
	n := len(msg)
	pad := uint32(n) | uint32(n)<<8
	pad |= pad << 16
	val := pad
	num := len(buf)
	if n > num*4 {
		n = num * 4
	}
	j := 0
	for i := 0; i < n; i++ {
		val = uint32(msg[i]) + val<<8
		if i%4 == 3 {
			buf[j] = val
			j++
			val = pad
			num--
		}
	}
	num--
	if num >= 0 {
		buf[j] = val
		j++
	}
	for num--; num >= 0; num-- {
		buf[j] = pad
		j++
	}
}

func halfMD4(buf *[4]uint32, in *[8]uint32) {
	const k2, k3 = 013240474631, 015666365641
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	r := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s int) {
		*a = bits.RotateLeft32(*a+fn(b, c, d)+x, s)
	}
	r(f, &a, b, c, d, in[0], 3)
	r(f, &d, a, b, c, in[1], 7)
	r(f, &c, d, a, b, in[2], 11)
	r(f, &b, c, d, a, in[3], 19)
	r(f, &a, b, c, d, in[4], 3)
	r(f, &d, a, b, c, in[5], 7)
	r(f, &c, d, a, b, in[6], 11)
	r(f, &b, c, d, a, in[7], 19)
	r(g, &a, b, c, d, in[1]+k2, 3)
	r(g, &d, a, b, c, in[3]+k2, 5)
	r(g, &c, d, a, b, in[5]+k2, 9)
	r(g, &b, c, d, a, in[7]+k2, 13)
	r(g, &a, b, c, d, in[0]+k2, 3)
	r(g, &d, a, b, c, in[2]+k2, 5)
	r(g, &c, d, a, b, in[4]+k2, 9)
	r(g, &b, c, d, a, in[6]+k2, 13)
	r(h, &a, b, c, d, in[3]+k3, 3)
	r(h, &d, a, b, c, in[7]+k3, 9)
	r(h, &c, d, a, b, in[2]+k3, 11)
	r(h, &b, c, d, a, in[6]+k3, 15)
	r(h, &a, b, c, d, in[1]+k3, 3)
	r(h, &d, a, b, c, in[5]+k3, 9)
	r(h, &c, d, a, b, in[0]+k3, 11)
	r(h, &b, c, d, a, in[4]+k3, 15)
	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

// xattrHash is an extended attribute entry's e_hash.
func xattrHash(name, value []byte) uint32 {
	var h uint32
	for _, c := range name {
		h = h<<5 ^ h>>27 ^ uint32(c)
	}
	padded := make([]byte, (len(value)+3)&^3)
	copy(padded, value)
	for i := 0; i < len(padded); i += 4 {
		h = h<<16 ^ h>>16 ^ binary.LittleEndian.Uint32(padded[i:])
	}
	return h
}
