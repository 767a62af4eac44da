package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

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
	recs, err := scanRecordRange(rows, log, start, n)
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
// stopping at the first gap: fewer than n records means one is missing. A
// row that is not one a store writes (store.RecordRow), or two rows for one
// id, is a *store.CorruptError.
func scanRecordRange(rows pgx.Rows, log string, start, n int64) ([]store.Record, error) {
	defer rows.Close()
	recs := make([]store.Record, 0, max(0, min(n, 1<<16)))
	for rows.Next() {
		var id int64
		var path, version string
		var hashes, raw []byte
		if err := rows.Scan(&id, &path, &version, &hashes, &raw); err != nil {
			return nil, err
		}
		r, err := store.RecordRow(log, id, path, version, hashes, raw)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 && id <= recs[len(recs)-1].ID {
			return nil, store.CheckRecordIDs(log, recs[len(recs)-1].ID, id, false)
		}
		if id != start+int64(len(recs)) {
			break // a gap
		}
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
	levels, idxs, err := tileKeys(tiles)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, tilesSQL, id, levels, idxs)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading tiles of %s: %w", log, err)
	}
	found, err := scanTiles(rows, log, len(tiles))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(tiles))
	var leaves []int // level-0 tiles not stored (wide enough)
	for i, t := range tiles {
		data := found[tileKey{int16(t.L), t.N}]
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

// tilesSQL reads the stored tiles of log $1 at (level, idx) pairs
// ($2[i], $3[i]).
const tilesSQL = `SELECT level, idx, width, hashes FROM tiles
	JOIN unnest($2::smallint[], $3::bigint[]) AS q(l, n) ON level = q.l AND idx = q.n
	WHERE log_id = $1`

// tileKey is a stored tile's (level, idx).
type tileKey struct {
	l int16
	n int64
}

// tileKeys returns tilesSQL's arguments for tiles, or ErrNotFound for a
// tile no store holds (a data tile, another height).
func tileKeys(tiles []tlog.Tile) (levels []int16, idxs []int64, err error) {
	levels, idxs = make([]int16, len(tiles)), make([]int64, len(tiles))
	for i, t := range tiles {
		if t.H != store.TileHeight || t.L < 0 {
			return nil, nil, fmt.Errorf("tile %s: %w", t.Path(), store.ErrNotFound)
		}
		levels[i], idxs[i] = int16(t.L), t.N
	}
	return levels, idxs, nil
}

// scanTiles reads the rows of tilesSQL, checking each.
func scanTiles(rows pgx.Rows, log string, n int) (map[tileKey][]byte, error) {
	defer rows.Close()
	found := make(map[tileKey][]byte, n)
	for rows.Next() {
		var k tileKey
		var width int16
		var data []byte
		if err := rows.Scan(&k.l, &k.n, &width, &data); err != nil {
			return nil, fmt.Errorf("postgres: reading tiles of %s: %w", log, err)
		}
		if err := store.CheckTileRow(log, int64(k.l), k.n, int64(width), data); err != nil {
			return nil, fmt.Errorf("postgres: reading tiles: %w", err)
		}
		found[k] = data
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: reading tiles of %s: %w", log, err)
	}
	return found, nil
}

// ReadSomeTiles implements store.Store in one round trip: the stored tiles
// and, beside them, the records under each level-0 tile asked for that the
// full-sync cursor covers, where they are all stored (so that the tile can
// be rebuilt: store.LeafTile). The database counts them before it reads
// any.
func (s *Store) ReadSomeTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	var want []tlog.Tile // tiles a store can hold
	var at []int         // their indexes in tiles
	var leafN, leafW []int64
	asked := make(map[tlog.Tile]bool)
	for i, t := range tiles {
		if t.H != store.TileHeight || t.L < 0 || t.W < 1 || t.W > 1<<store.TileHeight {
			continue
		}
		want, at = append(want, t), append(at, i)
		if t.L == 0 && !asked[t] {
			asked[t] = true
			leafN, leafW = append(leafN, t.N), append(leafW, int64(t.W))
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	levels, idxs, err := tileKeys(want)
	if err != nil {
		return nil, err
	}
	var found map[tileKey][]byte
	leaves := make(map[tlog.Tile][]store.Record)
	var q pgx.Batch
	q.Queue(tilesSQL, id, levels, idxs).Query(func(rows pgx.Rows) (err error) {
		defer recoverTo(&err, "reading tiles")
		found, err = scanTiles(rows, log, len(want))
		return err
	})
	if len(leafN) > 0 {
		q.Queue(completeLeavesSQL, id, leafN, leafW).Query(func(rows pgx.Rows) (err error) {
			defer recoverTo(&err, "reading records under level-0 tiles")
			return scanLeafRecords(rows, log, leaves)
		})
	}
	if err := s.pool.SendBatch(ctx, &q).Close(); err != nil {
		return nil, fmt.Errorf("postgres: reading tiles of %s: %w", log, err)
	}
	for j, t := range want {
		i := at[j]
		if data := found[tileKey{int16(t.L), t.N}]; len(data) >= t.W*tlog.HashSize {
			out[i] = data[: t.W*tlog.HashSize : t.W*tlog.HashSize]
			continue
		}
		recs, ok := leaves[t]
		if t.L != 0 || !ok {
			continue
		}
		data, err := store.LeafTile(t, recs)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", log, err)
		}
		out[i] = data
	}
	return out, nil
}

// completeLeavesSQL reads, for each level-0 tile ($2[i], width $3[i]) of
// log $1 under its full-sync cursor whose records are all stored, those
// records, each row naming its tile; tiles with a record missing give no
// rows, and their records are not read. A tile above the cursor is not
// looked for at all (see leafRangeSQL).
const completeLeavesSQL = `SELECT q.n, q.w, r.id, r.path, r.version, r.hashes, r.raw
	FROM (SELECT * FROM unnest($2::bigint[], $3::bigint[]) AS u(n, w)
		WHERE u.n * 256 + u.w <= (SELECT synced FROM logs WHERE id = $1)) AS q
	CROSS JOIN LATERAL (SELECT count(*) AS c FROM records
		WHERE log_id = $1 AND id >= q.n * 256 AND id < q.n * 256 + q.w) AS k
	JOIN LATERAL (SELECT id, path, version, hashes, raw FROM records
		WHERE log_id = $1 AND id >= q.n * 256 AND id < q.n * 256 + q.w) AS r ON k.c = q.w
	ORDER BY q.n, q.w, r.id`

// scanLeafRecords reads the rows of completeLeavesSQL into leaves, by tile.
func scanLeafRecords(rows pgx.Rows, log string, leaves map[tlog.Tile][]store.Record) error {
	defer rows.Close()
	for rows.Next() {
		var n, w, id int64
		var path, version string
		var hashes, raw []byte
		if err := rows.Scan(&n, &w, &id, &path, &version, &hashes, &raw); err != nil {
			return fmt.Errorf("postgres: reading records under level-0 tiles of %s: %w", log, err)
		}
		r, err := store.RecordRow(log, id, path, version, hashes, raw)
		if err != nil {
			return fmt.Errorf("postgres: reading records under level-0 tiles: %w", err)
		}
		t := tlog.Tile{H: store.TileHeight, L: 0, N: n, W: int(w)}
		leaves[t] = append(leaves[t], r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: reading records under level-0 tiles of %s: %w", log, err)
	}
	return nil
}

// leafRangeSQL is recordRangeSQL for the records under a level-0 tile,
// which are read only where the full-sync cursor covers them: records
// stored on demand come with their level-0 tiles, so above the cursor a
// tile the store lacks cannot be rebuilt, and looking for its records
// would read the whole table (they are stored in no order there, and the
// BRIN index on id then matches every block).
const leafRangeSQL = `SELECT id, path, version, hashes, raw FROM records
	WHERE log_id = $1 AND id >= $2 AND id < $3
		AND $3 <= (SELECT synced FROM logs WHERE id = $1)
	ORDER BY id`

// leafTiles rebuilds the level-0 tiles tiles[i], i in which, from their
// records (see store.LeafTile), reading all of them in one round trip.
func (s *Store) leafTiles(ctx context.Context, id int16, log string, tiles []tlog.Tile, which []int, out [][]byte) error {
	var q pgx.Batch
	recs := make([][]store.Record, len(which))
	for j, i := range which {
		t := tiles[i]
		start := t.N << store.TileHeight
		q.Queue(leafRangeSQL, id, start, start+int64(t.W)).Query(func(rows pgx.Rows) (err error) {
			// A panic here would unwind through pgx and leave the
			// connection acquired forever: turn it into an error.
			defer recoverTo(&err, "reading records under tile "+t.Path())
			recs[j], err = scanRecordRange(rows, log, start, int64(t.W))
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

var _ store.HeadGrouper = (*Store)(nil)

// GroupHeadSizes implements store.HeadGrouper.
func (s *Store) GroupHeadSizes(ctx context.Context, log string, lo, hi int64, shift uint) ([]int64, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT min(size) FROM heads WHERE log_id = $1 AND size >= $2 AND size < $3
		GROUP BY (size - 1) >> $4 ORDER BY 1`, id, lo, hi, int32(shift))
	if err != nil {
		return nil, fmt.Errorf("postgres: grouping heads of %s: %w", log, err)
	}
	sizes, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("postgres: grouping heads of %s: %w", log, err)
	}
	return sizes, nil
}

var _ store.RecordGrouper = (*Store)(nil)

// GroupRecordIDs implements store.RecordGrouper: one scan of the log's
// records, aggregated by hash.
func (s *Store) GroupRecordIDs(ctx context.Context, log string, lo, hi int64, shift uint) ([]store.IDRange, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT min(id), max(id) FROM records WHERE log_id = $1 AND id >= $2 AND id < $3
		GROUP BY id >> $4 ORDER BY 1`, id, lo, hi, int32(shift))
	if err != nil {
		return nil, fmt.Errorf("postgres: grouping records of %s: %w", log, err)
	}
	var out []store.IDRange
	var r store.IDRange
	if _, err := pgx.ForEachRow(rows, []any{&r.Min, &r.Max}, func() error {
		out = append(out, r)
		return store.CheckIDRange(log, r)
	}); err != nil {
		return nil, fmt.Errorf("postgres: grouping records of %s: %w", log, err)
	}
	return out, nil
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
	// A walk from the start (after < 0) sees negative ids too, which
	// no store writes: they are reported, not skipped.
	from := int64(math.MinInt64)
	if after >= 0 {
		if after == math.MaxInt64 {
			return nil, nil
		}
		from = after + 1
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM records WHERE log_id = $1 AND id >= $2 ORDER BY id LIMIT $3`, id, from, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing records of %s after %d: %w", log, after, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("postgres: listing records of %s after %d: %w", log, after, err)
	}
	for i, n := range ids {
		prev := after
		if i > 0 {
			prev = ids[i-1]
		}
		if err := store.CheckRecordIDs(log, prev, n, after < 0 && i == 0); err != nil {
			return nil, fmt.Errorf("postgres: listing records after %d: %w", after, err)
		}
	}
	return ids, nil
}

// ErrPanic reports a panic in the store's own code while it held a
// connection, turned into an error so that the connection is released.
var ErrPanic = errors.New("postgres: internal error (panic)")

// recoverTo, deferred, turns a panic into an error in *err.
func recoverTo(err *error, what string) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%s: %w: %v", what, ErrPanic, p)
	}
}
