package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/sumkeep/sumkeep/store"
)

// Commit implements store.Store. The batch is checked and encoded before
// the write lock is taken; then, in one transaction, stored ids in its range
// are compared, duplicates looked for, records and tiles written and the
// log's row updated.
func (s *Store) Commit(ctx context.Context, log string, b store.Batch) error {
	if err := s.check(true); err != nil {
		return err
	}
	recs, err := encodeRecords(b.Records)
	if err != nil {
		return fmt.Errorf("sqlite: commit to %s: %w", log, err)
	}
	if err := checkTiles(b.Tiles); err != nil {
		return fmt.Errorf("sqlite: commit to %s: %w", log, err)
	}
	// A Resumable batch that serves nothing is acknowledged to nobody: it
	// need not wait for the disk (see the package documentation).
	durable := !b.Resumable || b.Serve > 0
	err = s.writeLog(ctx, log, durable, func(tx *sql.Tx, l *logRow) error {
		if e := b.Expect; e != nil && (l.served != e.Served || (e.Generation >= 0 && l.generation != e.Generation)) {
			return fmt.Errorf("expected served head %d generation %d, found %d and %d: %w",
				e.Served, e.Generation, l.served, l.generation, store.ErrConflict)
		}
		added, err := writeRecords(ctx, tx, l, recs)
		if err != nil {
			return err
		}
		if err := writeTiles(ctx, tx, l.id, b.Tiles); err != nil {
			return err
		}
		served := l.served
		if b.Serve > 0 {
			if b.Serve < l.served {
				return fmt.Errorf("cannot serve head %d: head %d is served", b.Serve, l.served)
			}
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM heads WHERE log_id = ? AND size = ?`, l.id, b.Serve).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("cannot serve head %d: not stored", b.Serve)
			}
			if err != nil {
				return fmt.Errorf("serving head %d: %w", b.Serve, err)
			}
			served = b.Serve
		}
		synced := l.synced
		if b.Synced >= 0 {
			synced = b.Synced
		}
		generation := l.generation
		if added > 0 || served != l.served {
			generation++
		}
		_, err = tx.ExecContext(ctx, `UPDATE logs SET synced = ?, served = ?, max_id = ?, generation = ? WHERE id = ?`,
			synced, served, l.maxID, generation, l.id)
		if err != nil {
			return fmt.Errorf("updating log: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: commit to %s: %w", log, err)
	}
	return nil
}

// encoded is a batch's records, checked, keyed and in their stored form.
type encoded struct {
	recs        []store.Record
	keys        []int64
	hashes, raw [][]byte
	seen        map[string]int64 // path@version -> id
}

// encodeRecords checks that the records' ids ascend from 0 or more, that
// each names its own path and version, and that no module@version occurs
// twice, and encodes them, on all cores.
func encodeRecords(recs []store.Record) (*encoded, error) {
	e := &encoded{recs: recs}
	if len(recs) == 0 {
		return e, nil
	}
	if recs[0].ID < 0 {
		return nil, fmt.Errorf("record id %d is negative", recs[0].ID)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].ID <= recs[i-1].ID {
			return nil, fmt.Errorf("record ids do not ascend at %d", recs[i].ID)
		}
	}
	e.keys = make([]int64, len(recs))
	e.hashes = make([][]byte, len(recs))
	e.raw = make([][]byte, len(recs))
	errs := make([]error, len(recs))
	procs := runtime.GOMAXPROCS(0)
	chunk := max(256, (len(recs)+procs-1)/procs)
	var wg sync.WaitGroup
	for start := 0; start < len(recs); start += chunk {
		end := min(start+chunk, len(recs))
		wg.Go(func() {
			for i := start; i < end; i++ {
				r := &recs[i]
				if err := store.CheckModule(r); err != nil {
					errs[i] = err
					continue
				}
				e.keys[i] = store.LookupKey(r.Path, r.Version)
				e.hashes[i], e.raw[i] = store.CompactRecord(r.Data, r.Path, r.Version)
				if e.hashes[i] == nil && e.raw[i] == nil {
					e.raw[i] = []byte{} // an empty record: raw, not NULL
				}
			}
		})
	}
	wg.Wait()
	e.seen = make(map[string]int64, len(recs))
	for i, r := range recs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if r.Path == "" {
			continue // kept, but not indexed: not a module@version
		}
		pv := r.Path + "@" + r.Version
		if other, ok := e.seen[pv]; ok {
			return nil, &store.DuplicateError{Path: r.Path, Version: r.Version, ID: r.ID, OtherID: other}
		}
		e.seen[pv] = r.ID
	}
	return e, nil
}

// Records are inserted insertRows at a time: one statement with many rows
// costs SQLite and the driver much less than as many one-row statements.
const insertRows = 64

// stmts prepares statements in a transaction, one per number of rows (or
// keys), and closes them with the transaction.
type stmts struct {
	tx    *sql.Tx
	query func(n int) string
	byN   map[int]*sql.Stmt
}

func (c *stmts) get(ctx context.Context, n int) (*sql.Stmt, error) {
	if st := c.byN[n]; st != nil {
		return st, nil
	}
	st, err := c.tx.PrepareContext(ctx, c.query(n))
	if err != nil {
		return nil, err
	}
	if c.byN == nil {
		c.byN = make(map[int]*sql.Stmt)
	}
	c.byN[n] = st
	return st, nil
}

func (c *stmts) close() {
	for _, st := range c.byN {
		st.Close()
	}
}

// insertQuery inserts rows records. OR FAIL: a failing statement keeps the
// rows it inserted before the failure instead of undoing them, which spares
// SQLite a statement journal (a copy of every page the statement changes);
// Commit rolls the whole transaction back anyway.
func insertQuery(rows int) string {
	var q strings.Builder
	q.WriteString(`INSERT OR FAIL INTO records (log_id, id, key, path, version, hashes, raw) VALUES `)
	for i := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		// ?1 is the log id, and each ? the parameter after the highest
		// so far (?2, ?3, ...). The driver asks for the name of every
		// parameter, which SQLite finds by a linear search of the named
		// ones: naming them all would make binding quadratic.
		q.WriteString("(?1, ?, ?, ?, ?, ?, ?)")
	}
	return q.String()
}

// writeRecords stores the records of e that are not stored already, and
// reports how many it stored. It moves l.maxID.
func writeRecords(ctx context.Context, tx *sql.Tx, l *logRow, e *encoded) (int, error) {
	recs := e.recs
	if len(recs) == 0 {
		return 0, nil
	}
	lo, hi := recs[0].ID, recs[len(recs)-1].ID
	have := make(map[int64]bool)
	if lo <= l.maxID {
		if err := checkStored(ctx, tx, l.name, l.id, recs, have); err != nil {
			return 0, err
		}
	}
	if l.maxID >= 0 {
		if err := probeDuplicates(ctx, tx, l.id, e, have); err != nil {
			return 0, err
		}
	}
	l.maxID = max(l.maxID, hi)

	ins := stmts{tx: tx, query: insertQuery}
	defer ins.close()
	todo := make([]int, 0, len(recs))
	for i, r := range recs {
		if !have[r.ID] {
			todo = append(todo, i)
		}
	}
	args := make([]any, 0, 1+6*insertRows)
	for len(todo) > 0 {
		// Full statements, then the rest one by one: a statement for every
		// remainder size would be prepared for one use.
		n := insertRows
		if len(todo) < insertRows {
			n = 1
		}
		st, err := ins.get(ctx, n)
		if err != nil {
			return 0, fmt.Errorf("writing records %d..%d: %w", lo, hi, err)
		}
		args = append(args[:0], l.id)
		for _, i := range todo[:n] {
			args = append(args, recs[i].ID, e.keys[i], recs[i].Path, recs[i].Version, e.hashes[i], e.raw[i])
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return 0, fmt.Errorf("writing records %d..%d: %w", lo, hi, err)
		}
		todo = todo[n:]
	}
	return len(recs) - len(have), nil
}

// checkStored marks in have the records of recs that are stored already,
// and fails if one is stored with other bytes. A dense batch reads its id
// range; a scattered one (on-demand fetches) reads its ids one by one.
func checkStored(ctx context.Context, tx *sql.Tx, log string, logID int64, recs []store.Record, have map[int64]bool) error {
	lo, hi := recs[0].ID, recs[len(recs)-1].ID
	stored := store.NewStoredCheck(log, recs, have)
	check := func(rows *sql.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var id int64
			var path, version string
			var hashes, raw []byte
			if err := rows.Scan(&id, &path, &version, &hashes, &raw); err != nil {
				return err
			}
			if err := stored.Row(id, path, version, hashes, raw); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	const cols = `SELECT id, path, version, hashes, raw FROM records WHERE log_id = ?`
	if uint64(hi-lo) < 4*uint64(len(recs)) {
		rows, err := tx.QueryContext(ctx, cols+` AND id >= ? AND id <= ?`, logID, lo, hi)
		if err == nil {
			err = check(rows)
		}
		if err != nil {
			return fmt.Errorf("reading stored records %d..%d: %w", lo, hi, err)
		}
		return nil
	}
	st, err := tx.PrepareContext(ctx, cols+` AND id = ?`)
	if err != nil {
		return fmt.Errorf("reading stored records: %w", err)
	}
	defer st.Close()
	for _, r := range recs {
		rows, err := st.QueryContext(ctx, logID, r.ID)
		if err == nil {
			err = check(rows)
		}
		if err != nil {
			return fmt.Errorf("reading stored record %d: %w", r.ID, err)
		}
	}
	return nil
}

// probeKeys is how many lookup keys one duplicate probe asks for.
const probeKeys = 256

func probeQuery(keys int) string {
	return `SELECT id, path, version FROM records INDEXED BY records_key
		WHERE log_id = ? AND key IN (?` + strings.Repeat(", ?", keys-1) + `)`
}

// probeDuplicates fails with a *store.DuplicateError if a module@version of
// e is stored under an id that is not the same record (have).
func probeDuplicates(ctx context.Context, tx *sql.Tx, logID int64, e *encoded, have map[int64]bool) error {
	var keys []any
	for i, r := range e.recs {
		if r.Path != "" && !have[r.ID] {
			keys = append(keys, e.keys[i])
		}
	}
	probes := stmts{tx: tx, query: probeQuery}
	defer probes.close()
	args := make([]any, 0, 1+probeKeys)
	for len(keys) > 0 {
		n := min(len(keys), probeKeys)
		st, err := probes.get(ctx, n)
		if err != nil {
			return fmt.Errorf("checking records for duplicates: %w", err)
		}
		args = append(append(args[:0], logID), keys[:n]...)
		if err := scanDuplicates(ctx, st, args, e, have); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

func scanDuplicates(ctx context.Context, st *sql.Stmt, args []any, e *encoded, have map[int64]bool) error {
	rows, err := st.QueryContext(ctx, args...)
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
		if dup, ok := e.seen[path+"@"+version]; ok {
			return &store.DuplicateError{Path: path, Version: version, ID: dup, OtherID: id}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("checking records for duplicates: %w", err)
	}
	return nil
}

func checkTiles(tiles []store.Tile) error {
	for _, t := range tiles {
		if t.Tile.H != store.TileHeight || t.Tile.L < 0 || t.Tile.N < 0 || t.Tile.W < 1 || t.Tile.W > 1<<store.TileHeight {
			return fmt.Errorf("cannot store tile %s", t.Tile.Path())
		}
		if len(t.Data) != t.Tile.W*32 {
			return fmt.Errorf("tile %s has %d bytes, want %d", t.Tile.Path(), len(t.Data), t.Tile.W*32)
		}
	}
	return nil
}

// writeTiles stores tiles, replacing a stored tile only by a wider one.
func writeTiles(ctx context.Context, tx *sql.Tx, logID int64, tiles []store.Tile) error {
	if len(tiles) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO tiles (log_id, level, idx, width, hashes) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (log_id, level, idx) DO UPDATE SET width = excluded.width, hashes = excluded.hashes
		WHERE excluded.width > tiles.width`)
	if err != nil {
		return fmt.Errorf("writing tiles: %w", err)
	}
	defer st.Close()
	for _, t := range tiles {
		if _, err := st.ExecContext(ctx, logID, t.Tile.L, t.Tile.N, t.Tile.W, t.Data); err != nil {
			return fmt.Errorf("writing tile %s: %w", t.Tile.Path(), err)
		}
	}
	return nil
}

// AddEvidence implements store.Store. Evidence is written durably.
func (s *Store) AddEvidence(ctx context.Context, log string, e store.Evidence) error {
	if err := s.check(true); err != nil {
		return err
	}
	err := s.writeLog(ctx, log, true, func(tx *sql.Tx, l *logRow) error {
		now := time.Now().UnixMicro()
		_, err := tx.ExecContext(ctx, `INSERT INTO evidence (log_id, kind, message, note_a, note_b, data, created_at, source, object, last_seen)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?7)
			ON CONFLICT (log_id, kind, source, object) WHERE object <> ''
			DO UPDATE SET count = count + 1, last_seen = excluded.last_seen`,
			l.id, e.Kind, e.Message, e.NoteA, e.NoteB, e.Data, now, e.Source, e.Object)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: keeping evidence for %s: %w", log, err)
	}
	return nil
}

// Evidence implements store.Store.
func (s *Store) Evidence(ctx context.Context, log string) ([]store.Evidence, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT kind, message, source, object, note_a, note_b, data, created_at, count, last_seen
		FROM evidence WHERE log_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading evidence for %s: %w", log, err)
	}
	defer rows.Close()
	var es []store.Evidence
	for rows.Next() {
		var e store.Evidence
		var created, last int64
		if err := rows.Scan(&e.Kind, &e.Message, &e.Source, &e.Object, &e.NoteA, &e.NoteB, &e.Data, &created, &e.Count, &last); err != nil {
			return nil, fmt.Errorf("sqlite: reading evidence for %s: %w", log, err)
		}
		e.CreatedAt = time.UnixMicro(created)
		e.LastSeen = time.UnixMicro(last)
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: reading evidence for %s: %w", log, err)
	}
	return es, nil
}
