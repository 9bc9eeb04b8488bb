package route

import (
	"encoding/binary"
	"math/bits"
)

// destIndex finds a destination's slot in Router.dests by its id. It is an
// open-addressing hash table of slot numbers with linear probing, kept at
// most half full: 8 to 16 bytes per destination where a Go map from NodeID
// to uint32 costs about 24, and a lookup reads one or two cache lines of
// the table and the destination it finds. Every routed packet and every
// update looks a destination up, and a router of a large mesh holds one
// entry per node, so both the time and the bytes matter.
//
// The ids themselves live in the destinations; the table holds only slot
// numbers plus one. Ids are SHA-256 output, but a node of the home could
// grind keys for ids that collide in a known hash, so the hash is keyed
// with a per-router secret.
type destIndex struct {
	table []uint32 // slot+1 of a destination; 0: empty
	count int
	key   uint64
}

// minIndexSize is the smallest table: a router with a few neighbours
// stays within one cache line or two.
const minIndexSize = 16

func newDestIndex(key uint64) destIndex {
	return destIndex{table: make([]uint32, minIndexSize), key: key}
}

// home is where id's probe sequence starts.
func (x *destIndex) home(id NodeID) int {
	hi, lo := bits.Mul64(binary.LittleEndian.Uint64(id[:])^x.key, 0x9E3779B97F4A7C15)
	return int((hi ^ lo) & uint64(len(x.table)-1))
}

func (x *destIndex) len() int { return x.count }

// get returns the slot of id in dests.
func (x *destIndex) get(dests []dest, id NodeID) (uint32, bool) {
	mask := len(x.table) - 1
	for i := x.home(id); ; i = (i + 1) & mask {
		s := x.table[i]
		if s == 0 {
			return 0, false
		}
		if dests[s-1].id == id {
			return s - 1, true
		}
	}
}

// put adds id, which is not in the table, at slot d; dests[d].id must
// already be id.
func (x *destIndex) put(dests []dest, id NodeID, d uint32) {
	if 2*(x.count+1) > len(x.table) {
		x.grow(dests)
	}
	x.insert(id, d)
	x.count++
}

func (x *destIndex) insert(id NodeID, d uint32) {
	mask := len(x.table) - 1
	i := x.home(id)
	for x.table[i] != 0 {
		i = (i + 1) & mask
	}
	x.table[i] = d + 1
}

func (x *destIndex) grow(dests []dest) {
	old := x.table
	x.table = make([]uint32, 2*len(old))
	for _, s := range old {
		if s != 0 {
			x.insert(dests[s-1].id, s-1)
		}
	}
}

// remove deletes id; dests must still hold the ids of every entry. The
// entries after it in its probe run move back so that no lookup needs
// tombstones (backward-shift deletion).
func (x *destIndex) remove(dests []dest, id NodeID) {
	mask := len(x.table) - 1
	i := x.home(id)
	for {
		s := x.table[i]
		if s == 0 {
			return
		}
		if dests[s-1].id == id {
			break
		}
		i = (i + 1) & mask
	}
	x.count--
	hole := i
	for j := (hole + 1) & mask; x.table[j] != 0; j = (j + 1) & mask {
		h := x.home(dests[x.table[j]-1].id)
		// The entry at j may fill the hole only if its home is not in
		// the cyclic range (hole, j]: else a lookup starting at its home
		// would stop at the hole before reaching it.
		if (j-h)&mask >= (j-hole)&mask {
			x.table[hole] = x.table[j]
			hole = j
		}
	}
	x.table[hole] = 0
}

// bytes is the table's size.
func (x *destIndex) bytes() int { return 4 * cap(x.table) }
