package postgres

import "math/rand/v2"

// keyIndex finds a batch's records by lookup key, for the checker: which
// record of the batch a probe's answer names, and whether a module@version
// is in the batch twice.
//
// It is an open-addressing table of record indexes (plus one; zero is an
// empty slot) with linear probing, at most half full, allocated once for
// the whole batch. A Go map of the same keys, grown or sized per batch, was
// the checker's largest cost in a full sync's profile (hashing, group
// matching, and clearing a fresh map of 16,384 entries for every batch).
//
// Slots are picked by the key mixed with a seed of the index's own: lookup
// keys are SHA-256 bits, but an upstream can cheaply pick records whose
// keys share their low bits, and without the seed it could not know which
// bits pick the slot.
type keyIndex struct {
	keys  []int64 // the batch's keys, by record
	slots []int32 // record index + 1, or 0
	mask  uint64
	seed  uint64
}

// newKeyIndex returns an empty index for up to len(keys) records, whose
// keys are keys[i] (filled in before each record is added).
func newKeyIndex(keys []int64) *keyIndex {
	size := 16
	for size < 2*len(keys) {
		size *= 2
	}
	return &keyIndex{keys: keys, slots: make([]int32, size), mask: uint64(size - 1), seed: rand.Uint64()}
}

func (x *keyIndex) slot(k int64) uint64 {
	return mix(uint64(k)^x.seed) & x.mask
}

// add indexes record i under its key. Each record is added at most once.
func (x *keyIndex) add(i int32) {
	s := x.slot(x.keys[i])
	for x.slots[s] != 0 {
		s = (s + 1) & x.mask
	}
	x.slots[s] = i + 1
}

// find calls f with each record added under key k, in no particular order,
// until f returns true; it reports whether one did.
func (x *keyIndex) find(k int64, f func(i int32) bool) bool {
	for s := x.slot(k); x.slots[s] != 0; s = (s + 1) & x.mask {
		if i := x.slots[s] - 1; x.keys[i] == k && f(i) {
			return true
		}
	}
	return false
}
