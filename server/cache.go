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
	sh := c.shard(key)
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

// cacheKey names path@version in log.
func cacheKey(log, path, version string) string {
	return log + "\x00" + path + "@" + version
}
