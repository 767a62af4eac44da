package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"

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
	var rid int64
	var hashes, raw []byte
	err = s.lookup.QueryRowContext(ctx, id, store.LookupKey(path, version), path, version, maxID).Scan(&rid, &hashes, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%s@%s in %s: %w", path, version, log, store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: looking up %s@%s in %s: %w", path, version, log, err)
	}
	rec, err := store.RecordRow(log, rid, path, version, hashes, raw)
	if err != nil {
		return r, fmt.Errorf("sqlite: looking up %s@%s: %w", path, version, err)
	}
	return rec, nil
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
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
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
		var id int64
		var path, version string
		var hashes, raw []byte
		if err := rows.Scan(&id, &path, &version, &hashes, &raw); err != nil {
			return nil, fmt.Errorf("sqlite: reading records %d+%d of %s: %w", start, n, log, err)
		}
		r, err := store.RecordRow(log, id, path, version, hashes, raw)
		if err != nil {
			return nil, fmt.Errorf("sqlite: reading records %d+%d: %w", start, n, err)
		}
		if len(recs) > 0 && id <= recs[len(recs)-1].ID {
			return nil, fmt.Errorf("sqlite: reading records %d+%d: %w", start, n, store.CheckRecordIDs(log, recs[len(recs)-1].ID, id, false))
		}
		if id != start+int64(len(recs)) {
			break // a gap: reported below
		}
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
		if !storable(t) {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), store.ErrNotFound)
		}
	}
	return s.readTiles(ctx, id, log, tiles, false)
}

// ReadSomeTiles implements store.Store, as ReadTiles does but with nil for
// each tile ReadTiles would not find.
func (s *Store) ReadSomeTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return make([][]byte, len(tiles)), nil
	}
	if err != nil {
		return nil, err
	}
	return s.readTiles(ctx, id, log, tiles, true)
}

// storable reports whether a store can hold t at all.
func storable(t tlog.Tile) bool {
	return t.H == store.TileHeight && t.L >= 0 && t.W >= 1 && t.W <= 1<<store.TileHeight
}

// readTiles reads tiles of log id (each storable, unless some) in one read
// transaction. A tile not found fails the read with ErrNotFound, unless
// some: then it is nil.
// tileQuery reads a stored tile (see Store.tile).
const tileQuery = `SELECT width, hashes FROM tiles WHERE log_id = ? AND level = ? AND idx = ?`

func (s *Store) readTiles(ctx context.Context, id int64, log string, tiles []tlog.Tile, some bool) ([][]byte, error) {
	// The full-sync cursor, read once, by the first tile to be rebuilt.
	synced := int64(-1)
	// read returns tile t as stored, or rebuilt from its records if it is
	// a level-0 tile that is not (see store.LeafTile).
	read := func(row *sql.Row, q queryer, t tlog.Tile) ([]byte, error) {
		var width int64
		var data []byte
		err := row.Scan(&width, &data)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			data = nil
		case err != nil:
			return nil, fmt.Errorf("sqlite: reading tile %s of %s: %w", t.Path(), log, err)
		default:
			if err := store.CheckTileRow(log, int64(t.L), t.N, width, data); err != nil {
				return nil, fmt.Errorf("sqlite: reading tile %s: %w", t.Path(), err)
			}
		}
		if len(data) >= t.W*tlog.HashSize {
			return data[: t.W*tlog.HashSize : t.W*tlog.HashSize], nil
		}
		if t.L != 0 {
			return nil, fmt.Errorf("tile %s of %s: %w", t.Path(), log, store.ErrNotFound)
		}
		// Rebuilt only under the full-sync cursor (see store.Reader).
		if synced < 0 {
			if err := q.QueryRowContext(ctx, `SELECT synced FROM logs WHERE id = ?`, id).Scan(&synced); err != nil {
				return nil, fmt.Errorf("sqlite: reading the full-sync cursor of %s: %w", log, err)
			}
		}
		if t.N<<store.TileHeight+int64(t.W) > synced {
			return nil, fmt.Errorf("tile %s of %s: %w", t.Path(), log, store.ErrNotFound)
		}
		recs, err := readRecords(ctx, q, id, log, t.N<<store.TileHeight, int64(t.W))
		if err != nil {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), err)
		}
		return store.LeafTile(t, recs)
	}
	// keep turns a tile not found into nil, if some.
	keep := func(data []byte, err error) ([]byte, error) {
		if some && errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return data, err
	}
	if len(tiles) == 1 && storable(tiles[0]) {
		t := tiles[0]
		data, err := keep(read(s.tile.QueryRowContext(ctx, id, t.L, t.N), s.r, t))
		if err != nil {
			return nil, err
		}
		return [][]byte{data}, nil
	}
	out := make([][]byte, len(tiles))
	if !slices.ContainsFunc(tiles, storable) {
		return out, nil
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading tiles of %s: %w", log, err)
	}
	defer tx.Rollback()
	st := tx.StmtContext(ctx, s.tile)
	defer st.Close()
	for i, t := range tiles {
		if !storable(t) {
			continue // only when some: ReadTiles checked
		}
		if out[i], err = keep(read(st.QueryRowContext(ctx, id, t.L, t.N), tx, t)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var _ store.HeadGrouper = (*Store)(nil)

// GroupHeadSizes implements store.HeadGrouper.
func (s *Store) GroupHeadSizes(ctx context.Context, log string, lo, hi int64, shift uint) ([]int64, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT min(size) FROM heads WHERE log_id = ? AND size >= ? AND size < ?
		GROUP BY (size - 1) >> ? ORDER BY 1`, id, lo, hi, int64(shift))
	if err != nil {
		return nil, fmt.Errorf("sqlite: grouping heads of %s: %w", log, err)
	}
	defer rows.Close()
	var sizes []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("sqlite: grouping heads of %s: %w", log, err)
		}
		sizes = append(sizes, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: grouping heads of %s: %w", log, err)
	}
	return sizes, nil
}

var _ store.RecordGrouper = (*Store)(nil)

// GroupRecordIDs implements store.RecordGrouper.
func (s *Store) GroupRecordIDs(ctx context.Context, log string, lo, hi int64, shift uint) ([]store.IDRange, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT min(id), max(id) FROM records WHERE log_id = ? AND id >= ? AND id < ?
		GROUP BY id >> ? ORDER BY 1`, id, lo, hi, int64(shift))
	if err != nil {
		return nil, fmt.Errorf("sqlite: grouping records of %s: %w", log, err)
	}
	defer rows.Close()
	var out []store.IDRange
	for rows.Next() {
		var r store.IDRange
		if err := rows.Scan(&r.Min, &r.Max); err != nil {
			return nil, fmt.Errorf("sqlite: grouping records of %s: %w", log, err)
		}
		if err := store.CheckIDRange(log, r); err != nil {
			return nil, fmt.Errorf("sqlite: grouping records of %s: %w", log, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: grouping records of %s: %w", log, err)
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
	// A walk from the start (after < 0) sees negative ids too, which
	// no store writes: they are reported, not skipped.
	from := int64(math.MinInt64)
	if after >= 0 {
		if after == math.MaxInt64 {
			return nil, nil
		}
		from = after + 1
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM records WHERE log_id = ? AND id >= ? ORDER BY id LIMIT ?`, id, from, limit)
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
		prev := after
		if len(ids) > 0 {
			prev = ids[len(ids)-1]
		}
		if err := store.CheckRecordIDs(log, prev, n, after < 0 && len(ids) == 0); err != nil {
			return nil, fmt.Errorf("sqlite: listing records after %d: %w", after, err)
		}
		ids = append(ids, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: listing records of %s after %d: %w", log, after, err)
	}
	return ids, nil
}
