package proof

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// TileStore is what a Reader reads from a store: the tiles of a list
// that it holds, nil for the others (see store.Writer's ReadSomeTiles).
type TileStore interface {
	ReadSomeTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error)
}

// Source serves the tiles a store lacks: an upstream, or a bundle. It is
// hostile: what it returns is used only once authenticated.
type Source interface {
	Tile(ctx context.Context, t tlog.Tile) ([]byte, error)
}

// ReaderConfig says where a Reader finds tiles.
type ReaderConfig struct {
	// Store, if not nil, is read before Source, for Log's tiles.
	Store TileStore
	Log   string
	// Source, if not nil, serves what neither the batch nor the store has.
	Source Source
	// Concurrency is how many Source requests are in flight (default 16).
	Concurrency int
	// VerifyAll makes Verified report every tile authenticated, not only
	// those from Source (an export copies store tiles too).
	VerifyAll bool
}

// A Reader is a tlog.TileReader over, in order: tiles given with a batch
// (WithLocal), tiles it read before, the store, and the source. It
// remembers every tile it read, and which of them from the source were
// authenticated, so that a caller stores exactly those (Verified).
//
// Read it through HashReader, which authenticates every tile against a
// signed tree and reports tiles that do not hash to it as an
// *InconsistentTileError. A Reader may be used by several goroutines.
type Reader struct {
	ctx         context.Context
	cfg         ReaderConfig
	local       map[tlog.Tile][]byte // this batch's tiles; not remembered
	localAuthed map[tlog.Tile]bool   // local tiles authenticated
	c           *memory              // shared by WithLocal copies
}

type memory struct {
	mu       sync.Mutex
	seen     map[tlog.Tile][]byte // every tile read, but local ones
	fromSrc  map[tlog.Tile]bool   // tiles that came from the source
	authed   map[tlog.Tile]bool   // source tiles authenticated
	verified map[tlog.Tile]bool   // tiles to report in Verified
	expanded map[tlog.Tile]*expandedTile
}

// NewReader returns a Reader reading on behalf of ctx.
func NewReader(ctx context.Context, cfg ReaderConfig) *Reader {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	return &Reader{ctx: ctx, cfg: cfg, c: &memory{
		seen:     make(map[tlog.Tile][]byte),
		fromSrc:  make(map[tlog.Tile]bool),
		authed:   make(map[tlog.Tile]bool),
		verified: make(map[tlog.Tile]bool),
		expanded: make(map[tlog.Tile]*expandedTile),
	}}
}

// WithLocal returns a Reader that answers from local first (a batch's tiles,
// downloaded with it) and shares r's memory of other tiles. Local tiles are
// not remembered: a full sync passes every level-0 tile of the log through.
func (r *Reader) WithLocal(local map[tlog.Tile][]byte) *Reader {
	c := *r
	c.local = local
	c.localAuthed = make(map[tlog.Tile]bool)
	return &c
}

// Height implements tlog.TileReader.
func (r *Reader) Height() int { return store.TileHeight }

// readError marks an error of reading tiles (the store, the network), as
// opposed to tiles that were read and do not authenticate.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// ReadTiles implements tlog.TileReader. The tiles are not authenticated:
// use HashReader.
func (r *Reader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	var missing []int
	r.c.mu.Lock()
	for i, t := range tiles {
		if d, ok := r.local[t]; ok {
			out[i] = d
		} else if d, ok := r.c.seen[t]; ok {
			out[i] = d
		} else {
			missing = append(missing, i)
		}
	}
	r.c.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	missing, err := r.fromStore(tiles, missing, out)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 && r.cfg.Source == nil {
		return nil, fmt.Errorf("hash tile %s: %w", tiles[missing[0]].Path(), store.ErrNotFound)
	}
	if err := r.fromSource(tiles, missing, out); err != nil {
		return nil, err
	}
	r.c.mu.Lock()
	for _, i := range missing {
		r.c.fromSrc[tiles[i]] = true
	}
	for i, t := range tiles {
		if _, ok := r.local[t]; !ok {
			r.c.seen[t] = out[i]
		}
	}
	r.c.mu.Unlock()
	return out, nil
}

// fromStore reads tiles[i] for i in missing from the store into out, in
// one call, and returns the indexes it lacks.
func (r *Reader) fromStore(tiles []tlog.Tile, missing []int, out [][]byte) ([]int, error) {
	if r.cfg.Store == nil {
		return missing, nil
	}
	want := make([]tlog.Tile, len(missing))
	for j, i := range missing {
		want[j] = tiles[i]
	}
	data, err := r.cfg.Store.ReadSomeTiles(r.ctx, r.cfg.Log, want)
	if err != nil {
		return nil, err
	}
	if len(data) != len(want) {
		return nil, fmt.Errorf("reading %d tiles of %s from the store: it answered %d", len(want), r.cfg.Log, len(data))
	}
	var still []int
	for j, i := range missing {
		if data[j] == nil {
			still = append(still, i)
			continue
		}
		out[i] = data[j]
	}
	return still, nil
}

// fromSource fetches tiles[i] for i in missing from the source into out,
// Concurrency at a time, and returns the first error.
func (r *Reader) fromSource(tiles []tlog.Tile, missing []int, out [][]byte) error {
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.Concurrency)
	for j, i := range missing {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[j] = r.cfg.Source.Tile(r.ctx, tiles[i])
		}()
	}
	wg.Wait()
	return FirstError(errs)
}

// expand returns data, tile t as read through r, expanded (see Tiles):
// once per Reader for the tiles it remembers, however many Tiles of
// however many trees read them. An expansion is a function of the bytes
// alone; each Tiles still authenticates it against its own tree. It is
// kept only for the very bytes the Reader remembers for t, which it never
// changes, so bytes read again from a source that answered otherwise are
// expanded anew.
func (r *Reader) expand(t tlog.Tile, data []byte) *expandedTile {
	r.c.mu.Lock()
	held := r.c.seen[t]
	_, local := r.local[t]
	kept := !local && len(held) > 0 && len(held) == len(data) && &held[0] == &data[0]
	e := r.c.expanded[t]
	r.c.mu.Unlock()
	if kept && e != nil && &e.data[0] == &data[0] {
		return e
	}
	e = expand(data)
	if kept {
		r.c.mu.Lock()
		r.c.expanded[t] = e
		r.c.mu.Unlock()
	}
	return e
}

// expandFor expands data, tile t as read through tr: through tr if it is
// a Reader, which keeps expansions.
func expandFor(tr tlog.TileReader, t tlog.Tile, data []byte) *expandedTile {
	if r, ok := tr.(*Reader); ok {
		return r.expand(t, data)
	}
	return expand(data)
}

// SaveTiles implements tlog.TileReader: tlog.TileHashReader calls it with
// the tiles it authenticated.
func (r *Reader) SaveTiles(tiles []tlog.Tile, _ [][]byte) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	for _, t := range tiles {
		if _, ok := r.local[t]; ok {
			r.localAuthed[t] = true
			continue
		}
		if r.c.fromSrc[t] {
			r.c.authed[t] = true
		}
		if r.c.fromSrc[t] || r.cfg.VerifyAll {
			r.c.verified[t] = true
		}
	}
}

// Suspects returns the tiles of the batch (WithLocal) and of the source
// that were read and never authenticated, with their bytes: after a proof
// failed with an *InconsistentTileError, one of them is at fault. Tiles
// that authenticated in an earlier proof are not suspects.
func (r *Reader) Suspects() []store.Tile {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	var out []store.Tile
	for t, d := range r.local {
		if !r.localAuthed[t] {
			out = append(out, store.Tile{Tile: t, Data: d})
		}
	}
	for t := range r.c.fromSrc {
		if !r.c.authed[t] {
			out = append(out, store.Tile{Tile: t, Data: r.c.seen[t]})
		}
	}
	return out
}

// Verified returns the tiles authenticated so far that came from the source
// (or, with VerifyAll, from anywhere but the batch), each (level, index)
// once, at the widest width read.
func (r *Reader) Verified() []store.Tile {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	// Tiles are prefix-stable: of one tile read at several widths (for
	// trees of several sizes), the widest holds the others.
	type key struct {
		l int
		n int64
	}
	widest := make(map[key]tlog.Tile, len(r.c.verified))
	for t := range r.c.verified {
		k := key{t.L, t.N}
		if w, ok := widest[k]; !ok || t.W > w.W {
			widest[k] = t
		}
	}
	out := make([]store.Tile, 0, len(widest))
	for _, t := range widest {
		out = append(out, store.Tile{Tile: t, Data: r.c.seen[t]})
	}
	return out
}

// HashReader returns Authenticated(tree, r).
func (r *Reader) HashReader(tree tlog.Tree) tlog.HashReader {
	return Authenticated(tree, r)
}

// Authenticated returns a tlog.HashReader for tree over tr's tiles. It
// authenticates every tile it reads against tree's signed root (as
// tlog.TileHashReader does, on every call); tiles that do not hash to it are
// reported as an *InconsistentTileError, failures to read them as tr's
// error, unchanged.
func Authenticated(tree tlog.Tree, tr tlog.TileReader) tlog.HashReader {
	return &hashReader{tr: tr, tree: tree}
}

type hashReader struct {
	tr   tlog.TileReader
	tree tlog.Tree
}

// callReader notes the tiles one ReadHashes call read, to name them if they
// do not authenticate, and marks the errors of reading them.
type callReader struct {
	tlog.TileReader
	mu    sync.Mutex
	tiles []tlog.Tile
	data  [][]byte
}

func (c *callReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data, err := c.TileReader.ReadTiles(tiles)
	if err != nil {
		return nil, &readError{err}
	}
	c.mu.Lock()
	c.tiles, c.data = append(c.tiles, tiles...), append(c.data, data...)
	c.mu.Unlock()
	return data, nil
}

func (h *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	count := tlog.StoredHashCount(h.tree.N)
	for _, x := range indexes {
		if x < 0 || x >= count {
			return nil, fmt.Errorf("hash %d is not in tree %d", x, h.tree.N)
		}
	}
	c := &callReader{TileReader: h.tr}
	hashes, err := tlog.TileHashReader(h.tree, c).ReadHashes(indexes)
	if err == nil {
		return hashes, nil
	}
	return nil, classify(err, h.tree, c)
}

// classify tells tlog.TileHashReader's failures apart: an error of reading
// tiles is returned as it was; anything else means the tiles read (a wrong
// length, or hashes that do not hash up to the signed root) are at fault,
// since every index asked for is in the tree.
func classify(err error, tree tlog.Tree, c *callReader) error {
	if re, ok := errors.AsType[*readError](err); ok {
		return re.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return &InconsistentTileError{Tree: tree, Tiles: c.tiles, Data: c.data, Err: err}
}

// FirstError returns the first non-nil error of errs, saying how many more
// failed.
func FirstError(errs []error) error {
	var first error
	n := 0
	for _, e := range errs {
		if e != nil {
			if first == nil {
				first = e
			}
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w (and %d more requests failed)", first, n-1)
	}
	return first
}
