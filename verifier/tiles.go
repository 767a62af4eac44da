package verifier

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// A storeError is a failure to read the store (not a tile it lacks): an
// environment error that aborts the run rather than failing one proof.
type storeError struct{ err error }

func (e *storeError) Error() string { return "reading hash tiles: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// tileCache is a tlog.TileReader over a store's hash tiles for one signed
// tree, shared by all the proofs of a run: the tiles near the top of the
// tree are the same for every proof. Tiles are asked for ahead (want) as
// soon as the records they prove are found, and a few fetchers read
// whatever is asked for in large batches, so that reading tiles overlaps
// looking records up and checking proofs. Tiles are cached as read, before
// they are authenticated: proof.Tiles and proof.Authenticated authenticate
// every tile they use against the signed root.
type tileCache struct {
	ctx context.Context
	st  Store
	log string

	mu      sync.Mutex
	entries map[tlog.Tile]*fetchEntry
	queue   []*fetchEntry
	wake    chan struct{} // a token: the queue may hold entries
	stop    chan struct{}
	wg      sync.WaitGroup
}

type fetchEntry struct {
	tile tlog.Tile
	done chan struct{} // closed when data or err is set
	data []byte
	err  error
}

// fetchBatch is how many tiles one store read asks for at most.
const fetchBatch = 256

// newTileCache starts fetchers reading tiles; stop them with close.
func newTileCache(ctx context.Context, st Store, log string, fetchers int) *tileCache {
	c := &tileCache{ctx: ctx, st: st, log: log,
		entries: make(map[tlog.Tile]*fetchEntry), wake: make(chan struct{}, 1), stop: make(chan struct{})}
	for range fetchers {
		c.wg.Add(1)
		go c.fetcher()
	}
	return c
}

func (c *tileCache) close() {
	close(c.stop)
	c.wg.Wait()
}

// want asks for tiles, without waiting for them.
func (c *tileCache) want(tiles []tlog.Tile) []*fetchEntry {
	es := make([]*fetchEntry, len(tiles))
	queued := false
	c.mu.Lock()
	for i, t := range tiles {
		e := c.entries[t]
		if e == nil {
			e = &fetchEntry{tile: t, done: make(chan struct{})}
			c.entries[t] = e
			c.queue = append(c.queue, e)
			queued = true
		}
		es[i] = e
	}
	c.mu.Unlock()
	if queued {
		c.signal()
	}
	return es
}

func (c *tileCache) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *tileCache) fetcher() {
	defer c.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		for {
			c.mu.Lock()
			n := min(len(c.queue), fetchBatch)
			batch := c.queue[:n:n]
			c.queue = c.queue[n:]
			more := len(c.queue) > 0
			c.mu.Unlock()
			if n == 0 {
				break
			}
			if more {
				c.signal() // another fetcher can take the rest
			}
			c.fetch(batch)
		}
	}
}

// fetch reads a batch of tiles. When the store lacks one of them, each is
// read on its own, so that only the missing ones fail.
func (c *tileCache) fetch(batch []*fetchEntry) {
	tiles := make([]tlog.Tile, len(batch))
	for i, e := range batch {
		tiles[i] = e.tile
	}
	data, err := c.st.ReadTiles(c.ctx, c.log, tiles)
	if errors.Is(err, store.ErrNotFound) && len(batch) > 1 {
		for _, e := range batch {
			c.fetch([]*fetchEntry{e})
		}
		return
	}
	for i, e := range batch {
		switch {
		case errors.Is(err, store.ErrNotFound):
			e.err = fmt.Errorf("hash tile %s is not in the store: %w", e.tile.Path(), err)
		case err != nil:
			e.err = &storeError{err}
		case len(data) != len(batch):
			e.err = fmt.Errorf("the store returned %d tiles for %d", len(data), len(batch))
		default:
			e.data = data[i]
		}
		close(e.done)
	}
}

// Height implements tlog.TileReader.
func (c *tileCache) Height() int { return store.TileHeight }

// ReadTiles implements tlog.TileReader.
func (c *tileCache) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, e := range c.want(tiles) {
		select {
		case <-e.done:
		case <-c.ctx.Done():
			return nil, &storeError{c.ctx.Err()}
		}
		if e.err != nil {
			return nil, e.err
		}
		out[i] = e.data
	}
	return out, nil
}

// SaveTiles implements tlog.TileReader. The tiles are cached already.
func (c *tileCache) SaveTiles([]tlog.Tile, [][]byte) {}
