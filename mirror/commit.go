package mirror

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/sumkeep/sumkeep/store"
)

// Group commit: records fetched on demand are committed together when they
// are ready together. Each commit is durable (it answers clients), so it
// costs a disk flush; with commits taking turns, eight lookups arriving at
// once would wait for eight flushes. Instead the records proven under one
// served head while a commit runs wait for it, and then go in one batch.

// commitRequest is records (each verified, with the tiles that prove them
// under served) waiting to be committed.
type commitRequest struct {
	served store.Head
	recs   []store.Record
	tiles  []store.Tile
	done   chan error
}

type committer struct {
	mu      sync.Mutex
	queue   []*commitRequest
	running bool
}

// commitRecords commits recs with tiles, expecting served to be the served
// head (store.ErrConflict otherwise), together with other requests waiting
// meanwhile. It waits for the commit even if ctx ends: what is verified is
// stored rather than fetched again. ctx's values are kept.
func (s *Syncer) commitRecords(ctx context.Context, served store.Head, recs []store.Record, tiles []store.Tile) error {
	req := &commitRequest{served: served, recs: recs, tiles: tiles, done: make(chan error, 1)}
	c := &s.committer
	c.mu.Lock()
	c.queue = append(c.queue, req)
	if !c.running {
		c.running = true
		cctx := context.WithoutCancel(ctx)
		go s.runCommits(cctx)
	}
	c.mu.Unlock()
	return <-req.done
}

// runCommits commits what is queued, in groups, until the queue is empty.
func (s *Syncer) runCommits(ctx context.Context) {
	c := &s.committer
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		// The requests proven under the first one's served head; the
		// others wait for the next round (and will likely conflict).
		var group, rest []*commitRequest
		for _, r := range c.queue {
			if r.served.Size == c.queue[0].served.Size {
				group = append(group, r)
			} else {
				rest = append(rest, r)
			}
		}
		c.queue = rest
		c.mu.Unlock()
		s.commitGroup(ctx, group)
	}
}

// commitGroup commits a group of requests under one served head in one
// batch. If it fails for another reason than a changed served head, each
// request is committed on its own, so that each gets its own outcome (a
// duplicate is one record's, not its neighbours').
func (s *Syncer) commitGroup(ctx context.Context, group []*commitRequest) {
	served := group[0].served
	commit := func(reqs []*commitRequest) error {
		var recs []store.Record
		var tiles []store.Tile
		for _, r := range reqs {
			recs = append(recs, r.recs...)
			tiles = append(tiles, r.tiles...)
		}
		b := store.Batch{Records: sortRecords(recs), Tiles: store.WidestTiles(tiles), Synced: -1,
			Expect: &store.State{Served: served.Size, Generation: -1}}
		cctx, cancel := context.WithTimeout(ctx, commitTimeout)
		defer cancel()
		s.commitMu.Lock()
		defer s.commitMu.Unlock()
		return s.commit(cctx, b, served)
	}
	err := commit(group)
	if err == nil || errors.Is(err, store.ErrConflict) || len(group) == 1 {
		for _, r := range group {
			r.done <- err
		}
		return
	}
	for _, r := range group {
		r.done <- commit([]*commitRequest{r})
	}
}

// sortRecords sorts records by id, without repeats (a batch's records
// ascend strictly).
func sortRecords(recs []store.Record) []store.Record {
	slices.SortFunc(recs, func(a, b store.Record) int { return cmp.Compare(a.ID, b.ID) })
	return slices.CompactFunc(recs, func(a, b store.Record) bool { return a.ID == b.ID })
}
