package store

import (
	"cmp"
	"fmt"
	"slices"

	"golang.org/x/mod/sumdb/tlog"
)

// LeafTile rebuilds level-0 hash tile t from the records under it, which
// recs must be: records t.N<<TileHeight onwards, in order. Its hashes are
// the records' leaf hashes (tlog.RecordHash), so where the records are
// stored the tile need not be: a full sync stores none, and stores rebuild
// them on read. Fewer records than t.W, or a gap, is ErrNotFound.
func LeafTile(t tlog.Tile, recs []Record) ([]byte, error) {
	start := t.N << TileHeight
	if t.L != 0 || len(recs) < t.W {
		return nil, fmt.Errorf("tile %s: records %d+%d: %w", t.Path(), start, t.W, ErrNotFound)
	}
	out := make([]byte, 0, t.W*tlog.HashSize)
	for i, r := range recs[:t.W] {
		if r.ID != start+int64(i) {
			return nil, fmt.Errorf("tile %s: record %d: %w", t.Path(), start+int64(i), ErrNotFound)
		}
		h := tlog.RecordHash(r.Data)
		out = append(out, h[:]...)
	}
	return out, nil
}

// WidestTiles returns tiles with each (level, index) once, at its widest:
// tiles are prefix-stable, so the widest holds the others. It sorts tiles
// in place, by level and index, and returns a prefix of them.
func WidestTiles(tiles []Tile) []Tile {
	slices.SortFunc(tiles, func(a, b Tile) int {
		return cmp.Or(cmp.Compare(a.Tile.L, b.Tile.L), cmp.Compare(a.Tile.N, b.Tile.N), cmp.Compare(b.Tile.W, a.Tile.W))
	})
	return slices.CompactFunc(tiles, func(a, b Tile) bool { return a.Tile.L == b.Tile.L && a.Tile.N == b.Tile.N })
}
