package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// ReadRecords implements store.Store.
func (s *Store) ReadRecords(ctx context.Context, log string, start, n int64) ([]store.Record, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, recordRangeSQL, id, start, start+n)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading records %d+%d of %s: %w", start, n, log, err)
	}
	defer rows.Close()
	recs, err := scanRecordRange(rows, start, n)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading records %d+%d of %s: %w", start, n, log, err)
	}
	if int64(len(recs)) != n {
		return nil, fmt.Errorf("record %d of %s: %w", start+int64(len(recs)), log, store.ErrNotFound)
	}
	return recs, nil
}

// recordRangeSQL reads the records of log $1 with ids in [$2, $3).
const recordRangeSQL = `SELECT id, path, version, hashes, raw FROM records
	WHERE log_id = $1 AND id >= $2 AND id < $3 ORDER BY id`

// scanRecordRange reads up to n rows of recordRangeSQL from id start on,
// stopping at the first gap: fewer than n records means one is missing.
func scanRecordRange(rows pgx.Rows, start, n int64) ([]store.Record, error) {
	recs := make([]store.Record, 0, n)
	for rows.Next() {
		var r store.Record
		var hashes, raw []byte
		if err := rows.Scan(&r.ID, &r.Path, &r.Version, &hashes, &raw); err != nil {
			return nil, err
		}
		if r.ID != start+int64(len(recs)) {
			break // a gap
		}
		r.Data = store.DecodeRecord(r.Path, r.Version, hashes, raw)
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// ReadTiles implements store.Store.
func (s *Store) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if err != nil {
		return nil, err
	}
	if len(tiles) == 0 {
		return nil, nil
	}
	levels := make([]int16, len(tiles))
	idxs := make([]int64, len(tiles))
	for i, t := range tiles {
		if t.H != store.TileHeight || t.L < 0 {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), store.ErrNotFound)
		}
		levels[i], idxs[i] = int16(t.L), t.N
	}
	type key struct {
		l int16
		n int64
	}
	rows, err := s.pool.Query(ctx, `SELECT level, idx, hashes FROM tiles
		JOIN unnest($2::smallint[], $3::bigint[]) AS q(l, n) ON level = q.l AND idx = q.n
		WHERE log_id = $1`, id, levels, idxs)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading tiles of %s: %w", log, err)
	}
	defer rows.Close()
	found := make(map[key][]byte, len(tiles))
	for rows.Next() {
		var k key
		var data []byte
		if err := rows.Scan(&k.l, &k.n, &data); err != nil {
			return nil, fmt.Errorf("postgres: reading tiles of %s: %w", log, err)
		}
		found[k] = data
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: reading tiles of %s: %w", log, err)
	}
	out := make([][]byte, len(tiles))
	var leaves []int // level-0 tiles not stored (wide enough)
	for i, t := range tiles {
		data := found[key{int16(t.L), t.N}]
		switch {
		case len(data) >= t.W*tlog.HashSize:
			out[i] = data[: t.W*tlog.HashSize : t.W*tlog.HashSize]
		case t.L == 0:
			leaves = append(leaves, i)
		default:
			return nil, fmt.Errorf("tile %s of %s: %w", t.Path(), log, store.ErrNotFound)
		}
	}
	if len(leaves) > 0 {
		if err := s.leafTiles(ctx, id, log, tiles, leaves, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// leafTiles rebuilds the level-0 tiles tiles[i], i in which, from their
// records (see store.LeafTile), reading all of them in one round trip.
func (s *Store) leafTiles(ctx context.Context, id int16, log string, tiles []tlog.Tile, which []int, out [][]byte) error {
	var q pgx.Batch
	recs := make([][]store.Record, len(which))
	for j, i := range which {
		t := tiles[i]
		start := t.N << store.TileHeight
		q.Queue(recordRangeSQL, id, start, start+int64(t.W)).Query(func(rows pgx.Rows) error {
			var err error
			recs[j], err = scanRecordRange(rows, start, int64(t.W))
			return err
		})
	}
	if err := s.pool.SendBatch(ctx, &q).Close(); err != nil {
		return fmt.Errorf("postgres: reading records under level-0 tiles of %s: %w", log, err)
	}
	for j, i := range which {
		data, err := store.LeafTile(tiles[i], recs[j])
		if err != nil {
			return fmt.Errorf("%s: %w", log, err)
		}
		out[i] = data
	}
	return nil
}

// RecordIDs implements store.Store. It is meant for stores filled on demand:
// on a fully synced log it sorts every id above after.
func (s *Store) RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM records WHERE log_id = $1 AND id > $2 ORDER BY id LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing records of %s after %d: %w", log, after, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("postgres: listing records of %s after %d: %w", log, after, err)
	}
	return ids, nil
}
