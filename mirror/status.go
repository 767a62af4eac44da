package mirror

import (
	"context"
	"errors"
	"fmt"

	"github.com/sumkeep/sumkeep/store"
)

// LogStatus is what a store holds of one log: what `sumkeep status` shows.
type LogStatus struct {
	Log    string
	Served *store.Head // the served head; nil if none yet
	Latest *store.Head // the newest verified head; nil if none yet
	// Synced is the full-sync cursor: records [0, Synced) are stored.
	Synced int64
	// OnDemand counts the records stored on demand (lazy mode, seed,
	// bundles); it is counted only when Synced is 0.
	OnDemand int64
	Evidence []store.Evidence
}

// StatusReader is what Status reads.
type StatusReader interface {
	ServedHead(ctx context.Context, log string) (store.Head, error)
	LatestHead(ctx context.Context, log string) (store.Head, error)
	Synced(ctx context.Context, log string) (int64, error)
	RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error)
	Evidence(ctx context.Context, log string) ([]store.Evidence, error)
}

// Status reads what st holds of log. Every error of the store is returned:
// a status that skipped what it could not read would mislead.
func Status(ctx context.Context, st StatusReader, log string) (LogStatus, error) {
	ls := LogStatus{Log: log}
	head := func(read func(context.Context, string) (store.Head, error), what string) (*store.Head, error) {
		h, err := read(ctx, log)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("status of %s: reading the %s head: %w", log, what, err)
		}
		return &h, nil
	}
	var err error
	if ls.Served, err = head(st.ServedHead, "served"); err != nil {
		return ls, err
	}
	if ls.Latest, err = head(st.LatestHead, "newest"); err != nil {
		return ls, err
	}
	if ls.Synced, err = st.Synced(ctx, log); err != nil {
		return ls, fmt.Errorf("status of %s: reading the sync cursor: %w", log, err)
	}
	if ls.Synced == 0 {
		// A store that counts its records does it in one pass; walking
		// the ids takes a few.
		if c, ok := st.(store.RecordCounter); ok {
			ls.OnDemand, err = c.CountRecords(ctx, log)
		} else {
			err = store.WalkRecordIDs(ctx, st, log, func(ids []int64) error {
				ls.OnDemand += int64(len(ids))
				return nil
			})
		}
		if err != nil {
			return ls, fmt.Errorf("status of %s: counting records: %w", log, err)
		}
	}
	if ls.Evidence, err = st.Evidence(ctx, log); err != nil {
		return ls, fmt.Errorf("status of %s: reading evidence: %w", log, err)
	}
	return ls, nil
}
