package postgres

import (
	"context"
	"slices"
	"testing"

	"github.com/sumkeep/sumkeep/store"
)

// countingIDs counts the pages a walk asks a store for.
type countingIDs struct {
	*Store
	pages int
}

func (c *countingIDs) RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error) {
	c.pages++
	return c.Store.RecordIDs(ctx, log, after, limit)
}

// TestWalkScatteredIDs: records stored on demand arrive in no order of id,
// so the BRIN index cannot order them and every page of a walk is a pass
// over the whole records table (sorting it for ORDER BY id LIMIT). A walk
// of 20,000 such records must take a few pages, not one per 4,096 ids
// (which made the served head's advance and `sumkeep status` quadratic in
// the store: 49 passes at 200,000 records), and still see every id once,
// in order.
func TestWalkScatteredIDs(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const n = 20000
	want := storeScattered(t, s, 10, n/10, 1<<26)
	slices.Sort(want)
	c := &countingIDs{Store: s}
	var got []int64
	if err := store.WalkRecordIDs(ctx, c, "log", func(ids []int64) error {
		got = append(got, ids...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the walk saw %d ids, want the %d stored, in order", len(got), len(want))
	}
	// Pages of 4,096, 8,192 and 16,384 ids hold 28,672; the last is short,
	// so no page is asked for after it.
	if c.pages > 3 {
		t.Errorf("walking %d records took %d pages, each a pass over the table; want at most 3", n, c.pages)
	}
}
