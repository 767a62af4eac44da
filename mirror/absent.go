package mirror

import (
	"sync"
	"time"
)

// DefaultAbsentTTL is how long a module@version the upstream answered 404
// or 410 for is remembered as absent (Config.AbsentTTL).
const DefaultAbsentTTL = time.Minute

// maxAbsent bounds the module@versions remembered as absent; beyond it the
// oldest are forgotten first.
const maxAbsent = 100_000

// absentCache remembers module@versions that the upstream said its log
// does not hold (404 or 410), for a while, so that a storm of lookups for
// one of them makes one upstream request. Only such verified-absent answers
// are remembered: errors (a timeout, a 5xx, a refusal) are asked again.
type absentCache struct {
	ttl   time.Duration
	now   func() time.Time
	mu    sync.Mutex
	until map[string]absentEntry
	order []string // keys in insertion order, for eviction
}

type absentEntry struct {
	until time.Time
	err   error // what the upstream's answer was made into
}

func newAbsentCache(ttl time.Duration) *absentCache {
	return &absentCache{ttl: ttl, now: time.Now, until: make(map[string]absentEntry)}
}

// get returns the error remembered for key, if it is still fresh.
func (a *absentCache) get(key string) (error, bool) {
	if a.ttl <= 0 {
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.until[key]
	if ok && a.now().After(e.until) {
		delete(a.until, key)
		return nil, false
	}
	return e.err, ok
}

// add remembers key as absent, with the error its lookup gave, for the
// cache's TTL.
func (a *absentCache) add(key string, err error) {
	if a.ttl <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if _, ok := a.until[key]; !ok {
		a.order = append(a.order, key)
	}
	a.until[key] = absentEntry{until: now.Add(a.ttl), err: err}
	// Forget expired and, beyond the bound, the oldest entries; order is
	// compacted as it is consumed, so it stays at most twice the map.
	for len(a.order) > 0 {
		k := a.order[0]
		e, ok := a.until[k]
		if ok && len(a.until) <= maxAbsent && !now.After(e.until) {
			break
		}
		if ok && (len(a.until) > maxAbsent || now.After(e.until)) {
			delete(a.until, k)
		}
		a.order = a.order[1:]
	}
	if cap(a.order) > 2*maxAbsent && len(a.order) < cap(a.order)/4 {
		a.order = append([]string(nil), a.order...)
	}
}
