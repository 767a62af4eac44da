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

// IDRange is the smallest and the largest id of a group of stored records.
type IDRange struct{ Min, Max int64 }

// A RecordGrouper is a Store that groups a log's stored record ids in one
// pass over its records, where a walk of them (WalkRecordIDs) takes a pass
// per page and sends every id: a lazy store's served head moves with one
// proof per group of records (see mirror's storedProofs), not per record.
type RecordGrouper interface {
	// GroupRecordIDs returns the smallest and largest id of each group of
	// log's stored records with ids in [lo, hi) that agree but for their
	// last shift bits (id >> shift), in ascending order. A negative id is
	// a *CorruptError.
	GroupRecordIDs(ctx context.Context, log string, lo, hi int64, shift uint) ([]IDRange, error)
}

// CheckIDRange fails with a *CorruptError if a group of record ids holds a
// negative one.
func CheckIDRange(log string, r IDRange) error {
	if r.Min < 0 {
		return CheckRecordIDs(log, 0, r.Min, true)
	}
	return nil
}

// A HeadGrouper is a Store that groups a log's stored heads by size in one
// query, without reading their notes: a lazy store's served head moves
// with one consistency proof per group of heads (see mirror's
// storedProofs), and a mirror keeps every head its lookups came with.
type HeadGrouper interface {
	// GroupHeadSizes returns the smallest size of each group of log's
	// stored heads with sizes in [lo, hi) whose sizes less one agree but
	// for their last shift bits ((size-1) >> shift), in ascending order.
	GroupHeadSizes(ctx context.Context, log string, lo, hi int64, shift uint) ([]int64, error)
}
