package postgres

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
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
// on a connection of the pool, unless a run is going on (the next batch
// starts another).
func (s *Store) summarizeFilled() {
	from, ok := s.brin.start()
	if !ok {
		return
	}
	s.brin.wg.Go(func() {
		s.brin.done(summarizeRanges(s.brin.ctx, s.pool, from))
	})
}

// summarizeFilledOn summarizes the ranges filled since the last run on c,
// a staged batch's own connection once the batch has committed, unless a
// run is going on; it returns when done.
//
// A staged batch's connection is idle while the next batch's COPY runs on
// another, and its backend wrote most of the pages summarizing reads, so
// it has them mapped already. A backend maps each page of shared memory
// on its first touch, and on a virtual machine a page fault is dear: in
// the 1,000,000-record bench sync on two cores, summarizing on the pool's
// connections (other backends) took 333 samples of perf's against 113
// for the same work on the batches' own. Done before the batch's wait
// returns, it also leaves the connection in the pool for the batch after
// next: a run that held it longer made that batch COPY on yet another
// backend, one that has to map the shared buffers anew (five backends
// COPYing instead of two cost more than the summarizing saved).
func (s *Store) summarizeFilledOn(ctx context.Context, c *pgx.Conn) {
	from, ok := s.brin.start()
	if !ok {
		return
	}
	s.brin.done(summarizeRanges(ctx, c, from))
}

// start claims the next run, returning the first block it summarizes.
func (z *brinSummarizer) start() (from int64, ok bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.running || z.ctx.Err() != nil {
		return 0, false
	}
	z.running = true
	return z.from, true
}

// done ends a run that summarized the blocks below upto, or failed.
func (z *brinSummarizer) done(upto int64, err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.running = false
	if err == nil {
		// Failing is harmless: the head's commit summarizes the rest.
		z.from = max(z.from, upto)
	}
}

// summarizeRanges summarizes the full ranges of records_id from block from
// up to the last two ranges of the table, and returns the first block it
// left.
func summarizeRanges(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, from int64) (upto int64, err error) {
	err = q.QueryRow(ctx, `WITH t AS (SELECT pg_relation_size('records') / current_setting('block_size')::bigint / $2 * $2 - 2 * $2 AS upto)
		SELECT upto, (SELECT count(brin_summarize_range('records_id', b)) FROM generate_series($1::bigint, upto - 1, $2) AS b) FROM t`,
		from, int64(brinPagesPerRange)).Scan(&upto, new(int64))
	return upto, err
}

// stopSummarizing cancels a run and waits for it.
func (s *Store) stopSummarizing() {
	s.brin.cancel()
	s.brin.wg.Wait()
}
