package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sumkeep/sumkeep/store"
)

// CheckBundle checks that every row of the database is one an export of
// log writes (see sync.Export): one log, named log, with its heads, the
// records and tiles under its served head, and nothing else. Any other row
// is a *store.CorruptError naming it, or an error saying what is there
// that an export does not write. Import runs it before anything else: a
// bundle is someone else's file, and a row no read path meets (an extra
// tile, a record with a negative id) must not pass unnoticed either.
func (s *Store) CheckBundle(ctx context.Context, log string) error {
	if err := s.check(false); err != nil {
		return err
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: checking %s: %w", s.path, err)
	}
	defer tx.Rollback()
	return checkBundle(ctx, tx, log)
}

func checkBundle(ctx context.Context, tx *sql.Tx, log string) error {
	var logs int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM logs`).Scan(&logs); err != nil {
		return fmt.Errorf("counting logs: %w", err)
	}
	var id, synced, served, maxID int64
	err := tx.QueryRowContext(ctx, `SELECT id, synced, served, max_id FROM logs WHERE name = ?`, log).
		Scan(&id, &synced, &served, &maxID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("it holds no log %s", log)
	}
	if err != nil {
		return fmt.Errorf("reading log %s: %w", log, err)
	}
	if logs != 1 {
		return fmt.Errorf("it holds %d logs; an export writes one", logs)
	}
	bad := func(table, row, format string, args ...any) error {
		return &store.CorruptError{Log: log, Table: table, Row: row, Err: fmt.Errorf(format, args...)}
	}
	if synced != 0 || served <= 0 {
		return bad("logs", "name "+log, "full-sync cursor %d and served head %d; an export writes 0 and its head", synced, served)
	}
	for _, table := range []string{"heads", "tiles", "records", "evidence"} {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+table+` WHERE log_id <> ?`, id).Scan(&n); err != nil {
			return fmt.Errorf("checking %s: %w", table, err)
		}
		if n > 0 {
			return fmt.Errorf("table %s holds %d rows of no log it names", table, n)
		}
	}
	var evidence int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM evidence`).Scan(&evidence); err != nil {
		return fmt.Errorf("checking evidence: %w", err)
	}
	if evidence > 0 {
		return fmt.Errorf("table evidence holds %d rows; an export writes none", evidence)
	}

	// Heads: each one the signed note of its tree, the served one among them.
	rows, err := tx.QueryContext(ctx, `SELECT `+headCols+` FROM heads ORDER BY size`)
	if err != nil {
		return fmt.Errorf("reading heads: %w", err)
	}
	servedFound := false
	for rows.Next() {
		h, err := scanHead(rows, log)
		if err != nil {
			rows.Close()
			return err
		}
		if h.Size > served {
			rows.Close()
			return bad("heads", fmt.Sprintf("size %d", h.Size), "a head above the served head %d", served)
		}
		servedFound = servedFound || h.Size == served
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("reading heads: %w", err)
	}
	if !servedFound {
		return bad("logs", "name "+log, "served head %d is not stored", served)
	}

	// Tiles: each a tile of the served tree, no wider than in it.
	rows, err = tx.QueryContext(ctx, `SELECT level, idx, width, hashes FROM tiles ORDER BY level, idx`)
	if err != nil {
		return fmt.Errorf("reading tiles: %w", err)
	}
	for rows.Next() {
		var level, idx, width int64
		var hashes []byte
		if err := rows.Scan(&level, &idx, &width, &hashes); err != nil {
			rows.Close()
			return fmt.Errorf("reading tiles: %w", err)
		}
		if err := store.CheckTileRow(log, level, idx, width, hashes); err != nil {
			rows.Close()
			return err
		}
		// Hashes at this level in the served tree: served >> (8 level).
		n := int64(0)
		if level*store.TileHeight < 63 {
			n = served >> (level * store.TileHeight)
		}
		if idx > n>>store.TileHeight || idx<<store.TileHeight+width > n {
			rows.Close()
			return bad("tiles", fmt.Sprintf("level %d idx %d", level, idx), "width %d reaches beyond the served tree of size %d", width, served)
		}
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("reading tiles: %w", err)
	}

	// Records: each one a record a store writes, keyed as stores key it,
	// under the served head, no module@version twice.
	rows, err = tx.QueryContext(ctx, `SELECT id, key, path, version, hashes, raw FROM records ORDER BY id`)
	if err != nil {
		return fmt.Errorf("reading records: %w", err)
	}
	top := int64(-1)
	seen := make(map[string]int64)
	for rows.Next() {
		var rid, key int64
		var path, version string
		var hashes, raw []byte
		if err := rows.Scan(&rid, &key, &path, &version, &hashes, &raw); err != nil {
			rows.Close()
			return fmt.Errorf("reading records: %w", err)
		}
		r, err := store.RecordRow(log, rid, path, version, hashes, raw)
		if err != nil {
			rows.Close()
			return err
		}
		row := fmt.Sprintf("id %d", rid)
		switch {
		case rid >= served:
			err = bad("records", row, "a record beyond the served tree of size %d", served)
		case key != store.LookupKey(path, version):
			err = bad("records", row, "key %d is not the lookup key of %s@%s", key, path, version)
		case r.Path != "":
			pv := r.Path + "@" + r.Version
			if other, ok := seen[pv]; ok {
				err = bad("records", row, "%s is record %d too", pv, other)
			}
			seen[pv] = rid
		}
		if err != nil {
			rows.Close()
			return err
		}
		top = rid
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("reading records: %w", err)
	}
	if maxID != top {
		return bad("logs", "name "+log, "max_id %d, but the highest record is %d", maxID, top)
	}
	return nil
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	rows.Close()
	return err
}
