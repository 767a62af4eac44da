package proof

import (
	"errors"
	"slices"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Plan returns the tiles that prove reads when run against tree: prove
// calls tlog.ProveRecord, tlog.ProveTree or tlog.TreeHash (each reads its
// hashes in one call) with the HashReader it is given. A caller plans every
// proof it is about to make, reads all of their tiles in one parallel round
// (Reader.ReadTiles), and then makes the proofs against the tiles it read.
//
// Plan hashes nothing: prove's HashReader notes the hash indexes each call
// asks for and fails it (so prove's result is meaningless and ignored, and
// a prove that goes on after a failed read goes on as it would over tiles
// that do not authenticate), and the tiles are worked out from the indexes
// as tlog.TileHashReader works them out before it reads (readPlan). Planning
// by running the proofs over placeholder tiles, as Plan once did, hashed a
// tree's right edge for every proof, some 50 µs a record of a seed.
func Plan(tree tlog.Tree, prove func(tlog.HashReader) error) []tlog.Tile {
	rec := &indexRecorder{}
	_ = prove(rec)
	var tiles []tlog.Tile
	for _, indexes := range rec.calls {
		tiles = append(tiles, readPlan(tree, indexes)...)
	}
	return tiles
}

// errPlanning fails every read of an indexRecorder.
var errPlanning = errors.New("planning: no hashes are read")

// indexRecorder is a tlog.HashReader that notes the indexes of each call
// and fails it.
type indexRecorder struct {
	mu    sync.Mutex
	calls [][]int64
}

func (r *indexRecorder) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	r.mu.Lock()
	r.calls = append(r.calls, append([]int64(nil), indexes...))
	r.mu.Unlock()
	return nil, errPlanning
}

// stxRecorder notes the indexes tlog.TreeHash reads: the hashes of the
// complete subtrees a tree's size splits into, the largest first.
type stxRecorder struct{ indexes []int64 }

func (r *stxRecorder) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	r.indexes = indexes
	return nil, errPlanning
}

// readPlan returns the tiles that tlog.TileHashReader(tree, ·) reads, in
// its order, for one ReadHashes(indexes): the tiles holding the hashes
// that make up tree's root (which authenticate against the signed root),
// then, for each index, the tile holding it and any parent tiles between
// it and a tile already planned (each authenticated by its parent). It
// returns nil where TileHashReader fails before reading: an index outside
// the tree, or an empty tree.
func readPlan(tree tlog.Tree, indexes []int64) []tlog.Tile {
	const h = store.TileHeight
	if tree.N <= 0 {
		return nil
	}
	stx := &stxRecorder{}
	_, _ = tlog.TreeHash(tree.N, stx)
	// A proof reads a few tiles: a list is quicker than a map.
	tiles := make([]tlog.Tile, 0, len(stx.indexes)+2*len(indexes))
	planned := func(t tlog.Tile) bool { return slices.Contains(tiles, t) }
	add := func(t tlog.Tile) { tiles = append(tiles, t) }
	for _, x := range stx.indexes {
		if t := tileParent(tlog.TileForIndex(h, x), 0, tree.N); !planned(t) {
			add(t)
		}
	}
	top := tlog.StoredHashIndex(0, tree.N)
	for _, x := range indexes {
		if x < 0 || x >= top {
			return nil
		}
		t := tlog.TileForIndex(h, x)
		// Up to a planned tile (the tiles of the root's hashes hold the
		// top of the tree, so one is met), then back down.
		k := 0
		for ; !planned(tileParent(t, k, tree.N)); k++ {
			if tileParent(t, k, tree.N) == (tlog.Tile{}) {
				return nil // outside the tree: TileHashReader's "bad math"
			}
		}
		for k--; k >= 0; k-- {
			p := tileParent(t, k, tree.N)
			if p.W != 1<<h {
				return nil // only full tiles have parents: "bad math"
			}
			add(p)
		}
	}
	return tiles
}

// tileParent returns the tile k levels above t (k = 0: t itself) at the
// width it has in a tree of n records: full, or the part inside the tree;
// the zero Tile if it is outside the tree. (tlog's own is not exported.)
func tileParent(t tlog.Tile, k int, n int64) tlog.Tile {
	t.L += k
	t.N >>= uint(k * t.H)
	t.W = 1 << uint(t.H)
	if end := n >> uint(t.L*t.H); t.N<<uint(t.H)+int64(t.W) >= end {
		if t.N<<uint(t.H) >= end {
			return tlog.Tile{}
		}
		t.W = int(end - t.N<<uint(t.H))
	}
	return t
}
