package store

import "context"

// Sizer is a capability a Store may have: telling how many bytes it takes
// (store/postgres: its tables with their indexes and TOAST; store/sqlite:
// the database file's pages). Metrics show it where the store can tell.
type Sizer interface {
	// SizeBytes returns the store's size in bytes.
	SizeBytes(ctx context.Context) (int64, error)
}

// RecordCounter is a capability a Store may have: counting the records
// stored for a log without walking them (RecordIDs walks them). A store
// filled by a full sync holds records [0, Synced) and, above the cursor,
// only what was fetched on demand, so a count is the cursor plus a count
// above it.
type RecordCounter interface {
	// CountRecords returns how many records the store holds for log; 0 for
	// a log it does not hold.
	CountRecords(ctx context.Context, log string) (int64, error)
}
