package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sumkeep/sumkeep/store"
)

var _ store.Stager = (*Store)(nil)

// stageMinConns is the smallest pool that stages batches: a syncer's lock,
// two batches with two connections each, the index summarizer, and room
// for a lookup. Smaller pools (pool_max_conns) commit one batch at a time.
const stageMinConns = 8

// StageCommit implements store.Stager. It commits b as Commit does, but lets a full sync keep the
// database busy with COPY: b's records are written at once, in a
// transaction of its own, while the batch staged before it (the one whose
// wait function is after; nil for none) is still committing. b commits only
// once that batch has committed, and not at all if it failed
// (store.ErrEarlierFailed). So batches commit in order, and a crash at any point
// loses only uncommitted batches: their rows are never visible.
//
// It returns at once; wait returns b's outcome. Every batch staged must be
// waited for (or its context cancelled) before the Store is closed.
//
// Writing before the log's row is locked is what the row lock usually
// prevents, so a staged batch checks again once it holds the row:
//
//   - its duplicate probes ran in a snapshot taken after the batch before
//     it committed, which also read the log's generation. If another writer
//     has committed since (the generation moved), every key is probed again
//     under the lock;
//   - if another writer stored records in the batch's id range meanwhile
//     (the log's max_id reached it), the staged transaction is rolled back
//     and the batch committed again the ordinary way.
//
// Batches that serve a head, expect a state, or may overlap stored records
// are committed the ordinary way, after the batch before them.
func (s *Store) StageCommit(ctx context.Context, log string, b store.Batch, after func() error) (wait func() error) {
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = s.stage(ctx, log, b, after)
		if err != nil && !errors.Is(err, store.ErrEarlierFailed) {
			err = fmt.Errorf("postgres: commit to %s: %w", log, err)
		}
	}()
	return func() error {
		<-done
		return err
	}
}

func (s *Store) stage(ctx context.Context, log string, b store.Batch, after func() error) error {
	prevOK := func() error {
		if after != nil && after() != nil {
			return store.ErrEarlierFailed
		}
		return nil
	}
	plain := func() error {
		if err := prevOK(); err != nil {
			return err
		}
		return s.commit(ctx, log, b)
	}
	recs := b.Records
	if len(recs) == 0 || b.Serve > 0 || b.Expect != nil || s.pool.Config().MaxConns < stageMinConns {
		return plain()
	}
	logID, tileArgs, err := s.prepare(ctx, log, b)
	if err != nil {
		return err
	}
	lo, hi := recs[0].ID, recs[len(recs)-1].ID+1
	var maxID int64
	if err := s.pool.QueryRow(ctx, `SELECT max_id FROM logs WHERE id = $1`, logID).Scan(&maxID); err != nil {
		return fmt.Errorf("reading log: %w", err)
	}
	if lo <= maxID {
		return plain()
	}
	again, err := s.staged(ctx, log, logID, b, tileArgs, lo, hi, prevOK)
	if again {
		return s.commit(ctx, log, b)
	}
	return err
}

// staged writes and commits b in its own transaction (see StageCommit). It
// returns again if the batch must be committed the ordinary way instead.
func (s *Store) staged(ctx context.Context, log string, logID int16, b store.Batch, tileArgs []any, lo, hi int64, prevOK func() error) (again bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	probe, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer probe.Release()
	c, pc := conn.Conn(), probe.Conn()
	defer rollback(ctx, c)
	defer rollback(ctx, pc)

	var q pgx.Batch
	beginSQL(&q, b)
	if err := c.SendBatch(ctx, &q).Close(); err != nil {
		return false, fmt.Errorf("beginning: %w", err)
	}
	// Probes wait for the batch before to commit, then run in one snapshot
	// that also reads the generation they are valid for. A log that holds
	// no record in that snapshot needs no probe (the first batches of a
	// sync from empty, before any commit has started the log's filter).
	var gen int64
	ready := func(ctx context.Context) (*keyFilter, error) {
		if err := prevOK(); err != nil {
			return nil, err
		}
		var maxID int64
		var q pgx.Batch
		q.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
		q.Queue(`SELECT generation, max_id FROM logs WHERE id = $1`, logID).QueryRow(func(row pgx.Row) error { return row.Scan(&gen, &maxID) })
		if err := pc.SendBatch(ctx, &q).Close(); err != nil {
			return nil, fmt.Errorf("checking records for duplicates: %w", err)
		}
		return s.filters.peek(logID, gen, maxID), nil
	}
	// One staged COPY at a time: the next batch's COPY starts as this
	// one's ends, and overlaps only its probes and commit. Two COPYs at
	// once into one table and its indexes cost the server far more CPU
	// (lock and buffer contention) than they gain.
	chk, err := writeRecords(ctx, c, pc, log, logID, b.Records, -1, ready, s.copyTurn)
	if err != nil {
		return false, err
	}
	if err := prevOK(); err != nil {
		return false, err
	}
	if s.stagedHook != nil {
		s.stagedHook()
	}

	release, err := s.commitTurn.take(ctx)
	if err != nil {
		return false, err
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	st, maxID, err := lockLog(ctx, c, logID, b, false)
	if err != nil {
		return false, err
	}
	if maxID >= lo {
		return true, nil // records in the batch's range were stored meanwhile
	}
	filter := s.filters.take(logID, st.Generation, maxID)
	if filter != nil {
		defer func() {
			if err != nil {
				s.filters.drop(logID, filter)
			}
		}()
	}
	if st.Generation != gen {
		// Another writer committed after the probes' snapshot. Under the
		// lock this transaction sees every committed record, and its own
		// rows: ids in [lo, hi), which no one else has stored.
		if err := chk.reprobe(ctx, c, func(id int64) bool { return id >= lo && id < hi }); err != nil {
			return false, err
		}
	}
	summarize, err := s.finishBatch(ctx, c, logID, b, tileArgs, st.Generation, filter, chk.src.keys)
	if err != nil {
		return false, err
	}
	release()
	released = true
	if summarize {
		s.summarizeFilledOn(ctx, c)
	}
	return false, nil
}
