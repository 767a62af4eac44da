package postgres

import (
	"context"
	"sync"
)

// brinPagesPerRange is the pages_per_range of the BRIN index records_id
// (schema/0001_init.sql).
const brinPagesPerRange = 16

// brinSummarizer keeps the BRIN id index summarized while a full sync fills
// the records table, so that data tiles (id range scans) skip the ranges of
// other ids instead of reading them all.
//
// Serving a head summarizes whatever is left (brin_summarize_new_values in
// the commit that serves it). Left to then, that is the whole of a long
// sync, read back on its critical path: about a tenth of the time a plain
// COPY of the same rows takes. So after each committed full-sync batch a
// goroutine summarizes, on a connection of its own and beside the next
// batch's COPY, the ranges filled since it last ran, while their pages are
// still in memory. It leaves the last two ranges of the table, which the
// next COPY may still be filling: a summarized range is updated by every
// insert that widens it, which would cost that COPY more than summarizing it
// later. Summaries are not transactional and cover uncommitted rows too, so
// a batch that rolls back leaves summaries wider than needed, never wrong.
type brinSummarizer struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running bool
	from    int64 // blocks below are summarized
}

// summarizeFilled starts summarizing the ranges filled since the last run,
// unless a run is going on (the next batch starts another).
func (s *Store) summarizeFilled() {
	z := &s.brin
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.running || z.ctx.Err() != nil {
		return
	}
	z.running = true
	from := z.from
	z.wg.Go(func() {
		var upto int64
		err := s.pool.QueryRow(z.ctx, `WITH t AS (SELECT pg_relation_size('records') / current_setting('block_size')::bigint / $2 * $2 - 2 * $2 AS upto)
			SELECT upto, (SELECT count(brin_summarize_range('records_id', b)) FROM generate_series($1::bigint, upto - 1, $2) AS b) FROM t`,
			from, int64(brinPagesPerRange)).Scan(&upto, new(int64))
		z.mu.Lock()
		defer z.mu.Unlock()
		z.running = false
		if err == nil {
			// Failing is harmless: the head's commit summarizes the rest.
			z.from = max(z.from, upto)
		}
	})
}

// stopSummarizing cancels a run and waits for it.
func (s *Store) stopSummarizing() {
	s.brin.cancel()
	s.brin.wg.Wait()
}
