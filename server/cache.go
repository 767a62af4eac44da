package server

import (
	"hash/maphash"
	"sync"
)

// recordCache keeps recently served records in memory (and, in a second
// instance, full hash tiles, which never change either). A record never
// changes once it is below the served head (the log is append-only and every
// record was verified before it was stored), so entries need no
// invalidation; only found records are cached, since a missing one may
// arrive with the next sync. Lookups from build fleets are heavily skewed
// toward popular modules, so a modest cache answers most of them without a
// store round trip.
//
// It is sharded to keep lock contention low, and bounded. Each shard is a
// CLOCK: a ring of slots with a hand; a hit marks its slot, and to make room
// the hand moves on, clearing marks, to the first unmarked slot. An entry
// survives as long as it is used again within one turn of the hand, so
// popular modules stay through any stream of one-off lookups, at a fraction
// of LRU's bookkeeping.
type recordCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const cacheShards = 32

type cacheShard struct {
	mu    sync.Mutex
	index map[string]int // key -> slot
	ring  []cacheSlot
	hand  int
}

type cacheSlot struct {
	key  string
	rec  cachedRecord
	used bool
}

// cachedRecord is an entry: a lookup's answer without its tree head (id
// is the record's, data its id line, the record and the blank line, all
// checked before they were cached), or a full tile (data).
type cachedRecord struct {
	id   int64
	data []byte
}

// newRecordCache returns a cache of about n entries, or nil for n <= 0.
func newRecordCache(n int) *recordCache {
	if n <= 0 {
		return nil
	}
	per := max(1, n/cacheShards)
	c := &recordCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].index = make(map[string]int, per)
		c.shards[i].ring = make([]cacheSlot, 0, per)
	}
	return c
}

func (c *recordCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

func (c *recordCache) get(key string) (cachedRecord, bool) {
	if c == nil {
		return cachedRecord{}, false
	}
	return c.shard(key).get(key)
}

// getBytes is get for a key held in a byte slice (built without
// allocating a string for each lookup).
func (c *recordCache) getBytes(key []byte) (cachedRecord, bool) {
	if c == nil {
		return cachedRecord{}, false
	}
	sh := &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[string(key)] // no allocation: the compiler looks up the bytes
	if !ok {
		return cachedRecord{}, false
	}
	sh.ring[i].used = true
	return sh.ring[i].rec, true
}

func (sh *cacheShard) get(key string) (cachedRecord, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[key]
	if !ok {
		return cachedRecord{}, false
	}
	sh.ring[i].used = true
	return sh.ring[i].rec, true
}

func (c *recordCache) put(key string, r cachedRecord) {
	if c == nil {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, ok := sh.index[key]; ok {
		sh.ring[i].rec = r
		return
	}
	if len(sh.ring) < cap(sh.ring) {
		sh.index[key] = len(sh.ring)
		sh.ring = append(sh.ring, cacheSlot{key: key, rec: r})
		return
	}
	for sh.ring[sh.hand].used {
		sh.ring[sh.hand].used = false
		sh.hand = (sh.hand + 1) % len(sh.ring)
	}
	victim := &sh.ring[sh.hand]
	delete(sh.index, victim.key)
	*victim = cacheSlot{key: key, rec: r}
	sh.index[key] = sh.hand
	sh.hand = (sh.hand + 1) % len(sh.ring)
}

// appendLookupKey appends the key of a lookup in log of mod, the
// module@version exactly as the request spelled it (escaped): its answer
// is a function of those bytes alone, so an entry is found again without
// unescaping or checking them.
func appendLookupKey(dst []byte, log, mod string) []byte {
	dst = append(dst, log...)
	dst = append(dst, 0)
	return append(dst, mod...)
}

// getLookup returns the entry for a lookup of mod in log.
func (c *recordCache) getLookup(log, mod string) (cachedRecord, bool) {
	if c == nil {
		return cachedRecord{}, false
	}
	var buf [256]byte
	return c.getBytes(appendLookupKey(buf[:0], log, mod))
}

// putLookup keeps the answer to a lookup of mod in log: the record's id,
// and its id line, record and blank line in one slice (see cachedRecord).
func (c *recordCache) putLookup(log, mod string, r cachedRecord) {
	if c == nil {
		return
	}
	c.put(string(appendLookupKey(nil, log, mod)), r)
}
