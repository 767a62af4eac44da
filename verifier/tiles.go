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
// they are authenticated: tlog.TileHashReader and proofTiles authenticate
// every tile they use against the signed root.
type tileCache struct {
	ctx  context.Context
	st   Store
	log  string
	tree tlog.Tree

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
func newTileCache(ctx context.Context, st Store, log string, tree tlog.Tree, fetchers int) *tileCache {
	c := &tileCache{ctx: ctx, st: st, log: log, tree: tree,
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

// hashReader returns a tlog.HashReader that authenticates the tiles it
// reads against the signed root on every call.
func (c *tileCache) hashReader() tlog.HashReader {
	return tlog.TileHashReader(c.tree, c)
}

// proofPath returns the tiles holding record id's leaf and its ancestors
// up to the top of the tree: with the tiles of the tree's right edge, what
// its inclusion proof reads.
func proofPath(tree tlog.Tree, id int64) []tlog.Tile {
	const h = store.TileHeight
	var path []tlog.Tile
	for l := 0; l*h < 63 && tree.N>>(l*h) > 0; l++ {
		n := id >> ((l + 1) * h)
		if w := widthIn(tree, l, n); w > 0 {
			path = append(path, tlog.Tile{H: h, L: l, N: n, W: w})
		}
	}
	return path
}

// proofTiles is the tlog.HashReader proofs are read from. It authenticates
// each tile once per run, as tlog.TileHashReader does on every call: the
// tiles on the tree's right edge by recomputing the signed root from them
// (with TileHashReader itself), every other tile by its hash being the
// entry its parent tile holds for it. It also computes every hash inside a
// tile once (not only its bottom row), so that the many proofs that share
// a tile do not hash it again. (Over TileHashReader, each proof costs some
// two thousand SHA-256 computations: more than half a second for a real
// go.sum.) A tile that does not authenticate fails every proof that reads
// it; and every proof is checked against the signed root by
// tlog.CheckRecord.
type proofTiles struct {
	tr *tileCache

	rootOnce sync.Once
	rootErr  error

	mu    sync.Mutex
	tiles map[tlog.Tile]*tileEntry
}

type tileEntry struct {
	once sync.Once
	exp  *expandedTile // authenticated
	err  error
}

func (p *proofTiles) entry(t tlog.Tile) *tileEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.tiles[t]
	if e == nil {
		e = new(tileEntry)
		p.tiles[t] = e
	}
	return e
}

// edgeSaver is the tlog.TileReader that notes the tiles TileHashReader
// authenticated.
type edgeSaver struct {
	*tileCache
	tiles []tlog.Tile
	data  [][]byte
}

func (s *edgeSaver) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	s.tiles, s.data = append(s.tiles, tiles...), append(s.data, data...)
}

// authenticateEdge authenticates the tiles that hold the hashes of the
// tree's right edge (those TileHashReader reads for no index at all)
// against the signed root.
func (p *proofTiles) authenticateEdge() error {
	p.rootOnce.Do(func() {
		s := &edgeSaver{tileCache: p.tr}
		if _, err := tlog.TileHashReader(p.tr.tree, s).ReadHashes(nil); err != nil {
			p.rootErr = err
			return
		}
		for i, t := range s.tiles {
			e := p.entry(t)
			e.once.Do(func() { e.exp = expand(s.data[i]) })
		}
	})
	return p.rootErr
}

// tile returns tile t, authenticated and expanded, reading it once.
func (p *proofTiles) tile(t tlog.Tile) (*expandedTile, error) {
	if err := p.authenticateEdge(); err != nil {
		return nil, err
	}
	const h = store.TileHeight
	e := p.entry(t)
	e.once.Do(func() {
		// Not an edge tile: a full tile whose hash is an entry of its
		// parent tile.
		if t.W != 1<<h {
			e.err = fmt.Errorf("tile %s is not authenticated by the signed tree", t.Path())
			return
		}
		data, err := p.tr.ReadTiles([]tlog.Tile{t})
		if err != nil {
			e.err = err
			return
		}
		if len(data) != 1 || len(data[0]) != t.W*tlog.HashSize {
			e.err = fmt.Errorf("the store returned tile %s with %d bytes", t.Path(), len(data[0]))
			return
		}
		exp := expand(data[0])
		parent := tlog.Tile{H: h, L: t.L + 1, N: t.N >> h, W: widthIn(p.tr.tree, t.L+1, t.N>>h)}
		if parent.W <= 0 {
			e.err = fmt.Errorf("tile %s is outside the signed tree", t.Path())
			return
		}
		pe, err := p.tile(parent)
		if err != nil {
			e.err = err
			return
		}
		want, ok := pe.hash(0, t.N-parent.N<<h)
		if got, _ := exp.hash(h, 0); !ok || got != want {
			e.err = fmt.Errorf("hash tile %s does not match the signed tree", t.Path())
			return
		}
		e.exp = exp
	})
	return e.exp, e.err
}

// widthIn returns the width of tile n at tile level l in tree, as
// tlog.TileHashReader reads it: full, or the part inside the tree (<= 0
// for a tile outside it).
func widthIn(tree tlog.Tree, l int, n int64) int {
	const h = store.TileHeight
	if left := tree.N>>(l*h) - n<<h; left < 1<<h {
		return int(left)
	}
	return 1 << h
}

// expandedTile is a tile with all its inner hashes: hash(k, j) is the hash
// of the subtree of 2^k tile entries starting at entry j·2^k.
type expandedTile struct {
	data []byte        // the entries (level 0)
	up   [][]tlog.Hash // up[k-1] holds the hashes at level k
}

func expand(data []byte) *expandedTile {
	n := len(data) / tlog.HashSize
	e := &expandedTile{data: data}
	all := make([]tlog.Hash, max(0, n-1)) // n/2 + n/4 + … hashes
	var l, r tlog.Hash
	for k := 1; n>>k > 0; k++ {
		up := all[: n>>k : n>>k]
		all = all[n>>k:]
		for j := range up {
			if k == 1 {
				copy(l[:], data[2*j*tlog.HashSize:])
				copy(r[:], data[(2*j+1)*tlog.HashSize:])
				up[j] = tlog.NodeHash(l, r)
			} else {
				prev := e.up[k-2]
				up[j] = tlog.NodeHash(prev[2*j], prev[2*j+1])
			}
		}
		e.up = append(e.up, up)
	}
	return e
}

func (e *expandedTile) hash(k int, j int64) (tlog.Hash, bool) {
	var h tlog.Hash
	if k == 0 {
		if j < 0 || (j+1)*tlog.HashSize > int64(len(e.data)) {
			return h, false
		}
		copy(h[:], e.data[j*tlog.HashSize:])
		return h, true
	}
	if k > len(e.up) || j < 0 || j >= int64(len(e.up[k-1])) {
		return h, false
	}
	return e.up[k-1][j], true
}

// ReadHashes implements tlog.HashReader.
func (p *proofTiles) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	const h = store.TileHeight
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, n := tlog.SplitStoredHashIndex(x)
		t := tlog.Tile{H: h, L: level / h}
		k := level % h // level inside the tile
		t.N = n << k >> h
		j := n - t.N<<h>>k // index among the tile's level-k hashes
		if t.W = widthIn(p.tr.tree, t.L, t.N); t.W <= 0 {
			return nil, fmt.Errorf("hash %d is not in tree %d", x, p.tr.tree.N)
		}
		e, err := p.tile(t)
		if err != nil {
			return nil, err
		}
		var ok bool
		if out[i], ok = e.hash(k, j); !ok {
			return nil, fmt.Errorf("hash %d is not in tile %s", x, t.Path())
		}
	}
	return out, nil
}
