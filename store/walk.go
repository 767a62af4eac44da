package store

import "context"

// RecordIDLister is the part of a Store that WalkRecordIDs uses.
type RecordIDLister interface {
	RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error)
}

// Pages of a walk of record ids start at firstIDPage ids and double up to
// maxIDPage (8 MiB of ids).
const (
	firstIDPage = 4096
	maxIDPage   = 1 << 20
)

// WalkRecordIDs calls f with the ids of log's stored records in ascending
// order, a page at a time, until f fails or the ids run out. It is how
// stores filled on demand are walked.
//
// The pages double in size as the walk goes: a records table whose index
// cannot order ids (Postgres' BRIN over records stored on demand, which
// arrive in no order of id) costs a pass over the table per page, so a
// walk with pages of one size would take time quadratic in the store
// (at 200,000 records, 49 passes of 30 ms each), and one whose pages
// double takes a few passes (seven there).
func WalkRecordIDs(ctx context.Context, st RecordIDLister, log string, f func(ids []int64) error) error {
	limit := firstIDPage
	for after := int64(-1); ; {
		ids, err := st.RecordIDs(ctx, log, after, limit)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if err := f(ids); err != nil {
			return err
		}
		if len(ids) < limit {
			return nil
		}
		after = ids[len(ids)-1]
		limit = min(2*limit, maxIDPage)
	}
}
