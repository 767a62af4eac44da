package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/sumkeep/sumkeep/store"
)

var (
	_ store.Sizer         = (*Store)(nil)
	_ store.RecordCounter = (*Store)(nil)
)

// SizeBytes implements store.Sizer: the size of sumkeep's tables, with
// their indexes and TOAST, as pg_total_relation_size tells it. The database
// may hold other applications' tables too, so pg_database_size would
// overstate it.
func (s *Store) SizeBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx,
		`SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)::bigint FROM unnest($1::text[]) AS t`,
		store.Tables()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: reading the size of sumkeep's tables: %w", err)
	}
	return n, nil
}

// CountRecords implements store.RecordCounter: the full-sync cursor plus
// the records stored above it, so that a fully synced log is counted from
// its cursor and the BRIN index on (log_id, id), not by a scan of its
// records.
func (s *Store) CountRecords(ctx context.Context, log string) (int64, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.pool.QueryRow(ctx,
		`SELECT l.synced + (SELECT count(*) FROM records r WHERE r.log_id = l.id AND r.id >= l.synced)
		 FROM logs l WHERE l.id = $1`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: counting records of %s: %w", log, err)
	}
	return n, nil
}
