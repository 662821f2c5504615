package apk

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
)

// Murmur3 is apk's murmur3_32 (src/blob.c), the hash of its hash tables
// (names, directories, files). apk reads the key's 32-bit blocks in its
// machine's byte order: order says which.
func Murmur3(key string, seed uint32, order binary.ByteOrder) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	h := seed
	n := len(key)
	i := 0
	var block [4]byte
	for ; i+4 <= n; i += 4 {
		copy(block[:], key[i:i+4])
		k := order.Uint32(block[:])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)*5 + 0xe6546b64
	}
	var k uint32
	switch n & 3 {
	case 3:
		k ^= uint32(key[i+2]) << 16
		fallthrough
	case 2:
		k ^= uint32(key[i+1]) << 8
		fallthrough
	case 1:
		k ^= uint32(key[i])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(n)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// HashOrder returns items, given in the order they were inserted, in the
// order apk_hash_foreach visits a table of buckets keyed by
// Murmur3(key, 5381): by bucket, and within a bucket the latest inserted
// first (apk adds at a list's head).
func HashOrder[T any](items []T, key func(T) string, buckets uint32, order binary.ByteOrder) []T {
	type entry struct {
		bucket uint32
		seq    int
	}
	es := make([]entry, len(items))
	for i, it := range items {
		es[i] = entry{Murmur3(key(it), 5381, order) % buckets, i}
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := cmp.Compare(a.bucket, b.bucket); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	out := make([]T, len(es))
	for i, e := range es {
		out[i] = items[e.seq]
	}
	return out
}
