package postgres

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestKeyIndex(t *testing.T) {
	// Keys that share their low 16 bits, one key twice (a 64-bit
	// collision between two records), and a key never added.
	keys := make([]int64, 1000)
	for i := range keys {
		keys[i] = int64(i)<<16 | 0x1234
	}
	keys[700] = keys[3]
	x := newKeyIndex(keys)
	for i := range keys {
		x.add(int32(i))
	}
	all := func(k int64) []int32 {
		var got []int32
		x.find(k, func(i int32) bool { got = append(got, i); return false })
		slices.Sort(got)
		return got
	}
	for i, k := range keys {
		want := []int32{int32(i)}
		if k == keys[3] {
			want = []int32{3, 700}
		}
		if got := all(k); !slices.Equal(got, want) {
			t.Fatalf("records with key %#x: %v, want %v", k, got, want)
		}
	}
	if got := all(-1); got != nil {
		t.Errorf("records with a key never added: %v", got)
	}
	if !x.find(keys[3], func(i int32) bool { return i == 700 }) {
		t.Errorf("find did not report the record it was asked to stop at")
	}
	if x.find(keys[3], func(int32) bool { return false }) {
		t.Errorf("find reported a record nothing stopped at")
	}
}

// BenchmarkCheckerIndex indexes a staged batch's 16,384 keys, as the
// checker does for every batch of a full sync: with keyIndex, and with the
// map it replaced.
func BenchmarkCheckerIndex(b *testing.B) {
	keys := make([]int64, 16384)
	for i := range keys {
		keys[i] = int64(rand.Uint64())
	}
	b.Run("keyIndex", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x := newKeyIndex(keys)
			for i := range keys {
				if x.find(keys[i], func(int32) bool { return true }) {
					b.Fatal("duplicate")
				}
				x.add(int32(i))
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := make(map[int64]int32, len(keys))
			for i, k := range keys {
				if _, ok := m[k]; ok {
					b.Fatal("duplicate")
				}
				m[k] = int32(i)
			}
		}
	})
}
