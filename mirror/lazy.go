package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// Lazy mode keeps only what was asked for: records fetched on demand (by the
// server when a lookup misses, or by seed) and the hash tiles that prove
// them. Its invariant is the one the server relies on:
//
//	every stored record is provable under the served head from stored tiles,
//	and so is the consistency of every stored head with the served head.
//
// Fetch stores a record together with the tiles of its inclusion proof under
// the served head. Advance moves the served head to a newer one only after
// storing the tiles that prove every stored record and every stored head
// under it. Both commit with store.Batch.Expect, so a head served by another
// process meanwhile, or a record stored meanwhile, makes the commit fail and
// the work is redone from the new state: the invariant holds across
// processes sharing a store, not just within one.
//
// A go client that cached an older head the mirror served asks for tiles of
// the served tree around its old head's size (tlog.ProveTree); those are the
// tiles Advance stores for every stored head.

// ErrNoRecord reports that the upstream's log holds no record for a
// module@version. It wraps store.ErrNotFound.
var ErrNoRecord = fmt.Errorf("no such module@version in the upstream log: %w", store.ErrNotFound)

// fetchTimeout bounds one on-demand fetch, which waiters share.
const fetchTimeout = time.Minute

// Fetch fetches path@version from the upstream, verifies it (the signed head
// that comes with it, its consistency with the stored heads, its inclusion
// proof) and stores it with the tiles that prove it under the served head,
// advancing the served head first when the record is newer than it.
// Concurrent calls for the same module@version share one upstream fetch. It
// returns ErrNoRecord when the upstream's log has no such record.
//
// Fetch works in lazy mode only (in auto mode, once the upstream has been
// found to refuse data tiles): a fully synced store holds every record of
// its served head already, and its served head means "everything below is
// stored", which a fetch-through head move would break. Otherwise it
// returns an error wrapping store.ErrNotFound.
func (s *Syncer) Fetch(ctx context.Context, path, version string) error {
	if err := s.lazyOnly(ctx); err != nil {
		return err
	}
	key := path + "@" + version
	s.flightMu.Lock()
	c, ok := s.flights[key]
	if !ok {
		c = &flight{done: make(chan struct{})}
		s.flights[key] = c
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
			c.err = classifyFetch(path, version, s.fetch(fctx, path, version))
			cancel()
			s.flightMu.Lock()
			delete(s.flights, key)
			s.flightMu.Unlock()
			close(c.done)
		}()
	}
	s.flightMu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errFullMode is Fetch's answer in full mode.
var errFullMode = fmt.Errorf("not fetched on demand: the mirror syncs in full mode: %w", store.ErrNotFound)

// lazyOnly fails with errFullMode unless the syncer runs in lazy mode,
// deciding auto mode first if no run has yet.
func (s *Syncer) lazyOnly(ctx context.Context) error {
	switch s.cfg.Mode {
	case ModeLazy:
		return nil
	case ModeFull:
		return errFullMode
	}
	s.modeMu.Lock()
	mode := s.lastMode
	s.modeMu.Unlock()
	if mode == "" {
		head, err := s.cfg.Store.LatestHead(ctx, s.log)
		if errors.Is(err, store.ErrNotFound) {
			head, err = s.fetchHead(ctx)
		}
		if err != nil {
			return err
		}
		if mode, err = s.mode(ctx, head); err != nil {
			return err
		}
	}
	if mode != ModeLazy {
		return errFullMode
	}
	return nil
}

type flight struct {
	done chan struct{}
	err  error
}

func (s *Syncer) fetch(ctx context.Context, path, version string) error {
	if s.cfg.Upstream == nil {
		return fmt.Errorf("fetching %s@%s: %w", path, version, errNoUpstream)
	}
	if err := s.checkEvidence(ctx); err != nil {
		return err
	}
	body, err := s.cfg.Upstream.Lookup(ctx, path, version)
	if errors.Is(err, upstream.ErrNotServed) {
		return fmt.Errorf("%s@%s: %w (%w)", path, version, ErrNoRecord, err)
	}
	if err != nil {
		return err
	}
	where := s.cfg.Upstream.URL() + "/lookup/" + path + "@" + version
	id, text, msg, err := tlog.ParseRecord(body)
	if err != nil {
		return unverified(fmt.Errorf("%s: malformed answer: %w", where, err))
	}
	if p, v := store.RecordModule(text); p != path || v != version {
		return unverified(fmt.Errorf("%s: the upstream answered with a record for %q@%q", where, p, v))
	}
	h, err := s.openHead(ctx, msg, where)
	if err != nil {
		return unverified(err)
	}
	if id >= h.Size {
		return unverified(fmt.Errorf("%s: record %d is outside the tree of size %d signed with it", where, id, h.Size))
	}
	if _, err := s.link(ctx, h); err != nil {
		return err
	}
	rec := store.Record{ID: id, Path: path, Version: version, Data: text}
	for attempt := 0; ; attempt++ {
		served, err := s.cfg.Store.ServedHead(ctx, s.log)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err != nil || served.Size <= id {
			latest, err := s.cfg.Store.LatestHead(ctx, s.log)
			if err != nil {
				return err
			}
			if err := s.Advance(ctx, latest); err != nil {
				return err
			}
			continue
		}
		r := s.newReader(ctx)
		proof, err := tlog.ProveRecord(served.Size, id, r.HashReader(served.Tree()))
		if err != nil {
			return s.tileTrouble(ctx, fmt.Errorf("proving record %d (%s@%s) in tree %d: %w", id, path, version, served.Size, err), served, r.Suspects())
		}
		// The lookup's head, if older than the served one, must stay
		// provable under it too (see the invariant above).
		if h.Size < served.Size {
			if _, err := tlog.ProveTree(served.Size, h.Size, r.HashReader(served.Tree())); err != nil {
				return s.tileTrouble(ctx, fmt.Errorf("proving head %d under head %d: %w", h.Size, served.Size, err), served, r.Suspects())
			}
		}
		if err := tlog.CheckRecord(proof, served.Size, served.Hash, id, tlog.RecordHash(text)); err != nil {
			return s.misbehaved(ctx, store.Evidence{
				Kind:    store.EvidenceBadRecord,
				Message: fmt.Sprintf("record %d from %s does not match its leaf hash in tree %d: %v", id, where, served.Size, err),
				Source:  s.src.URL(),
				Object:  fmt.Sprintf("record %d", id),
				NoteA:   h.Note,
				Data:    text,
			})
		}
		s.commitMu.Lock()
		err = s.commit(ctx, store.Batch{Records: []store.Record{rec}, Tiles: r.Verified(), Synced: -1,
			Expect: &store.State{Served: served.Size, Generation: -1}}, h)
		s.commitMu.Unlock()
		if errors.Is(err, store.ErrConflict) && attempt < 10 {
			continue // another head is served now: prove under that one
		}
		if err == nil {
			s.logger.Debug("fetched", "module", path, "version", version, "id", id)
		}
		return err
	}
}

// Advance makes target (a stored, linked head) the served head, after
// storing the tiles that prove every stored record and every stored head
// under it. It does nothing if the served head is target or newer.
func (s *Syncer) Advance(ctx context.Context, target store.Head) error {
	_, err := s.advance(ctx, target, nil, nil)
	return err
}

// advance is Advance that also stores extra records (verified already, by
// the caller, as records of the log), proving them under the served head
// as well. When the served head is newer than target, it is used instead.
// It returns the served head, and adds the tiles it stored to *tiles (if
// tiles is not nil).
func (s *Syncer) advance(ctx context.Context, target store.Head, extra []store.Record, tiles *int64) (store.Head, error) {
	s.advanceMu.Lock()
	defer s.advanceMu.Unlock()
	// On-demand commits of this process wait, so that they cannot change
	// the generation under this proof again and again; other processes'
	// commits make it retry.
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	r := s.newReader(ctx)
	// What was proven under target stays proven: a retry after a conflict
	// proves only what was stored meanwhile, so it soon wins the race.
	provenHeads := make(map[int64]bool)
	provenTiles := make(map[int64]bool) // level-0 tile indexes
	provenFor := target.Size
	for attempt := 0; ; attempt++ {
		st, err := s.cfg.Store.State(ctx, s.log)
		if err != nil {
			return target, err
		}
		if st.Served >= target.Size {
			if len(extra) == 0 {
				return target, nil
			}
			if target, err = s.cfg.Store.ServedHead(ctx, s.log); err != nil {
				return target, err
			}
		}
		if provenFor != target.Size {
			provenFor = target.Size
			clear(provenHeads)
			clear(provenTiles)
		}
		hr := r.HashReader(target.Tree())
		heads, err := s.cfg.Store.Heads(ctx, s.log)
		if err != nil {
			return target, err
		}
		for _, h := range heads {
			if h.Size == 0 || h.Size >= target.Size || provenHeads[h.Size] {
				continue
			}
			if _, err := tlog.ProveTree(target.Size, h.Size, hr); err != nil {
				return target, s.tileTrouble(ctx, fmt.Errorf("proving head %d under head %d: %w", h.Size, target.Size, err), target, r.Suspects())
			}
			provenHeads[h.Size] = true
		}
		// Records in one level-0 tile share every tile of their proofs.
		n, lastTile := 0, int64(-1)
		for after := int64(-1); ; {
			ids, err := s.cfg.Store.RecordIDs(ctx, s.log, after, 4096)
			if err != nil {
				return target, err
			}
			if len(ids) == 0 {
				break
			}
			for _, id := range ids {
				if id>>store.TileHeight == lastTile || provenTiles[id>>store.TileHeight] {
					continue
				}
				lastTile = id >> store.TileHeight
				if id >= target.Size {
					return target, fmt.Errorf("sync %s: stored record %d is outside head %d", s.log, id, target.Size)
				}
				if _, err := tlog.ProveRecord(target.Size, id, hr); err != nil {
					return target, s.tileTrouble(ctx, fmt.Errorf("proving record %d under head %d: %w", id, target.Size, err), target, r.Suspects())
				}
				provenTiles[lastTile] = true
				n++
			}
			after = ids[len(ids)-1]
		}
		for _, rec := range extra {
			if err := proof.Record(hr, target, rec); err != nil {
				return target, err
			}
		}
		serve := int64(0)
		if target.Size > st.Served {
			serve = target.Size
		}
		verified := r.Verified()
		err = s.cfg.Store.Commit(ctx, s.log, store.Batch{Records: extra, Tiles: verified, Synced: -1, Serve: serve, Expect: &st})
		if errors.Is(err, store.ErrConflict) && attempt < 100 {
			continue // records stored or a head served meanwhile: prove those
		}
		if err != nil {
			return target, err
		}
		if tiles != nil {
			*tiles += int64(len(verified))
		}
		if serve > 0 {
			s.logger.Info("serving head", "size", target.Size, "was", st.Served, "proved tiles", n, "new tiles", len(verified))
		}
		return target, nil
	}
}
