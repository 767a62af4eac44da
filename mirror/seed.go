package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// SeedCounts tells how a seed is going or went.
type SeedCounts struct {
	Total       int // module@versions to seed
	Fetched     int // fetched, verified and stored now
	Present     int // stored already
	NotInLog    int // the upstream's log has no record for them (it said 404 or 410)
	Refused     int // the upstream refused to look them up (403, 400, ...)
	Unreachable int // the upstream could not be reached, or failed (5xx)
	Failed      int // the answer did not verify, or could not be stored
}

// Done is how many are dealt with.
func (c SeedCounts) Done() int {
	return c.Fetched + c.Present + c.NotInLog + c.Refused + c.Unreachable + c.Failed
}

// SeedFailure is one module@version that was not seeded, and why.
type SeedFailure struct {
	Module module.Version
	// Kind is FetchNotInLog, FetchRefused, FetchUnreachable,
	// FetchUnverified or FetchFailed.
	Kind string
	// Reason says what the upstream said, without its URL.
	Reason string
	Err    error
}

// Seed groups: a seed commits the records it fetched in groups of up to
// seedGroup, one durable commit each, never one per record. A group is cut
// when it is full, or when no lookup has answered for seedLinger (the
// lookups in flight come back in waves, one per round trip), or when every
// lookup is done.
const (
	seedGroup  = 512
	seedLinger = 20 * time.Millisecond
	// seedProvers is how many groups are proven (their tiles read) or
	// waiting for their commit at once: a group's tiles are read while
	// the groups before it commit, and groups waiting together are
	// committed together (see commit.go).
	seedProvers = 4
	// seedStoreChecks bounds the lookups in the store (is it there
	// already?) a seed has in flight, in a store that cannot look up many
	// at once (see manyLooker): its lookups upstream are many more than
	// the store's connections.
	seedStoreChecks = 4
	// seedCheckChunk is how many module@versions a seed checks in the
	// store at once (one query in store/postgres), after a first chunk of
	// concurrency of them, so that the first lookups start soon.
	seedCheckChunk = 1024
)

// manyLooker is a store that looks up many records of a log at once
// (store/postgres): recs[i] and errs[i] are what Lookup gives for
// paths[i]@versions[i]; err fails them all.
type manyLooker interface {
	LookupMany(ctx context.Context, log string, paths, versions []string, maxID int64) (recs []store.Record, errs []error, err error)
}

// DefaultSeedConcurrency is how many lookups a seed has in flight by
// default: a seed's time is its lookups' round trips divided by this.
const DefaultSeedConcurrency = 256

// Seed fetches the records of mods that the store lacks, concurrency
// lookups at a time, and stores them in groups: each group's records are
// verified as Fetch verifies one (the signed heads they came with linked
// to the stored heads, each record proven under the served head, every
// tile those proofs need read in one parallel round) and committed in one
// batch. progress, if not nil, is called after each module@version, from
// several goroutines but never concurrently. Signed proof of misbehaviour
// (a fork) stops the seed with an error, and so does a head not signed by
// the key at all (ErrWrongKey: no fetch can succeed with that key), and a
// store that cannot keep what was fetched (StoreError; what was committed
// before stays, and a seed run again fetches only the rest); other
// failures, and module@versions not in the log, are counted and listed (in
// no particular order), and the seed goes on.
func (s *Syncer) Seed(ctx context.Context, mods []module.Version, concurrency int, progress func(SeedCounts)) (SeedCounts, []SeedFailure, error) {
	counts := SeedCounts{Total: len(mods)}
	if concurrency <= 0 {
		concurrency = DefaultSeedConcurrency
	}
	if n, err := s.cfg.Store.Synced(ctx, s.log); err != nil {
		return counts, nil, err
	} else if n > 0 {
		return counts, nil, fmt.Errorf("seed %s: the store holds a full copy (records 0..%d); seed fills lazy stores", s.log, n-1)
	}
	if err := s.lazyOnly(ctx); err != nil {
		return counts, nil, fmt.Errorf("seed %s: %w", s.log, err)
	}
	if upstream.AnswersFrom(ctx) == nil {
		// Evidence names the upstream that sent each answer (see
		// upstreams.go).
		ctx = upstream.WithAnswers(ctx, upstream.NewAnswers())
	}
	if s.cfg.Upstream == nil {
		return counts, nil, fmt.Errorf("seed %s: %w", s.log, errNoUpstream)
	}
	if err := s.checkEvidence(ctx); err != nil {
		return counts, nil, err
	}
	// What was stored before the seed is stored under this head.
	before, err := s.cfg.Store.ServedHead(ctx, s.log)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return counts, nil, err
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		failures []SeedFailure
		fatal    error
	)
	note := func(m module.Version, count *int, err error) {
		mu.Lock()
		defer mu.Unlock()
		*count++
		if err != nil {
			f := SeedFailure{Module: m, Kind: FetchFailed, Reason: err.Error(), Err: err}
			if fe, ok := errors.AsType[*FetchError](err); ok {
				f.Kind, f.Reason = fe.Kind, fe.Reason
			}
			failures = append(failures, f)
		}
		if progress != nil {
			progress(counts)
		}
	}
	// failed notes m's failure, or stops the seed on a lie, the wrong key
	// or a store that cannot keep what was fetched (every later group
	// would fetch for nothing); it reports whether the seed goes on.
	failed := func(m module.Version, err error) bool {
		if stopsSeed(err) || ctx.Err() != nil {
			mu.Lock()
			if fatal == nil {
				fatal = err
			}
			mu.Unlock()
			cancel()
			return false
		}
		err = classifyFetch(m.Path, m.Version, err)
		fe, _ := errors.AsType[*FetchError](err)
		switch fe.Kind {
		case FetchNotInLog:
			note(m, &counts.NotInLog, err)
		case FetchRefused:
			note(m, &counts.Refused, err)
		case FetchUnreachable:
			note(m, &counts.Unreachable, err)
		default:
			note(m, &counts.Failed, err)
		}
		return true
	}

	// Upstream requests in flight: at most 2 x concurrency, the lookups'
	// and the proof tiles' together. Each lookup worker holds a slot from
	// its start to its end (it looks up one module@version at a time), so
	// the tiles of the groups being proven share the other concurrency
	// slots while every worker looks up, and the slots of the workers that
	// are done once the lookups run out: the last round's lookups are
	// fewer, and the last groups' tiles are read after them.
	budget := make(chan struct{}, 2*concurrency)

	// The newest head the upstreams know is linked and served while the
	// first lookups are under way (as Refresh does when a server starts),
	// so that the seed's records are proven under it and the store serves
	// it, not only the heads the lookups' answers carry: a proxy's cached
	// lookups may be days behind its /latest. Its requests share the
	// budget.
	refreshed := make(chan error, 1)
	latest := s.latestSlots(budget)
	go func() { refreshed <- s.refreshHead(ctx, budget, latest) }()

	// What the store holds already is counted, a chunk of module@versions
	// checked at once, and the rest goes to the lookups.
	todo := make(chan module.Version, concurrency)
	var lookups sync.WaitGroup // the checks and the lookups
	lookups.Add(1)
	go func() {
		defer lookups.Done()
		defer close(todo)
		for lo, n := 0, min(concurrency, seedCheckChunk); lo < len(mods); lo, n = lo+n, seedCheckChunk {
			chunk := mods[lo:min(lo+n, len(mods))]
			present, errs := s.storedMany(ctx, before, chunk)
			for i, m := range chunk {
				switch {
				case errs[i] != nil:
					if !failed(m, errs[i]) {
						return
					}
				case present[i]:
					note(m, &counts.Present, nil)
				default:
					select {
					case todo <- m:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()

	// Lookups, concurrency at a time; what they find goes to be kept.
	found := make(chan lookedUp, 2*concurrency)
	for w := 0; w < concurrency; w++ {
		lookups.Add(1)
		budget <- struct{}{}
		go func() {
			defer lookups.Done()
			defer func() { <-budget }()
			for m := range todo {
				if ctx.Err() != nil {
					return
				}
				lu, err := s.lookUp(ctx, m.Path, m.Version)
				if err != nil {
					if !failed(m, err) {
						return
					}
					continue
				}
				select {
				case found <- lu:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { lookups.Wait(); close(found) }()

	// Groups, proven a few at a time and committed one by one.
	var provers sync.WaitGroup
	slots := make(chan struct{}, seedProvers)
	held := newHeldTiles(limitedSource{sharedSource{s}, budget})
	keepGroup := func(group []lookedUp) {
		defer provers.Done()
		defer func() { <-slots }()
		src := held.forGroup()
		defer src.release()
		errs, err := s.keep(ctx, group, src, cap(budget))
		for i, it := range group {
			m := module.Version{Path: it.rec.Path, Version: it.rec.Version}
			e := err
			if e == nil {
				e = errs[i]
			}
			if e == nil {
				note(m, &counts.Fetched, nil)
			} else if !failed(m, e) {
				return
			}
		}
	}
	for group := range seedGroups(found) {
		if ctx.Err() != nil {
			continue // drain: the lookups stop
		}
		slots <- struct{}{}
		provers.Add(1)
		go keepGroup(group)
	}
	provers.Wait()
	if err := <-refreshed; err != nil && fatal == nil && ctx.Err() == nil {
		// A fork stops the seed, as from a lookup; otherwise the records
		// stand, proven under the heads their lookups came with.
		if stopsSeed(err) {
			fatal = err
		} else {
			s.logger.Warn("seed: the newest head could not be served; the seeded records are proven under the heads their lookups came with", "log", s.log, "err", err)
		}
	}
	if err := parent.Err(); err != nil && !stopsSeed(fatal) {
		// Interrupted (the caller's ctx ended): whatever failed meanwhile
		// failed for that reason, and says less.
		fatal = err
	}
	if fatal == nil && ctx.Err() != nil {
		fatal = ctx.Err()
	}
	return counts, failures, fatal
}

// stopsSeed reports whether err stops a seed rather than failing one
// module@version: signed proof of misbehaviour, a head not signed by the
// key at all, or a store that cannot keep what was fetched.
func stopsSeed(err error) bool {
	_, lie := errors.AsType[*MisbehaviourError](err)
	_, notStored := errors.AsType[*StoreError](err)
	return lie || notStored || errors.Is(err, ErrWrongKey)
}

// seedGroups cuts what found yields into groups (see seedGroup).
func seedGroups(found <-chan lookedUp) func(yield func([]lookedUp) bool) {
	return func(yield func([]lookedUp) bool) {
		timer := time.NewTimer(seedLinger)
		defer timer.Stop()
		for {
			first, ok := <-found
			if !ok {
				return
			}
			group := []lookedUp{first}
			open := true
			for open && len(group) < seedGroup {
				timer.Reset(seedLinger)
				select {
				case lu, ok := <-found:
					if !ok {
						open = false
						break
					}
					group = append(group, lu)
				case <-timer.C:
					open = false
				}
			}
			if !yield(group) {
				return
			}
		}
	}
}

// heldTiles is the source of a seed's groups. The groups proven at once
// need some of the same tiles (a level-0 tile holding records of two
// groups, the tiles above them, those of the tree's right edge), which the
// store holds only once a group that read them has committed. So a tile
// one group fetches, or is fetching, is held for the others until every
// group that read it is done: committed (the store then answers for it),
// or failed. Held tiles are as unauthenticated as any other from the
// source: each group's proof authenticates those it reads before they are
// stored. A fetch that failed is not held: the next group to need the tile
// fetches it again.
type heldTiles struct {
	src   proof.Source
	mu    sync.Mutex
	tiles map[tlog.Tile]*heldTile
}

type heldTile struct {
	done chan struct{} // closed once fetched
	data []byte
	err  error
	refs int // groups that read it and are not done; guarded by mu
}

func newHeldTiles(src proof.Source) *heldTiles {
	return &heldTiles{src: src, tiles: make(map[tlog.Tile]*heldTile)}
}

// forGroup returns the source of one group's proof.
func (h *heldTiles) forGroup() *groupTiles {
	return &groupTiles{h: h}
}

// groupTiles is the source of one group's proof.
type groupTiles struct {
	h    *heldTiles
	mu   sync.Mutex
	read map[tlog.Tile]*heldTile
}

func (g *groupTiles) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	h := g.h
	h.mu.Lock()
	ht := h.tiles[t]
	fetch := ht == nil
	if fetch {
		ht = &heldTile{done: make(chan struct{})}
		h.tiles[t] = ht
	}
	g.mu.Lock()
	if g.read == nil {
		g.read = make(map[tlog.Tile]*heldTile)
	}
	if g.read[t] == nil {
		g.read[t] = ht
		ht.refs++
	}
	g.mu.Unlock()
	h.mu.Unlock()
	if fetch {
		ht.data, ht.err = h.src.Tile(ctx, t)
		if ht.err != nil {
			h.mu.Lock()
			if h.tiles[t] == ht {
				delete(h.tiles, t)
			}
			h.mu.Unlock()
		}
		close(ht.done)
	} else {
		select {
		case <-ht.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return ht.data, ht.err
}

// release lets go of the tiles the group read, once it is done.
func (g *groupTiles) release() {
	h := g.h
	h.mu.Lock()
	defer h.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	for t, ht := range g.read {
		if ht.refs--; ht.refs <= 0 && h.tiles[t] == ht {
			delete(h.tiles, t)
		}
	}
	g.read = nil
}

// storedMany reports which of mods have their record stored under head
// (none if its size is 0), in one call where the store looks up many at
// once, and otherwise seedStoreChecks lookups at a time; errs[i] is the
// store's error for mods[i].
func (s *Syncer) storedMany(ctx context.Context, head store.Head, mods []module.Version) (present []bool, errs []error) {
	present, errs = make([]bool, len(mods)), make([]error, len(mods))
	if head.Size == 0 {
		return present, errs
	}
	if lm, ok := s.cfg.Store.(manyLooker); ok {
		paths, versions := make([]string, len(mods)), make([]string, len(mods))
		for i, m := range mods {
			paths[i], versions[i] = m.Path, m.Version
		}
		_, lerrs, err := lm.LookupMany(ctx, s.log, paths, versions, head.Size)
		for i := range mods {
			e := err
			if e == nil {
				e = lerrs[i]
			}
			if !errors.Is(e, store.ErrNotFound) {
				present[i], errs[i] = e == nil, e
			}
		}
		return present, errs
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, seedStoreChecks)
	for i, m := range mods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			present[i], errs[i] = s.storedUnder(ctx, head, m)
		}()
	}
	wg.Wait()
	return present, errs
}

// storedUnder reports whether the record of m is stored under head (none
// if its size is 0).
func (s *Syncer) storedUnder(ctx context.Context, head store.Head, m module.Version) (bool, error) {
	if head.Size == 0 {
		return false, nil
	}
	_, err := s.cfg.Store.Lookup(ctx, s.log, m.Path, m.Version, head.Size)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
