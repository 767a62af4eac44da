package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/sumkeep/sumkeep/store"
)

// Commit implements store.Store: records go in with COPY, tiles are widened
// in place, and the cursors move, all in one transaction.
func (s *Store) Commit(ctx context.Context, log string, b store.Batch) error {
	logID, err := s.logID(ctx, s.pool, log, true)
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: commit to %s: %w", log, err)
	}
	defer tx.Rollback(ctx)
	if b.Expect != nil {
		var st store.State
		if err := tx.QueryRow(ctx, `SELECT served, generation FROM logs WHERE id = $1 FOR UPDATE`, logID).Scan(&st.Served, &st.Generation); err != nil {
			return fmt.Errorf("postgres: commit to %s: locking log: %w", log, err)
		}
		if st.Served != b.Expect.Served || (b.Expect.Generation >= 0 && st.Generation != b.Expect.Generation) {
			return fmt.Errorf("postgres: commit to %s: expected served head %d generation %d, found %d and %d: %w",
				log, b.Expect.Served, b.Expect.Generation, st.Served, st.Generation, store.ErrConflict)
		}
	}
	if b.Resumable && b.Serve == 0 {
		// See store.Batch: the commit need not wait for the WAL flush.
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return fmt.Errorf("postgres: commit to %s: %w", log, err)
		}
	}
	if err := s.writeRecords(ctx, tx, logID, b.Records); err != nil {
		return fmt.Errorf("postgres: commit to %s: %w", log, err)
	}
	if err := writeTiles(ctx, tx, logID, b.Tiles); err != nil {
		return fmt.Errorf("postgres: commit to %s: %w", log, err)
	}
	if b.Synced >= 0 {
		if _, err := tx.Exec(ctx, `UPDATE logs SET synced = $2 WHERE id = $1`, logID, b.Synced); err != nil {
			return fmt.Errorf("postgres: commit to %s: moving sync cursor: %w", log, err)
		}
	}
	if len(b.Records) > 0 || b.Serve > 0 {
		if _, err := tx.Exec(ctx, `UPDATE logs SET generation = generation + 1 WHERE id = $1`, logID); err != nil {
			return fmt.Errorf("postgres: commit to %s: %w", log, err)
		}
	}
	if b.Serve > 0 {
		tag, err := tx.Exec(ctx, `UPDATE logs SET served = $2 WHERE id = $1 AND served <= $2
			AND EXISTS (SELECT 1 FROM heads WHERE log_id = $1 AND size = $2)`, logID, b.Serve)
		if err != nil {
			return fmt.Errorf("postgres: commit to %s: serving head %d: %w", log, b.Serve, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("postgres: commit to %s: cannot serve head %d: not stored, or older than the served head", log, b.Serve)
		}
		// Summarize the BRIN ranges written since the last head, so that id
		// range scans (data tiles) skip them instead of reading them all.
		if len(b.Records) > 0 {
			if _, err := tx.Exec(ctx, `SELECT brin_summarize_new_values('records_id')`); err != nil {
				return fmt.Errorf("postgres: commit to %s: summarizing the id index: %w", log, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit to %s: %w", log, err)
	}
	return nil
}

func (s *Store) writeRecords(ctx context.Context, tx pgx.Tx, logID int16, recs []store.Record) error {
	if len(recs) == 0 {
		return nil
	}
	lo, hi := recs[0].ID, recs[len(recs)-1].ID+1
	if lo < 0 {
		return fmt.Errorf("record id %d is negative", lo)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].ID <= recs[i-1].ID {
			return fmt.Errorf("record ids do not ascend at %d", recs[i].ID)
		}
	}
	// Check and key every record, on all cores: Postgres waits meanwhile.
	keys := make([]int64, len(recs))
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	chunk := (len(recs) + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	for start := 0; start < len(recs); start += chunk {
		wg.Add(1)
		go func(part []store.Record, keys []int64, errs []error) {
			defer wg.Done()
			for i, r := range part {
				if p, v := store.RecordModule(r.Data); p != r.Path || v != r.Version {
					errs[i] = fmt.Errorf("record %d names %s@%s, not %s@%s", r.ID, p, v, r.Path, r.Version)
				}
				keys[i] = store.LookupKey(r.Path, r.Version)
			}
		}(recs[start:min(start+chunk, len(recs))], keys[start:], errs[start:])
	}
	wg.Wait()
	seen := make(map[string]int64, len(recs))
	for i, r := range recs {
		if errs[i] != nil {
			return errs[i]
		}
		if r.Path == "" {
			continue
		}
		pv := r.Path + "@" + r.Version
		if other, ok := seen[pv]; ok {
			return &store.DuplicateError{Path: r.Path, Version: r.Version, ID: r.ID, OtherID: other}
		}
		seen[pv] = r.ID
	}

	// Writers of one log take turns on its row; max_id tells whether any id
	// of this batch may be stored already (fetched on demand earlier).
	var maxID int64
	if err := tx.QueryRow(ctx, `SELECT max_id FROM logs WHERE id = $1 FOR UPDATE`, logID).Scan(&maxID); err != nil {
		return fmt.Errorf("locking log: %w", err)
	}
	have := make(map[int64]bool)
	if lo <= maxID {
		if err := checkStored(ctx, tx, logID, recs, have); err != nil {
			return err
		}
	}
	if hi-1 > maxID {
		if _, err := tx.Exec(ctx, `UPDATE logs SET max_id = $2 WHERE id = $1`, logID, hi-1); err != nil {
			return fmt.Errorf("moving max id: %w", err)
		}
	}

	// Look for duplicates on another connection while COPY runs on this
	// one. It sees every committed record, and no other writer can commit
	// while this transaction holds the log's row.
	probe := make(chan error, 1)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { probe <- s.probeDuplicates(pctx, logID, keys, seen, have) }()

	src := &recordReader{recs: recs, keys: keys, skip: have, logID: logID}
	_, copyErr := tx.Conn().PgConn().CopyFrom(ctx, src, CopyRecordsSQL)
	if copyErr != nil {
		cancel()
	}
	if err := <-probe; err != nil {
		return err
	}
	if copyErr != nil {
		return fmt.Errorf("copying records %d..%d: %w", lo, hi-1, copyErr)
	}
	return nil
}

// probeDuplicates fails with a *store.DuplicateError if a module@version of
// seen is stored under an id that is not the same record (have).
func (s *Store) probeDuplicates(ctx context.Context, logID int16, keys []int64, seen map[string]int64, have map[int64]bool) error {
	// log_id + 0: only the hash index of key may serve this (see lookupBatch).
	rows, err := s.pool.Query(ctx, `SELECT id, path, version FROM records
		WHERE key = ANY($2) AND log_id + 0 = $1`, logID, keys)
	if err != nil {
		return fmt.Errorf("checking records for duplicates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var path, version string
		if err := rows.Scan(&id, &path, &version); err != nil {
			return fmt.Errorf("checking records for duplicates: %w", err)
		}
		if have[id] {
			continue // the same record, stored earlier
		}
		if dup, ok := seen[path+"@"+version]; ok {
			return &store.DuplicateError{Path: path, Version: version, ID: dup, OtherID: id}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("checking records for duplicates: %w", err)
	}
	return nil
}

// checkStored marks in have the records of recs that are stored already,
// and fails if one is stored with other bytes.
func checkStored(ctx context.Context, tx pgx.Tx, logID int16, recs []store.Record, have map[int64]bool) error {
	lo, hi := recs[0].ID, recs[len(recs)-1].ID+1
	byID := make(map[int64][]byte, len(recs))
	for _, r := range recs {
		byID[r.ID] = r.Data
	}
	rows, err := tx.Query(ctx, `SELECT id, path, version, hashes, raw FROM records
		WHERE log_id = $1 AND id >= $2 AND id < $3`, logID, lo, hi)
	if err != nil {
		return fmt.Errorf("reading stored records %d..%d: %w", lo, hi-1, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var path, version string
		var hashes, raw []byte
		if err := rows.Scan(&id, &path, &version, &hashes, &raw); err != nil {
			return fmt.Errorf("reading stored records %d..%d: %w", lo, hi-1, err)
		}
		want, ok := byID[id]
		if !ok {
			continue // between two ids of a scattered batch
		}
		if !bytes.Equal(store.DecodeRecord(path, version, hashes, raw), want) {
			return fmt.Errorf("record %d is stored with other bytes than the log now gives", id)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading stored records %d..%d: %w", lo, hi-1, err)
	}
	return nil
}

func writeTiles(ctx context.Context, tx pgx.Tx, logID int16, tiles []store.Tile) error {
	if len(tiles) == 0 {
		return nil
	}
	levels := make([]int16, len(tiles))
	idxs := make([]int64, len(tiles))
	widths := make([]int16, len(tiles))
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		if t.Tile.H != store.TileHeight || t.Tile.L < 0 || t.Tile.W < 1 || t.Tile.W > 1<<store.TileHeight {
			return fmt.Errorf("cannot store tile %s", t.Tile.Path())
		}
		if len(t.Data) != t.Tile.W*32 {
			return fmt.Errorf("tile %s has %d bytes, want %d", t.Tile.Path(), len(t.Data), t.Tile.W*32)
		}
		levels[i], idxs[i], widths[i], data[i] = int16(t.Tile.L), t.Tile.N, int16(t.Tile.W), t.Data
	}
	_, err := tx.Exec(ctx, `INSERT INTO tiles (log_id, level, idx, width, hashes)
		SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::smallint[], $5::bytea[])
		ON CONFLICT (log_id, level, idx) DO UPDATE SET width = EXCLUDED.width, hashes = EXCLUDED.hashes
		WHERE tiles.width < EXCLUDED.width`, logID, levels, idxs, widths, data)
	if err != nil {
		return fmt.Errorf("writing %d tiles: %w", len(tiles), err)
	}
	return nil
}

// AddEvidence implements store.Store.
func (s *Store) AddEvidence(ctx context.Context, log string, e store.Evidence) error {
	id, err := s.logID(ctx, s.pool, log, true)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO evidence (log_id, kind, message, note_a, note_b, data)
		VALUES ($1, $2, $3, $4, $5, $6)`, id, e.Kind, e.Message, e.NoteA, e.NoteB, e.Data)
	if err != nil {
		return fmt.Errorf("postgres: keeping evidence for %s: %w", log, err)
	}
	return nil
}

// Evidence implements store.Store.
func (s *Store) Evidence(ctx context.Context, log string) ([]store.Evidence, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT kind, message, note_a, note_b, data, created_at
		FROM evidence WHERE log_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading evidence for %s: %w", log, err)
	}
	defer rows.Close()
	var es []store.Evidence
	for rows.Next() {
		var e store.Evidence
		if err := rows.Scan(&e.Kind, &e.Message, &e.NoteA, &e.NoteB, &e.Data, &e.CreatedAt); err != nil {
			return nil, fmt.Errorf("postgres: reading evidence for %s: %w", log, err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: reading evidence for %s: %w", log, err)
	}
	return es, nil
}

// LockSync implements store.Store with a session-level advisory lock held on
// a connection taken out of the pool until unlock. If the process dies, the
// session ends and the lock with it.
func (s *Store) LockSync(ctx context.Context, log string) (func(), error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: taking sync lock for %s: %w", log, err)
	}
	key := lockKey("sumkeep-sync:" + log)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("postgres: taking sync lock for %s: %w", log, err)
	}
	if !ok {
		conn.Release()
		return nil, fmt.Errorf("sync lock for %s: %w", log, store.ErrLocked)
	}
	return func() {
		// A fresh context: unlock must happen even when ctx is cancelled.
		if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The lock dies with the session: drop the connection.
			conn.Conn().Close(context.Background())
		}
		conn.Release()
	}, nil
}
