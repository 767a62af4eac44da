package server

import (
	"hash/maphash"
	"sync"
)

// recordCache keeps recently served records in memory. A record never
// changes once it is below the served head (the log is append-only and every
// record was verified before it was stored), so entries need no
// invalidation; only found records are cached, since a missing one may
// arrive with the next sync. Lookups from build fleets are heavily skewed
// toward popular modules, so a modest cache answers most of them without a
// store round trip.
//
// It is sharded to keep lock contention low, and bounded: when a shard is
// full, an arbitrary entry (Go's map iteration order) makes room, which for
// skewed traffic behaves close to LRU at a fraction of the bookkeeping.
type recordCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
	per    int // entries per shard
}

const cacheShards = 32

type cacheShard struct {
	mu sync.Mutex
	m  map[string]cachedRecord
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
	c := &recordCache{seed: maphash.MakeSeed(), per: max(1, n/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cachedRecord)
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
	r, ok := sh.m[key]
	sh.mu.Unlock()
	return r, ok
}

func (c *recordCache) put(key string, r cachedRecord) {
	if c == nil {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.per {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[key] = r
	sh.mu.Unlock()
}

// cacheKey names path@version in log.
func cacheKey(log, path, version string) string {
	return log + "\x00" + path + "@" + version
}
