package main

import (
	"fmt"
	"time"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
)

// recordsLine says what records status found for a log: copied by a full
// sync (and whether it is complete), stored on demand, or none yet. A log
// whose first sync failed before storing a record holds none: that is not
// lazy mode.
func recordsLine(ls mirror.LogStatus) string {
	if ls.Synced > 0 {
		if ls.Latest != nil && ls.Synced < ls.Latest.Size {
			return fmt.Sprintf("%d of %d copied by full sync (incomplete: the next 'sumkeep sync' resumes at record %d)", ls.Synced, ls.Latest.Size, ls.Synced)
		}
		return fmt.Sprintf("%d copied in full sync", ls.Synced)
	}
	if ls.OnDemand == 0 {
		return "none stored yet (no sync has stored one: run 'sumkeep sync --once', or 'sumkeep seed FILE' to fetch what go.sum files need)"
	}
	return fmt.Sprintf("%d stored on demand (lazy mode)", ls.OnDemand)
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
