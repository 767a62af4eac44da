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
	checkSummarized(t, s)
}

// TestBRINSummarizedByStagedBatches: a staged full-sync batch summarizes
// the ranges filled behind it on its own connection before its wait
// returns, so nothing is left running beside the next batch, and the
// commit that serves the head has little left to read back.
func TestBRINSummarizedByStagedBatches(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	staged := 0
	s.stagedHook = func() { staged++ }
	const batches, per = 10, 1000
	var wait func() error
	for k := range batches {
		recs := recordRange(k*per, per)
		wait = s.StageCommit(ctx, "log", store.Batch{Records: recs, Synced: int64((k + 1) * per), Resumable: true}, wait)
		if err := wait(); err != nil {
			t.Fatal(err)
		}
		s.brin.mu.Lock()
		running, from := s.brin.running, s.brin.from
		s.brin.mu.Unlock()
		if running {
			t.Fatalf("batch %d: a summarizing run is still going after its wait returned", k)
		}
		if k >= 5 && from == 0 {
			t.Fatalf("batch %d: nothing summarized yet", k)
		}
	}
	if staged < batches-1 {
		t.Fatalf("%d of %d batches were staged: the test needs them staged", staged, batches)
	}
	checkSummarized(t, s)
}

// checkSummarized checks that the records fill at least 6 BRIN ranges of
// the id index and that at most 3 of them were left unsummarized.
func checkSummarized(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
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
