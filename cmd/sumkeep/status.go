package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sumkeep/sumkeep/store"
)

// recordsLine says what records status finds for log: copied by a full
// sync (and whether it is complete), stored on demand, or none yet. A log
// whose first sync failed before storing a record holds none: that is not
// lazy mode.
func recordsLine(ctx context.Context, st store.Store, log string) (string, error) {
	synced, err := st.Synced(ctx, log)
	if err != nil {
		return "", err
	}
	if synced > 0 {
		latest, err := st.LatestHead(ctx, log)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
		if synced < latest.Size {
			return fmt.Sprintf("%d of %d copied by full sync (incomplete: the next 'sumkeep sync' resumes at record %d)", synced, latest.Size, synced), nil
		}
		return fmt.Sprintf("%d copied in full sync", synced), nil
	}
	count := 0
	for after := int64(-1); ; {
		ids, err := st.RecordIDs(ctx, log, after, 10000)
		if err != nil {
			return "", err
		}
		if len(ids) == 0 {
			break
		}
		count += len(ids)
		after = ids[len(ids)-1]
	}
	if count == 0 {
		return "none stored yet (no sync has stored one: run 'sumkeep sync --once', or 'sumkeep seed FILE' to fetch what go.sum files need)", nil
	}
	return fmt.Sprintf("%d stored on demand (lazy mode)", count), nil
}

// evidenceLine describes one piece of evidence: its kind, when, what, from
// where, and how often it was seen.
func evidenceLine(ev store.Evidence) string {
	line := fmt.Sprintf("%s at %s: %s", ev.Kind, ev.CreatedAt.Format(time.RFC3339), ev.Message)
	if ev.Source != "" {
		line += " (from " + ev.Source + ")"
	}
	if ev.Count > 1 {
		line += fmt.Sprintf("; seen %d times, last at %s", ev.Count, ev.LastSeen.Format(time.RFC3339))
	}
	return line
}
