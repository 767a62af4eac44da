package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// lookupQuery finds the record for (log_id, key, path, version) with the
// lowest id below a tree size. INDEXED BY: it must search records_key
// (log_id, key, id), whatever the planner thinks of the primary key's id
// range; SQLite fails the statement rather than plan a scan.
const lookupQuery = `SELECT id, hashes, raw FROM records INDEXED BY records_key
	WHERE log_id = ?1 AND key = ?2 AND id < ?5 AND path = ?3 AND version = ?4
	ORDER BY id LIMIT 1`

// Lookup implements store.Store. It is one search of the records_key index
// (log_id, key, id) below maxID, then one of the primary key for the row.
func (s *Store) Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error) {
	r := store.Record{Path: path, Version: version}
	id, err := s.logID(ctx, log)
	if err != nil {
		return r, err
	}
	var hashes, raw []byte
	err = s.lookup.QueryRowContext(ctx, id, store.LookupKey(path, version), path, version, maxID).Scan(&r.ID, &hashes, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%s@%s in %s: %w", path, version, log, store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: looking up %s@%s in %s: %w", path, version, log, err)
	}
	r.Data = store.DecodeRecord(path, version, hashes, raw)
	return r, nil
}

// ReadRecords implements store.Store.
func (s *Store) ReadRecords(ctx context.Context, log string, start, n int64) ([]store.Record, error) {
	id, err := s.logID(ctx, log)
	if err != nil {
		return nil, err
	}
	return readRecords(ctx, s.r, id, log, start, n)
}

// queryer is a connection pool or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func readRecords(ctx context.Context, q queryer, id int64, log string, start, n int64) ([]store.Record, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, path, version, hashes, raw FROM records
		WHERE log_id = ? AND id >= ? AND id < ? ORDER BY id`, id, start, start+n)
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading records %d+%d of %s: %w", start, n, log, err)
	}
	defer rows.Close()
	recs := make([]store.Record, 0, max(0, min(n, 1<<16)))
	for rows.Next() {
		var r store.Record
		var hashes, raw []byte
		if err := rows.Scan(&r.ID, &r.Path, &r.Version, &hashes, &raw); err != nil {
			return nil, fmt.Errorf("sqlite: reading records %d+%d of %s: %w", start, n, log, err)
		}
		if r.ID != start+int64(len(recs)) {
			break // a gap: reported below
		}
		r.Data = store.DecodeRecord(r.Path, r.Version, hashes, raw)
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: reading records %d+%d of %s: %w", start, n, log, err)
	}
	if int64(len(recs)) != n {
		return nil, fmt.Errorf("record %d of %s: %w", start+int64(len(recs)), log, store.ErrNotFound)
	}
	return recs, nil
}

// ReadTiles implements store.Store. The tiles are read in one read
// transaction, so they come from one state of the store.
func (s *Store) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	id, err := s.logID(ctx, log)
	if err != nil {
		return nil, err
	}
	if len(tiles) == 0 {
		return nil, nil
	}
	for _, t := range tiles {
		if t.H != store.TileHeight || t.L < 0 || t.W < 1 || t.W > 1<<store.TileHeight {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), store.ErrNotFound)
		}
	}
	const query = `SELECT hashes FROM tiles WHERE log_id = ? AND level = ? AND idx = ?`
	// read returns tile t as stored, or rebuilt from its records if it is
	// a level-0 tile that is not (see store.LeafTile).
	read := func(row *sql.Row, q queryer, t tlog.Tile) ([]byte, error) {
		var data []byte
		err := row.Scan(&data)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("sqlite: reading tile %s of %s: %w", t.Path(), log, err)
		}
		if len(data) >= t.W*tlog.HashSize {
			return data[: t.W*tlog.HashSize : t.W*tlog.HashSize], nil
		}
		if t.L != 0 {
			return nil, fmt.Errorf("tile %s of %s: %w", t.Path(), log, store.ErrNotFound)
		}
		recs, err := readRecords(ctx, q, id, log, t.N<<store.TileHeight, int64(t.W))
		if err != nil {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), err)
		}
		return store.LeafTile(t, recs)
	}
	if len(tiles) == 1 {
		t := tiles[0]
		data, err := read(s.r.QueryRowContext(ctx, query, id, t.L, t.N), s.r, t)
		if err != nil {
			return nil, err
		}
		return [][]byte{data}, nil
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading tiles of %s: %w", log, err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading tiles of %s: %w", log, err)
	}
	defer st.Close()
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if out[i], err = read(st.QueryRowContext(ctx, id, t.L, t.N), tx, t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RecordIDs implements store.Store: a range of the primary key.
func (s *Store) RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM records WHERE log_id = ? AND id > ? ORDER BY id LIMIT ?`, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: listing records of %s after %d: %w", log, after, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("sqlite: listing records of %s after %d: %w", log, after, err)
		}
		ids = append(ids, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: listing records of %s after %d: %w", log, after, err)
	}
	return ids, nil
}
