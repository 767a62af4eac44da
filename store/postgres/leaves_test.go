package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/sumkeep/sumkeep/store"
)

// TestLazyLeavesNotScanned: in a store filled on demand (records stored in
// no order, the full-sync cursor at 0), the level-0 tiles a proof asks for
// and the store lacks are not looked for among the records. Each used to
// cost a pass over the whole records table, since the BRIN index on id
// matches every block of records stored in no order: 54 ms for 300 tiles
// in a store of 2,091 records, and growing with the store.
// storeScattered commits batches of per records to log "log" of s, as a
// lazy store holds them: ids spread over [0, span) by every batch, in no
// order across batches. It returns the ids in the order committed.
func storeScattered(t *testing.T, s *Store, batches, per int, span int64) []int64 {
	t.Helper()
	var ids []int64
	for k := range batches {
		var recs []store.Record
		for i := k * per; i < (k+1)*per; i++ {
			// Odd times i modulo a power of two: distinct ids spread
			// over the whole range by every batch.
			id := int64(i) * 7919 % span
			recs = append(recs, filterRecord(i, id))
			ids = append(ids, id)
		}
		slices.SortFunc(recs, func(a, b store.Record) int { return int(a.ID - b.ID) })
		if err := s.Commit(context.Background(), "log", store.Batch{Records: recs, Synced: -1}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func TestLazyLeavesNotScanned(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	ids := storeScattered(t, s, 40, 100, 1<<24)
	if _, err := s.pool.Exec(ctx, `ANALYZE records`); err != nil {
		t.Fatal(err)
	}
	logID, err := s.logID(ctx, s.pool, "log", false)
	if err != nil {
		t.Fatal(err)
	}
	pages := 0
	if err := s.pool.QueryRow(ctx, `SELECT (pg_relation_size('records') / 8192)::int`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	var leafN, leafW []int64
	for _, id := range ids[:200] {
		leafN, leafW = append(leafN, id>>store.TileHeight), append(leafW, 1<<store.TileHeight)
	}
	blocks := func(query string, args ...any) int {
		t.Helper()
		var plan []byte
		if err := s.pool.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+query, args...).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		var p []struct {
			Plan struct {
				Hit  int `json:"Shared Hit Blocks"`
				Read int `json:"Shared Read Blocks"`
			}
		}
		if err := json.Unmarshal(plan, &p); err != nil || len(p) != 1 {
			t.Fatalf("EXPLAIN: %v\n%s", err, plan)
		}
		return p[0].Plan.Hit + p[0].Plan.Read
	}
	// The records table has some 70 pages; a pass over it for each tile
	// would read thousands of blocks.
	if n := blocks(completeLeavesSQL, logID, leafN, leafW); n > 40 {
		t.Errorf("looking for the records under %d level-0 tiles of a lazy store read %d blocks (the records table has %d pages)", len(leafN), n, pages)
	}
	start := leafN[0] << store.TileHeight
	if n := blocks(leafRangeSQL, logID, start, start+256); n > 20 {
		t.Errorf("reading the records under one level-0 tile of a lazy store read %d blocks (the records table has %d pages)", n, pages)
	}
}
