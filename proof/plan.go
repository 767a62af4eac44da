package proof

import (
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Plan returns the tiles that prove reads when run against tree: prove
// calls tlog.ProveRecord, tlog.ProveTree or tlog.TreeHash (each reads its
// hashes in one call) with the HashReader it is given. Plan runs it
// against placeholder tiles, so its result is meaningless and ignored; what
// counts is which tiles it asked for. A caller plans every proof it is about
// to make, reads all of their tiles in one parallel round (Reader.ReadTiles),
// and then makes the proofs against the tiles it read.
func Plan(tree tlog.Tree, prove func(tlog.HashReader) error) []tlog.Tile {
	p := &planner{}
	_ = prove(tlog.TileHashReader(tree, p))
	return p.tiles
}

// planner is a tlog.TileReader that notes what is read and answers zeros.
type planner struct {
	mu    sync.Mutex
	tiles []tlog.Tile
}

func (p *planner) Height() int { return store.TileHeight }

func (p *planner) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	p.mu.Lock()
	p.tiles = append(p.tiles, tiles...)
	p.mu.Unlock()
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = make([]byte, t.W*tlog.HashSize)
	}
	return out, nil
}

func (p *planner) SaveTiles([]tlog.Tile, [][]byte) {}
