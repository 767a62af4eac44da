package sqlite

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

// SizeBytes implements store.Sizer: the database's pages (page_count ×
// page_size, free pages included: the file takes them). Pages still in the
// write-ahead log are not counted until a checkpoint moves them.
func (s *Store) SizeBytes(ctx context.Context) (int64, error) {
	if err := s.check(false); err != nil {
		return 0, err
	}
	var n int64
	err := s.r.QueryRowContext(ctx,
		`SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: reading the size of %s: %w", s.path, err)
	}
	return n, nil
}

// CountRecords implements store.RecordCounter: the full-sync cursor plus
// the records stored above it, counted on the (log_id, id) primary key.
func (s *Store) CountRecords(ctx context.Context, log string) (int64, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.r.QueryRowContext(ctx,
		`SELECT l.synced + (SELECT count(*) FROM records r WHERE r.log_id = l.id AND r.id >= l.synced)
		 FROM logs l WHERE l.id = ?`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: counting records of %s: %w", log, err)
	}
	return n, nil
}
