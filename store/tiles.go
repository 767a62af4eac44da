package store

import (
	"fmt"

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
