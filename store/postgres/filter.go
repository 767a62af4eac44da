package postgres

import (
	"math/bits"
	"slices"
	"sync"
)

// Key filters spare a full sync most of its duplicate probes.
//
// Every record committed must be checked for another record of the same
// module@version stored under another id (store.ErrDuplicate). That is one
// hash-index probe per record, which costs Postgres about a third of what
// the COPY of the record costs: in a full sync on two cores, the biggest
// use of CPU after the COPY itself.
//
// A key filter is a Bloom filter of the lookup keys of every record stored
// in a log. A key it does not hold is certainly not stored, so only the keys
// it may hold (about 1 in 100) are probed. It is trusted only while it
// describes exactly what is stored:
//
//   - it is started by a commit that finds the log without any record
//     (max_id -1), when being empty makes it exact;
//   - it is used only by a commit that holds the log's row and finds the
//     log's generation where the filter's last commit left it. Every commit
//     that stores records moves the generation, under that lock, so a commit
//     from anywhere else (another process) makes them differ, and the filter
//     is dropped;
//   - it learns a batch's keys once its COMMIT has succeeded, and is dropped
//     when a COMMIT's outcome is unknown.
//
// So a log synced from empty by one process is probed for about 1% of its
// records; any other log is probed for all. A filter grows with its log up
// to maxFilterBytes, and is dropped beyond.
type keyFilters struct {
	mu sync.Mutex
	m  map[int16]*keyFilter
}

// maxFilterBytes bounds one log's filter: 128 MiB, about 100 million
// records at 10 bits a key.
const maxFilterBytes = 128 << 20

// take returns the log's filter if it describes the log found at generation
// gen with highest record id maxID, or nil. A log without records gets a
// new filter. The caller holds the log's row.
func (fs *keyFilters) take(logID int16, gen, maxID int64) *keyFilter {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[logID]
	switch {
	case f != nil && f.gen == gen:
		return f
	case maxID < 0:
		if fs.m == nil {
			fs.m = make(map[int16]*keyFilter)
		}
		f = &keyFilter{gen: gen}
		fs.m[logID] = f
		return f
	default:
		delete(fs.m, logID)
		return nil
	}
}

// peek returns the log's filter if it describes the log found at generation
// gen with highest record id maxID, or nil. A log without records gets an
// empty filter of its own (take starts the log's filter at its commit). The
// caller does not hold the log's row: it must check the generation again
// once it does (take).
func (fs *keyFilters) peek(logID int16, gen, maxID int64) *keyFilter {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.m[logID]; f != nil && f.gen == gen {
		return f
	}
	if maxID < 0 {
		return &keyFilter{gen: gen}
	}
	return nil
}

// learn records a committed batch: it stored keys, and left the log at
// generation gen.
func (fs *keyFilters) learn(logID int16, f *keyFilter, gen int64, keys []int64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m[logID] != f {
		return
	}
	f.mu.Lock()
	for _, k := range keys {
		f.add(k)
	}
	size := f.bytes()
	f.mu.Unlock()
	if size > maxFilterBytes {
		delete(fs.m, logID)
		return
	}
	f.gen = gen
}

// drop forgets the log's filter if it is f.
func (fs *keyFilters) drop(logID int16, f *keyFilter) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m[logID] == f {
		delete(fs.m, logID)
	}
}

// keyFilter is a growing blocked Bloom filter over lookup keys: layers of
// doubling capacity, each sized for 10 bits a key (about 1% false
// positives when full), each key's bits in one 512-bit block (one cache
// line). Keys are mixed before they pick a block and again before they pick
// its bits, so that keys need not be uniform (lookup keys are, being SHA-256
// bits; test keys may not be).
type keyFilter struct {
	gen int64 // the log's generation as the filter's last commit left it

	// mu lets a staged batch's checker read the filter while a commit
	// elsewhere in the process teaches it (and then finds the filter out
	// of date at its own commit).
	mu     sync.RWMutex
	layers []filterLayer
}

type filterLayer struct {
	blocks [][8]uint64
	n, cap int
}

const (
	firstLayerKeys = 1 << 20
	bitsPerKey     = 10
	bitsPerKeySet  = 7
)

// add adds key; the caller holds f.mu, or is alone with f.
func (f *keyFilter) add(key int64) {
	if len(f.layers) == 0 || f.layers[len(f.layers)-1].n >= f.layers[len(f.layers)-1].cap {
		c := firstLayerKeys
		if len(f.layers) > 0 {
			c = 2 * f.layers[len(f.layers)-1].cap
		}
		f.layers = append(f.layers, filterLayer{blocks: make([][8]uint64, c*bitsPerKey/512), cap: c})
	}
	l := &f.layers[len(f.layers)-1]
	m := mix(key)
	b := &l.blocks[blockOf(m, len(l.blocks))]
	for h, i := mix(m), 0; i < bitsPerKeySet; i, h = i+1, h>>9 {
		b[(h>>6)&7] |= 1 << (h & 63)
	}
	l.n++
}

// mayHold reports whether key may have been added; false is certain.
func (f *keyFilter) mayHold(key int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.holds(key)
}

// maybeHeld removes from keys, in place, those certainly not added, and
// returns what is left: mayHold for a whole probe chunk under one lock.
func (f *keyFilter) maybeHeld(keys []int64) []int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.DeleteFunc(keys, func(k int64) bool { return !f.holds(k) })
}

// holds is mayHold; the caller holds f.mu.
func (f *keyFilter) holds(key int64) bool {
	m := mix(key)
	bitsOf := mix(m)
	for j := range f.layers {
		l := &f.layers[j]
		b := &l.blocks[blockOf(m, len(l.blocks))]
		hit := true
		for h, i := bitsOf, 0; i < bitsPerKeySet && hit; i, h = i+1, h>>9 {
			hit = b[(h>>6)&7]&(1<<(h&63)) != 0
		}
		if hit {
			return true
		}
	}
	return false
}

// bytes is the filter's size; the caller holds f.mu, or is alone with f.
func (f *keyFilter) bytes() int {
	n := 0
	for _, l := range f.layers {
		n += len(l.blocks) * 64
	}
	return n
}

// blockOf maps a mixed key onto [0, n) by its high bits.
func blockOf(m uint64, n int) int {
	hi, _ := bits.Mul64(m, uint64(n))
	return int(hi)
}

// mix is splitmix64's finalizer: every bit of the result depends on every
// bit of x.
func mix[T int64 | uint64](x T) uint64 {
	z := uint64(x) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
