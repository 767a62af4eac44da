package server

import (
	"fmt"
	"strconv"
	"testing"
)

func TestRecordCacheBounded(t *testing.T) {
	c := newRecordCache(cacheShards * 10)
	for i := 0; i < 10000; i++ {
		c.put(fmt.Sprint("k", i), cachedRecord{id: int64(i)})
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		if len(sh.index) != len(sh.ring) || len(sh.ring) > 10 {
			t.Fatalf("shard %d: %d keys indexing %d slots, at most 10 allowed", i, len(sh.index), len(sh.ring))
		}
		for k, j := range sh.index {
			if sh.ring[j].key != k {
				t.Fatalf("shard %d: key %q indexes slot %d holding %q", i, k, j, sh.ring[j].key)
			}
		}
		n += len(sh.ring)
	}
	if n == 0 {
		t.Fatal("cache is empty")
	}
	if r, ok := c.get("k9999"); !ok || r.id != 9999 {
		t.Fatalf("the newest entry is not cached: %v %v", r, ok)
	}
	if newRecordCache(0) != nil || newRecordCache(-1) != nil {
		t.Fatal("a cache of no entries is not nil")
	}
	var none *recordCache
	none.put("k", cachedRecord{})
	if _, ok := none.get("k"); ok {
		t.Fatal("a nil cache found an entry")
	}
}

// TestRecordCacheKeepsPopular: entries in use survive a stream of one-off
// entries far larger than the cache.
func TestRecordCacheKeepsPopular(t *testing.T) {
	c := newRecordCache(cacheShards * 100)
	hot := make([]string, cacheShards*20)
	for i := range hot {
		hot[i] = fmt.Sprint("hot", i)
		c.put(hot[i], cachedRecord{id: int64(i)})
	}
	kept := 0
	for i := 0; i < 100*cacheShards*100; i++ {
		c.put(fmt.Sprint("cold", i), cachedRecord{})
		if i%50 == 0 { // the hot set keeps being asked for
			for _, k := range hot {
				c.get(k)
			}
		}
	}
	for _, k := range hot {
		if _, ok := c.get(k); ok {
			kept++
		}
	}
	if kept < len(hot)*9/10 {
		t.Fatalf("only %d of %d popular entries survived", kept, len(hot))
	}
}

// TestContentLength: the shared Content-Length values are each exactly
// the number's, and appending to one never writes into the next.
func TestContentLength(t *testing.T) {
	s := New(Config{})
	for _, n := range []int{0, 1, 9, 10, 99, 100, 345, smallAnswer - 1, smallAnswer, 100000} {
		v := s.contentLength(n)
		if len(v) != 1 || v[0] != strconv.Itoa(n) {
			t.Errorf("contentLength(%d) = %q", n, v)
		}
		_ = append(v, "x")
	}
	if v := s.contentLength(346); v[0] != "346" {
		t.Errorf("after appends, contentLength(346) = %q", v)
	}
}
