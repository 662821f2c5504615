package solver

import (
	"encoding/binary"

	"github.com/alpinist/alpinist/apk"
)

// apk keeps names in a hash table of 20000 buckets keyed by
// murmur3_32(name, seed 5381); each bucket is a list with the newest name
// first. When apk opens its database it walks that table to record reverse
// dependencies, so their order, which decides some ties in the solver, is
// the table's order.
const nameBuckets = 20000

// murmur3 is apk's murmur3_32 on a little-endian machine.
func murmur3(key string, seed uint32) uint32 { return apk.Murmur3(key, seed, binary.LittleEndian) }

// hashOrder returns names (given in creation order) in the order apk's
// hash table enumerates them: by bucket, newest first within a bucket.
func hashOrder(names []*name) []*name {
	return apk.HashOrder(names, func(n *name) string { return n.name }, nameBuckets, binary.LittleEndian)
}
