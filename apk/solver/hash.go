package solver

import (
	"encoding/binary"
	"math/bits"
	"sort"
)

// apk keeps names in a hash table of 20000 buckets keyed by
// murmur3_32(name, seed 5381); each bucket is a list with the newest name
// first. When apk opens its database it walks that table to record reverse
// dependencies, so their order, which decides some ties in the solver, is
// the table's order.
const nameBuckets = 20000

// murmur3 is apk's murmur3_32 (src/blob.c) on a little-endian machine.
func murmur3(key string, seed uint32) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	h := seed
	n := len(key)
	i := 0
	for ; i+4 <= n; i += 4 {
		k := binary.LittleEndian.Uint32([]byte(key[i : i+4]))
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

// hashOrder returns names (given in creation order) in the order apk's
// hash table enumerates them: by bucket, newest first within a bucket.
func hashOrder(names []*name) []*name {
	type entry struct {
		bucket uint32
		n      *name
	}
	es := make([]entry, len(names))
	for i, n := range names {
		es[i] = entry{murmur3(n.name, 5381) % nameBuckets, n}
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].bucket != es[j].bucket {
			return es[i].bucket < es[j].bucket
		}
		return es[i].n.id > es[j].n.id
	})
	out := make([]*name, len(es))
	for i, e := range es {
		out[i] = e.n
	}
	return out
}
