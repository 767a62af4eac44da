package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/sumkeep/sumkeep/store"
)

// TestBRINSummarizedDuringSync: full-sync batches leave the id index
// summarized behind them, all but the last two ranges, so the commit that
// serves a head has little left to read back.
func TestBRINSummarizedDuringSync(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const batches, per = 10, 1000
	for k := range batches {
		var recs []store.Record
		for i := k * per; i < (k+1)*per; i++ {
			p, v := fmt.Sprintf("example.com/m%d", i), "v1.0.0"
			recs = append(recs, store.Record{ID: int64(i), Path: p, Version: v,
				Data: fmt.Appendf(nil, "%s %s h1:x\n%s %s/go.mod h1:y\n", p, v, p, v)})
		}
		if err := s.Commit(ctx, "log", store.Batch{Records: recs, Synced: int64((k + 1) * per), Resumable: true}); err != nil {
			t.Fatal(err)
		}
		s.brin.wg.Wait() // as if the next batch's COPY took that long
	}
	var blocks, left int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_relation_size('records') / current_setting('block_size')::bigint`).Scan(&blocks); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT brin_summarize_new_values('records_id')`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	ranges := (blocks + brinPagesPerRange - 1) / brinPagesPerRange
	if ranges < 6 {
		t.Fatalf("the records fill only %d ranges: the test needs more", ranges)
	}
	if left > 3 {
		t.Errorf("%d of %d ranges were left unsummarized, want at most 3", left, ranges)
	}
}
