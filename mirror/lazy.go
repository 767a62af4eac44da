package mirror

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
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

// commitTimeout bounds a commit that goes on after every client waiting for
// it has gone: once a fetch has verified what it fetched, storing it is
// cheaper than fetching it again.
const commitTimeout = 30 * time.Second

// Fetch fetches path@version from the upstream, verifies it (the signed head
// that comes with it, its consistency with the stored heads, its inclusion
// proof) and stores it with the tiles that prove it under the served head,
// advancing the served head first when the record is newer than it.
// Concurrent calls for the same module@version share one upstream fetch,
// which is cancelled once every caller has gone, unless it is committing.
// It returns ErrNoRecord when the upstream's log has no such record; that
// answer is remembered for Config.AbsentTTL, so a storm of lookups of a
// module@version no upstream holds makes one upstream request.
//
// Fetch works in lazy mode only (in auto mode, once the upstream has been
// found to refuse data tiles): a fully synced store holds every record of
// its served head already, and its served head means "everything below is
// stored", which a fetch-through head move would break. Otherwise it
// returns an error wrapping store.ErrNotFound.
func (s *Syncer) Fetch(ctx context.Context, path, version string) error {
	if err := s.lazyOnly(ctx); err != nil {
		// Deciding auto mode asks the upstream: its failure is the
		// fetch's, and says why as one does.
		return classifyFetch(path, version, err)
	}
	key := path + "@" + version
	if err, ok := s.absent.get(key); ok {
		return err
	}
	_, err := s.fetches.do(ctx, key, fetchTimeout, func(ctx context.Context) (struct{}, error) {
		err := classifyFetch(path, version, s.fetchFromAny(ctx, path, version))
		if fe, ok := errors.AsType[*FetchError](err); ok && fe.Kind == FetchNotInLog {
			s.absent.add(key, err)
		}
		return struct{}{}, err
	})
	return err
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

func (s *Syncer) fetch(ctx context.Context, path, version string) error {
	if s.cfg.Upstream == nil {
		return fmt.Errorf("fetching %s@%s: %w", path, version, errNoUpstream)
	}
	// What keep starts from, and the evidence, are read from the store
	// while the upstream is asked.
	pre := make(chan keepState, 1)
	go func() {
		if err := s.checkEvidence(ctx); err != nil {
			pre <- keepState{err: err}
			return
		}
		pre <- s.readKeepState(ctx)
	}()
	lu, err := s.lookUp(ctx, path, version)
	st := <-pre
	if errors.Is(st.err, errBlocked) {
		return st.err
	}
	if err != nil {
		return err
	}
	errs, err := s.keepFrom(ctx, []lookedUp{lu}, st, nil, 0)
	if err != nil {
		return err
	}
	return errs[0]
}

// lookedUp is a record as a /lookup answered it: its text is the record of
// the module@version asked for and its signed head verifies, but neither
// the head's consistency with the stored heads nor the record's inclusion
// is proven yet (keep proves both).
type lookedUp struct {
	rec   store.Record
	head  store.Head
	src   string // the upstream that answered
	where string // the lookup's URL, for messages
}

// lookUp asks the upstream for path@version and checks what can be checked
// of the answer alone.
func (s *Syncer) lookUp(ctx context.Context, path, version string) (lookedUp, error) {
	body, err := s.cfg.Upstream.Lookup(ctx, path, version)
	if errors.Is(err, upstream.ErrNotServed) {
		return lookedUp{}, fmt.Errorf("%s@%s: %w (%w)", path, version, ErrNoRecord, err)
	}
	if err != nil {
		return lookedUp{}, err
	}
	src := s.answeredBy(ctx, upstream.LookupKey(path, version)) // several upstreams: see upstreams.go
	where := src + "/lookup/" + path + "@" + version
	id, text, msg, err := tlog.ParseRecord(body)
	if err != nil {
		return lookedUp{}, unverified(fmt.Errorf("%s: malformed answer: %w", where, err))
	}
	if p, v := store.RecordModule(text); p != path || v != version {
		return lookedUp{}, s.wrongAnswer(ctx, src, where, id, p, v, text, msg) // several upstreams: see upstreams.go
	}
	h, err := s.openHeadCached(ctx, msg, src, where)
	if err != nil {
		return lookedUp{}, unverified(err)
	}
	if id >= h.Size {
		return lookedUp{}, unverified(fmt.Errorf("%s: record %d is outside the tree of size %d signed with it", where, id, h.Size))
	}
	return lookedUp{rec: store.Record{ID: id, Path: path, Version: version, Data: text}, head: h, src: src, where: where}, nil
}

// keep links the heads the records came with to the stored heads, proves
// each record (and its head) under the served head, advancing it first
// where a record is newer, and stores the records that verify with the
// tiles that prove them, in one commit. Every tile those proofs need is
// read in one parallel round: the store first, then the upstream, sharing
// requests in flight with other fetches.
//
// It returns an error per record (a record that does not match its leaf
// hash is kept as evidence and fails alone) or, when nothing could be
// stored (a fork, a bad tile, the store or the upstream failing), one
// error for all.
//
// src, if not nil, is where it reads the tiles the store lacks, at most
// concurrency at once, instead of the syncer's source (a seed's groups are
// large, several are proven at once, and their requests share a budget
// with the seed's lookups; see Seed).
func (s *Syncer) keep(ctx context.Context, items []lookedUp, src proof.Source, concurrency int) ([]error, error) {
	return s.keepFrom(ctx, items, keepState{}, src, concurrency)
}

// keepState is what keep starts from: the served head and the largest
// stored head, read from the store.
type keepState struct {
	read      bool // read at all (the zero keepState is not)
	served    store.Head
	hasServed bool
	latest    *store.Head // nil if none is stored
	err       error
}

// readKeepState reads a keepState from the store.
func (s *Syncer) readKeepState(ctx context.Context) keepState {
	st := keepState{read: true}
	var err error
	st.served, err = s.cfg.Store.ServedHead(ctx, s.log)
	st.hasServed = err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return keepState{err: err}
	}
	latest, err := s.cfg.Store.LatestHead(ctx, s.log)
	switch {
	case err == nil:
		st.latest = &latest
	case !errors.Is(err, store.ErrNotFound):
		return keepState{err: err}
	}
	return st
}

// keepFrom is keep starting from first, if it was read; a commit expects
// the served head it saw, so a stale one only costs a retry.
func (s *Syncer) keepFrom(ctx context.Context, items []lookedUp, first keepState, src proof.Source, concurrency int) ([]error, error) {
	errs := make([]error, len(items))
	// One reader for every attempt: what it read stays read.
	r := s.newReaderFrom(ctx, src, concurrency)
	for attempt := 0; ; attempt++ {
		st := first
		first = keepState{}
		if !st.read {
			st = s.readKeepState(ctx)
		}
		if st.err != nil {
			return nil, st.err
		}
		served, hasServed := st.served, st.hasServed
		newHeads, target, err := s.unlinked(ctx, st.latest, items)
		if err != nil {
			return nil, err
		}
		// The new heads other than target are linked through target (see
		// linkThrough): target first, if it is new, against its
		// neighbours. If it is not new it is stored, and so linked: the
		// latest head read above, or a head of items that another group
		// or process stored since.
		targetNew := len(newHeads) > 0 && newHeads[0].h.Tree() == target.Tree()
		var plan []tlog.Tile
		for i, nh := range newHeads {
			h, pred, succ := nh.h, nh.near.Pred, nh.near.Succ
			if i > 0 || !targetNew {
				plan = append(plan, proof.Plan(target.Tree(), func(hr tlog.HashReader) error {
					for _, x := range []*store.Head{&h, pred, succ} {
						if x != nil && x.Size > 0 && x.Size <= target.Size {
							if _, err := tlog.TreeHash(x.Size, hr); err != nil {
								return err
							}
						}
					}
					return nil
				})...)
				continue
			}
			if pred != nil && pred.Size > 0 {
				plan = append(plan, proof.Plan(h.Tree(), func(hr tlog.HashReader) error {
					_, err := tlog.TreeHash(pred.Size, hr)
					return err
				})...)
			}
			if succ != nil {
				plan = append(plan, proof.Plan(succ.Tree(), func(hr tlog.HashReader) error {
					_, err := tlog.TreeHash(h.Size, hr)
					return err
				})...)
			}
		}
		advance := !hasServed
		for i, it := range items {
			if errs[i] != nil {
				continue
			}
			under := served
			if !hasServed || it.rec.ID >= served.Size {
				// Proven under the newest head, which is served first.
				advance, under = true, target
			}
			plan = append(plan, planRecord(under, it)...)
		}
		var planned *storedProofs // the advance's walk, done for its plan
		if advance {
			var tiles []tlog.Tile
			tiles, planned = s.planAdvance(ctx, target)
			plan = append(plan, tiles...)
		}
		if _, err := r.ReadTiles(uniqueTiles(plan)); err != nil {
			return nil, err
		}
		// Target first, if it is new, against its neighbours; then the
		// others through it, in one commit.
		rest := newHeads
		if targetNew {
			if _, err := s.linkWith(ctx, newHeads[0].h, r); err != nil {
				return nil, err
			}
			rest = newHeads[1:]
		}
		if len(rest) > 0 {
			hs := make([]store.Head, len(rest))
			for i, nh := range rest {
				hs[i] = nh.h
			}
			if err := s.linkThrough(ctx, hs, newThrough(target, r), r); err != nil {
				return nil, err
			}
		}
		if advance {
			latest, err := s.cfg.Store.LatestHead(ctx, s.log)
			if err != nil {
				return nil, err
			}
			// Another keep may have served it since (a seed's first
			// groups all find no head served): then only prove under it,
			// without waiting for the advance lock, which waits for the
			// commits in progress.
			st, err := s.cfg.Store.State(ctx, s.log)
			if err != nil {
				return nil, err
			}
			if st.Served < latest.Size {
				if _, err := s.advance(ctx, latest, nil, r, nil, planned); err != nil {
					return nil, err
				}
			}
			if attempt < 10 {
				continue
			}
			return nil, fmt.Errorf("sync %s: the served head keeps changing", s.log)
		}

		pt := proof.NewTiles(served.Tree(), r)
		var recs []store.Record
		for i, it := range items {
			if errs[i] != nil {
				continue
			}
			id := it.rec.ID
			p, err := tlog.ProveRecord(served.Size, id, pt)
			if err != nil {
				return nil, s.tileTrouble(ctx, fmt.Errorf("proving record %d (%s@%s) in tree %d: %w", id, it.rec.Path, it.rec.Version, served.Size, err), served, r.Suspects())
			}
			// The lookup's head, if older than the served one, must stay
			// provable under it too (see the invariant above).
			if it.head.Size < served.Size {
				if _, err := tlog.ProveTree(served.Size, it.head.Size, pt); err != nil {
					return nil, s.tileTrouble(ctx, fmt.Errorf("proving head %d under head %d: %w", it.head.Size, served.Size, err), served, r.Suspects())
				}
			}
			if err := tlog.CheckRecord(p, served.Size, served.Hash, id, tlog.RecordHash(it.rec.Data)); err != nil {
				errs[i] = s.misbehaved(ctx, store.Evidence{
					Kind:    store.EvidenceBadRecord,
					Message: fmt.Sprintf("record %d from %s does not match its leaf hash in tree %d: %v", id, it.where, served.Size, err),
					Source:  it.src,
					Object:  fmt.Sprintf("record %d", id),
					NoteA:   it.head.Note,
					Data:    it.rec.Data,
				})
				continue
			}
			recs = append(recs, it.rec)
		}
		r.SaveTiles(pt.Authenticated(), nil)
		if len(recs) == 0 {
			return errs, nil
		}
		// Verified: store it, even if every client waiting for it has
		// gone meanwhile, unless they had gone before.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err = s.commitRecords(ctx, served, recs, r.Verified())
		if errors.Is(err, store.ErrConflict) && attempt < 10 {
			continue // another head is served now: prove under that one
		}
		if _, lie := errors.AsType[*MisbehaviourError](err); err != nil && !lie && !errors.Is(err, store.ErrConflict) {
			return nil, &StoreError{Err: err}
		}
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			s.logger.Debug("fetched", "module", rec.Path, "version", rec.Version, "id", rec.ID)
		}
		return errs, nil
	}
}

// newHead is a head a lookup came with that is not stored, and the stored
// heads around it.
type newHead struct {
	h    store.Head
	near store.Around
}

// unlinked returns the distinct heads of items that are not stored, each
// with its stored neighbours, and the largest head among them and latest
// (the largest stored, if any). A head equal to latest, as most are, costs
// no read; the others' neighbours are read at once, in one indexed read,
// however many heads are stored.
func (s *Syncer) unlinked(ctx context.Context, latest *store.Head, items []lookedUp) ([]newHead, store.Head, error) {
	var target store.Head
	if latest != nil {
		target = *latest
	}
	var cands []store.Head
	seen := make(map[tlog.Tree]bool)
	for _, it := range items {
		h := it.head
		if h.Size > target.Size {
			target = h
		}
		if seen[h.Tree()] || latest != nil && latest.Tree() == h.Tree() {
			continue
		}
		seen[h.Tree()] = true
		cands = append(cands, h)
	}
	if len(cands) == 0 {
		return nil, target, nil
	}
	sizes := make([]int64, len(cands))
	for i, h := range cands {
		sizes[i] = h.Size
	}
	nears, err := s.cfg.Store.HeadsAroundMany(ctx, s.log, sizes)
	if err != nil {
		return nil, target, err
	}
	var out []newHead
	for i, h := range cands {
		if at := nears[i].At; at != nil && at.Hash == h.Hash {
			continue
		}
		out = append(out, newHead{h: h, near: nears[i]})
	}
	// The largest first: the others are linked through it.
	if i := slices.IndexFunc(out, func(nh newHead) bool { return nh.h.Tree() == target.Tree() }); i > 0 {
		out[0], out[i] = out[i], out[0]
	}
	return out, target, nil
}

// planRecord returns the tiles that prove it under head: its record, and
// its head if older.
func planRecord(head store.Head, it lookedUp) []tlog.Tile {
	if it.rec.ID >= head.Size {
		return nil
	}
	plan := proof.Plan(head.Tree(), func(hr tlog.HashReader) error {
		_, err := tlog.ProveRecord(head.Size, it.rec.ID, hr)
		return err
	})
	if it.head.Size < head.Size {
		plan = append(plan, proof.Plan(head.Tree(), func(hr tlog.HashReader) error {
			_, err := tlog.ProveTree(head.Size, it.head.Size, hr)
			return err
		})...)
	}
	return plan
}

// uniqueTiles returns ts without repeats.
func uniqueTiles(ts []tlog.Tile) []tlog.Tile {
	seen := make(map[tlog.Tile]bool, len(ts))
	out := ts[:0:0]
	for _, t := range ts {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// Advance makes target (a stored, linked head) the served head, after
// storing the tiles that prove every stored record and every stored head
// under it. It does nothing if the served head is target or newer.
func (s *Syncer) Advance(ctx context.Context, target store.Head) error {
	_, err := s.advance(ctx, target, nil, nil, nil, nil)
	return err
}

// advance is Advance that also stores extra records (verified already, by
// the caller, as records of the log), proving them under the served head
// as well. When the served head is newer than target, it is used instead.
// It reads tiles through r (a new reader if nil), all those its proofs
// need in one parallel round. It returns the served head, and adds the
// tiles it stored to *tiles (if tiles is not nil). planned, if not nil,
// is what planAdvance read of the store, used if the store has not
// changed since.
func (s *Syncer) advance(ctx context.Context, target store.Head, extra []store.Record, r *proof.Reader, tiles *int64, planned *storedProofs) (store.Head, error) {
	s.advanceMu.Lock()
	defer s.advanceMu.Unlock()
	// On-demand commits of this process wait, so that they cannot change
	// the generation under this proof again and again; other processes'
	// commits make it retry.
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if r == nil {
		r = s.newReader(ctx)
	}
	// What was proven under target stays proven: a retry after a conflict
	// proves only what was stored meanwhile, so it soon wins the race.
	provenHeads := make(map[int64]bool) // proofKeys of the heads' last leaves
	provenKeys := make(map[int64]bool)  // proofKeys of the records
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
			clear(provenKeys)
		}
		stored, err := s.readStored(ctx, st, planned)
		planned = nil
		if err != nil {
			return target, err
		}
		// Every tile the proofs read, in one round; then the proofs.
		if _, err := r.ReadTiles(uniqueTiles(proof.Plan(target.Tree(), func(hr tlog.HashReader) error {
			return stored.prove(target, hr, nil, nil, nil)
		}))); err != nil {
			return target, err
		}
		// Each tile authenticated once for all the proofs (a stored head
		// and a stored record each read several).
		hr := proof.NewTiles(target.Tree(), r)
		var n proofCounts
		if err := stored.prove(target, hr, provenHeads, provenKeys, &n); err != nil {
			return target, s.tileTrouble(ctx, err, target, r.Suspects())
		}
		for _, rec := range extra {
			if err := proof.Record(hr, target, rec); err != nil {
				return target, err
			}
		}
		r.SaveTiles(hr.Authenticated(), nil)
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
			s.logger.Info("serving head", "size", target.Size, "was", st.Served, "proved heads", n.heads, "proved tiles", n.records, "new tiles", len(verified))
		}
		return target, nil
	}
}

// planAdvance returns the tiles that an advance to target reads, and
// what it read of the store for them, for the advance (see readStored),
// or nil.
func (s *Syncer) planAdvance(ctx context.Context, target store.Head) ([]tlog.Tile, *storedProofs) {
	if target.Size == 0 {
		return nil, nil
	}
	st, err := s.cfg.Store.State(ctx, s.log)
	if err != nil {
		return nil, nil // the advance reads the store again, and fails
	}
	stored, err := s.readStored(ctx, st, nil)
	if err != nil {
		return nil, nil
	}
	return proof.Plan(target.Tree(), func(hr tlog.HashReader) error {
		return stored.prove(target, hr, nil, nil, nil)
	}), &stored
}

// storedProofs is what an advance proves under its target: a stored head
// for each proofKey of a head's last leaf, and a stored record for each
// proofKey of a record, each standing for every head or record with its
// key.
//
// One proof stands for every record with the same proofKey. The tiles of
// a record's proof under target are its level-0 tile, the tiles above it
// (at target's widths) and those of target's right edge. Records in one
// level-0 tile share all of them. Records in one level-1 tile whose
// level-0 tiles were full under the served head share all but their
// level-0 tiles, and those did not change: a full tile is the same in
// every larger tree (tlog's tiles are prefix-stable, and every head is
// linked to the stored ones by a consistency proof before it is served),
// and each one's hash in the level-1 tile is the one it was checked
// against when its records were proven under the served head. So a proof
// of one of them authenticates, under target, every tile the others'
// proofs read that can differ from the served head's. (The served head
// is a stored head, so its proof under target reads the tiles of its
// right edge at target's widths as well.) An advance then makes a proof
// per level-1 tile of the log for most stored records (about 1,100 for
// the whole of sum.golang.org at 72.8 million records, 2026-12-03), not
// one per level-0 tile (one per record stored, in a lazy store); and the
// stored records are walked once an attempt, not once to plan the tiles
// and again to prove (and a fetch's keep passes the walk it planned with
// on to the advance); a store that groups ids (store.RecordGrouper)
// returns the keys' records in two queries instead of every id. With
// 50,000 records of a 1,000,000-record log stored, a fetch that moved the
// head took 422 ms (median of 7, `make bench`) before, and 37 ms after,
// against 11 ms for a fetch that moves nothing (2026-12-03, Postgres).
//
// Heads group the same way, by their last leaf (size-1). A head's
// consistency proof under target reads, besides the tiles all proofs
// share (target's right edge, and the upper tiles above where the heads'
// proofs part), the tiles of its own right edge: its level-0 tile (the
// hashes left of its size), then its level-1 tile, and so on. Heads whose
// last leaves lie in level-0 tiles full under the served head, in one
// level-1 tile, differ only in those level-0 tiles, unchanged since they
// were proven under the served head. A mirror keeps every head its
// lookups came with (from a caching proxy, one a record), so proving each
// one made every advance linear in the heads kept.
type storedProofs struct {
	log   string
	state store.State // the log's, when the records were walked
	heads []int64     // sizes
	reps  []proofRep
	maxID int64 // the largest record id stored, or -1
}

// proofRep is a stored record whose proof stands for those with its key.
type proofRep struct{ key, id int64 }

// readStored reads what an advance proves, with the log in state st
// (read before): under its served head, every stored record is provable
// from stored tiles. The heads are read anew; the records are walked
// unless walked records holds them (read in the same state: no commit
// has stored records or served a head since), which an advance planned
// beforehand (planAdvance) passes on.
func (s *Syncer) readStored(ctx context.Context, st store.State, walked *storedProofs) (storedProofs, error) {
	sp := storedProofs{log: s.log, state: st, maxID: -1}
	var err error
	if sp.heads, err = s.headsToProve(ctx, st.Served); err != nil {
		return sp, err
	}
	if walked != nil && walked.state.Served == st.Served && walked.state.Generation == st.Generation {
		sp.reps, sp.maxID = walked.reps, walked.maxID
		return sp, nil
	}
	served := st.Served
	if g, ok := s.cfg.Store.(store.RecordGrouper); ok {
		// One pass over the records for each kind of key.
		edge := served >> store.TileHeight << store.TileHeight
		for _, r := range []struct {
			lo, hi int64
			shift  uint
		}{{math.MinInt64, edge, 2 * store.TileHeight}, {edge, math.MaxInt64, store.TileHeight}} {
			groups, err := g.GroupRecordIDs(ctx, s.log, r.lo, r.hi, r.shift)
			if err != nil {
				return sp, err
			}
			for _, g := range groups {
				sp.reps = append(sp.reps, proofRep{proofKey(g.Min, served), g.Min})
				sp.maxID = max(sp.maxID, g.Max)
			}
		}
		return sp, nil
	}
	seen := make(map[int64]bool)
	err = store.WalkRecordIDs(ctx, s.cfg.Store, s.log, func(ids []int64) error {
		for _, id := range ids {
			sp.maxID = max(sp.maxID, id)
			if k := proofKey(id, served); !seen[k] {
				seen[k] = true
				sp.reps = append(sp.reps, proofRep{k, id})
			}
		}
		return nil
	})
	return sp, err
}

// headsToProve returns the sizes of the stored heads an advance proves,
// with head served (its size) served now: one per proofKey of their last
// leaves where the store groups heads, and otherwise every head (prove
// keeps one per key).
func (s *Syncer) headsToProve(ctx context.Context, served int64) ([]int64, error) {
	g, ok := s.cfg.Store.(store.HeadGrouper)
	if !ok {
		heads, err := s.cfg.Store.Heads(ctx, s.log)
		sizes := make([]int64, len(heads))
		for i, h := range heads {
			sizes[i] = h.Size
		}
		return sizes, err
	}
	// A head's last leaf size-1 lies in a level-0 tile full under served
	// exactly when size <= edge.
	edge := served >> store.TileHeight << store.TileHeight
	var sizes []int64
	for _, r := range []struct {
		lo, hi int64
		shift  uint
	}{{1, edge + 1, 2 * store.TileHeight}, {edge + 1, math.MaxInt64, store.TileHeight}} {
		some, err := g.GroupHeadSizes(ctx, s.log, r.lo, r.hi, r.shift)
		if err != nil {
			return nil, err
		}
		sizes = append(sizes, some...)
	}
	return sizes, nil
}

// prove proves every stored head and stored record under target through
// hr, skipping those whose proofKey was proven already (provenHeads,
// provenKeys) and marking those it proves, and counting the proofs in n.
// With nil maps (planning a round of tile reads: see proof.Plan), it
// makes a proof for every key and ignores their failures.
func (sp storedProofs) prove(target store.Head, hr tlog.HashReader, provenHeads, provenKeys map[int64]bool, n *proofCounts) error {
	plan := provenHeads == nil
	if sp.maxID >= target.Size {
		return fmt.Errorf("sync %s: stored record %d is outside head %d", sp.log, sp.maxID, target.Size)
	}
	if plan {
		provenHeads = make(map[int64]bool) // the heads' keys repeat
	}
	for _, size := range sp.heads {
		if size == 0 || size >= target.Size {
			continue
		}
		key := proofKey(size-1, sp.state.Served)
		if provenHeads[key] {
			continue
		}
		if _, err := tlog.ProveTree(target.Size, size, hr); err != nil && !plan {
			return fmt.Errorf("proving head %d under head %d: %w", size, target.Size, err)
		}
		provenHeads[key] = true
		if !plan {
			n.heads++
		}
	}
	for _, rep := range sp.reps {
		if provenKeys[rep.key] {
			continue
		}
		if _, err := tlog.ProveRecord(target.Size, rep.id, hr); err != nil && !plan {
			return fmt.Errorf("proving record %d under head %d: %w", rep.id, target.Size, err)
		}
		if !plan {
			provenKeys[rep.key] = true
			n.records++
		}
	}
	return nil
}

// proofCounts counts an advance's proofs.
type proofCounts struct{ heads, records int }

// proofKey returns the key of record id's proof when the head of size
// served is served (see storedProofs): its level-1 tile's index, negated
// (less one), if its level-0 tile was full under served, and otherwise its
// level-0 tile's index.
func proofKey(id, served int64) int64 {
	const h = store.TileHeight
	if (id>>h+1)<<h <= served {
		return -1 - id>>(2*h)
	}
	return id >> h
}

// FetchTile fetches hash tile t (t.L >= 0) of the served tree from the
// upstreams, authenticates it (and the tiles above it that its proof reads)
// against the served head and stores them. It is how a lazy mirror answers
// a go client holding a head the mirror never stored: one it saw elsewhere,
// such as from the upstream directly before it was pointed here. Such a
// client proves its head under the served one with tiles of the served tree
// (tlog.ProveTree) that no stored record or head needed. Like Fetch it
// works in lazy mode only; a tile outside the served tree, or a data tile,
// is store.ErrNotFound.
func (s *Syncer) FetchTile(ctx context.Context, t tlog.Tile) error {
	if err := s.lazyOnly(ctx); err != nil {
		return err
	}
	if s.cfg.Upstream == nil {
		return fmt.Errorf("fetching %s: %w", t.Path(), errNoUpstream)
	}
	if t.L < 0 || t.H != store.TileHeight || t.W < 1 || t.W > tileWidth || t.N < 0 {
		return fmt.Errorf("tile %s: %w", t.Path(), store.ErrNotFound)
	}
	ctx = upstream.WithAnswers(ctx, upstream.NewAnswers())
	for attempt := 0; ; attempt++ {
		served, err := s.cfg.Store.ServedHead(ctx, s.log)
		if err != nil {
			return err
		}
		// The tile's last hash, at tree level L·H.
		level := t.L * t.H
		n := t.N<<uint(t.H) + int64(t.W) - 1
		if n >= served.Size>>uint(level) {
			return fmt.Errorf("tile %s is outside the served tree of size %d: %w", t.Path(), served.Size, store.ErrNotFound)
		}
		r := s.newReader(ctx)
		if _, err := r.HashReader(served.Tree()).ReadHashes([]int64{tlog.StoredHashIndex(level, n)}); err != nil {
			return s.tileTrouble(ctx, fmt.Errorf("reading tile %s of tree %d: %w", t.Path(), served.Size, err), served, r.Suspects())
		}
		s.commitMu.Lock()
		err = s.cfg.Store.Commit(ctx, s.log, store.Batch{Tiles: r.Verified(), Synced: -1,
			Expect: &store.State{Served: served.Size, Generation: -1}})
		s.commitMu.Unlock()
		if errors.Is(err, store.ErrConflict) && attempt < 10 {
			continue // another head is served now: read under that one
		}
		return err
	}
}
