package realsum

import (
	"context"
	"fmt"

	"github.com/sumkeep/sumkeep/store"
)

// Load writes the fixture into st under the log name log: every recorded
// head in ascending size (the lookups' heads and T, which is last), then the
// records in ascending id order, one record per batch, then one batch with
// all tiles that makes T the served head. It does not verify anything
// (consumers do); record ids and bytes come from the lookup answers and
// module paths and versions from store.RecordModule.
func Load(ctx context.Context, st store.Store, log string) error {
	head, err := Head()
	if err != nil {
		return err
	}
	heads, err := Heads()
	if err != nil {
		return err
	}
	for _, h := range heads {
		if err := st.AddHead(ctx, log, h); err != nil {
			return fmt.Errorf("realsum: adding head %d: %w", h.Size, err)
		}
	}
	recs, err := Records() // copies: the store may keep what it is given
	if err != nil {
		return err
	}
	tiles, err := Tiles()
	if err != nil {
		return err
	}
	for _, r := range recs {
		b := store.Batch{Records: []store.Record{r}, Synced: -1}
		if err := st.Commit(ctx, log, b); err != nil {
			return fmt.Errorf("realsum: committing record %d: %w", r.ID, err)
		}
	}
	b := store.Batch{Tiles: tiles, Synced: -1, Serve: head.Size}
	if err := st.Commit(ctx, log, b); err != nil {
		return fmt.Errorf("realsum: committing %d tiles: %w", len(tiles), err)
	}
	return nil
}
