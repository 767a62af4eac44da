package mirror_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

// walkCounting counts the reads of a Postgres store's record ids: pages
// of a walk, and groupings.
type walkCounting struct {
	*postgres.Store
	pages, groupings atomic.Int64
}

func (w *walkCounting) RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error) {
	w.pages.Add(1)
	return w.Store.RecordIDs(ctx, log, after, limit)
}

func (w *walkCounting) GroupRecordIDs(ctx context.Context, log string, lo, hi int64, shift uint) ([]store.IDRange, error) {
	w.groupings.Add(1)
	return w.Store.GroupRecordIDs(ctx, log, lo, hi, shift)
}

// provedTiles keeps the "proved tiles" (record proofs) and "proved heads"
// of each "serving head" message.
type provedTiles struct {
	mu     sync.Mutex
	proofs []int64
	heads  []int64
}

func (p *provedTiles) Enabled(context.Context, slog.Level) bool { return true }
func (p *provedTiles) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "serving head" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		p.mu.Lock()
		switch a.Key {
		case "proved tiles":
			p.proofs = append(p.proofs, a.Value.Int64())
		case "proved heads":
			p.heads = append(p.heads, a.Value.Int64())
		}
		p.mu.Unlock()
		return true
	})
	return nil
}
func (p *provedTiles) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *provedTiles) WithGroup(string) slog.Handler      { return p }

// last returns the record proofs of the last "serving head" message.
func (p *provedTiles) last(t *testing.T) int64 {
	t.Helper()
	return p.lastOf(t, &p.proofs)
}

// lastHeads returns the head proofs of the last "serving head" message.
func (p *provedTiles) lastHeads(t *testing.T) int64 {
	t.Helper()
	return p.lastOf(t, &p.heads)
}

func (p *provedTiles) lastOf(t *testing.T, xs *[]int64) int64 {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(*xs) == 0 {
		t.Fatal("no head was served")
	}
	return (*xs)[len(*xs)-1]
}

// walkOnly is a walkCounting store that cannot group record ids: the
// syncer walks them.
type walkOnly struct {
	store.Store
	w *walkCounting
}

func (w walkOnly) RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error) {
	return w.w.RecordIDs(ctx, log, after, limit)
}

// TestLazyAdvanceProofs: moving the served head of a lazy store proves
// one stored record for each level-1 tile whose records' level-0 tiles
// were full under the head served before, and one for each other level-0
// tile, not one for every level-0 tile that holds a record; and every
// stored record stays provable from stored tiles, across level-0 and
// level-1 tile boundaries, whether a sync or a fetch moves the head, and
// whether the store groups record ids or they are walked.
func TestLazyAdvanceProofs(t *testing.T) {
	for _, grouped := range []bool{true, false} {
		name := "grouped"
		if !grouped {
			name = "walked"
		}
		t.Run(name, func(t *testing.T) { testLazyAdvanceProofs(t, grouped) })
	}
}

func testLazyAdvanceProofs(t *testing.T, grouped bool) {
	ctx := context.Background()
	const size = 200_000 // level-1 tiles 0, 1 and 2 full, 3 partial; level-0 tile 781 partial
	u, url := newUpstream(t, size)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	st := &walkCounting{Store: newStore(t).(*postgres.Store)}
	var ms store.Store = st
	if !grouped {
		ms = walkOnly{Store: st, w: st}
	}
	logs := &provedTiles{}
	s, err := mirror.New(mirror.Config{Store: ms, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(),
		Concurrency: 8, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	// 600 records scattered over the log, and some in its last, partial
	// level-0 tile.
	r := rand.New(rand.NewPCG(3, 4))
	seedScattered(t, s, u, r, 600, size-1, size-60, 65535, 65536)
	checkProvable(t, st, u)

	// A sync moves the head past level-0 and level-1 tile boundaries.
	if err := u.AddSynthetic(70_000); err != nil {
		t.Fatal(err)
	}
	res, err := s.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Served.Size != u.Size() {
		t.Fatalf("served %d, upstream %d", res.Served.Size, u.Size())
	}
	// Level-1 tiles 0 to 3, and level-0 tile 781.
	if n := logs.last(t); n < 1 || n > 5 {
		t.Errorf("the advance made %d record proofs, want at most 5 for 600 records", n)
	}
	checkProvable(t, st, u)

	// A fetch of a record newer than the served head moves it too, and
	// reads the stored ids once, for the plan of its tiles and the proofs
	// both: two groupings (the records of full level-0 tiles by level-1
	// tile, the others by level-0 tile), or a walk of one page (600 ids).
	if err := u.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	pages, groupings := st.pages.Load(), st.groupings.Load()
	fetchID(t, s, u, u.Size()-1)
	if n := logs.last(t); n < 1 || n > 6 {
		t.Errorf("the fetch's advance made %d record proofs, want at most 6", n)
	}
	wantPages, wantGroupings := int64(0), int64(2)
	if !grouped {
		wantPages, wantGroupings = 1, 0
	}
	if n, g := st.pages.Load()-pages, st.groupings.Load()-groupings; n != wantPages || g != wantGroupings {
		t.Errorf("the fetch read %d pages of record ids and grouped them %d times, want %d and %d", n, g, wantPages, wantGroupings)
	}
	checkProvable(t, st, u)
}

// TestLazyAdvanceHeadProofs: with heads stored all over the log (a seed
// whose lookups each come with a head of their own, as a caching proxy
// serves them), moving the served head proves one stored head for each
// level-1 tile whose heads' last leaves lie in level-0 tiles full under
// the head served before, and one for each other level-0 tile, not one
// for every head; and every stored head stays provable from stored tiles.
func TestLazyAdvanceHeadProofs(t *testing.T) {
	ctx := context.Background()
	const size = 200_000
	u, url := newUpstream(t, size)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultCachedHeads})
	st := newStore(t)
	logs := &provedTiles{}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(),
		Mode: mirror.ModeLazy, Concurrency: 8, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	seedScattered(t, s, u, r, 400)
	heads, err := st.Heads(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) < 300 {
		t.Fatalf("%d heads stored, want one for most of 400 lookups", len(heads))
	}
	checkProvable(t, st, u)
	// Heads past the served head: the log grows by 2,000 records, and
	// lookups of stored records come with heads of sizes up to its new
	// size, in several level-0 tiles past the served head's edge.
	if err := u.AddSynthetic(2000); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		fetchID(t, s, u, r.Int64N(size))
	}

	if err := u.AddSynthetic(70_000); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	// Level-1 tiles 0 to 3 (by the heads' last leaves), and the level-0
	// tiles at and past the old served head's edge (782 to 789).
	if n := logs.lastHeads(t); n < 1 || n > 16 {
		t.Errorf("the advance made %d head proofs for %d stored heads, want at most 16", n, len(heads))
	}
	checkProvable(t, st, u)
}

// seedScattered seeds n records of u drawn with r, those of ids among
// them, into s.
func seedScattered(t *testing.T, s *mirror.Syncer, u *sumdbtest.Upstream, r *rand.Rand, n int, ids ...int64) {
	t.Helper()
	pick := make(map[int64]bool)
	for _, id := range ids {
		pick[id] = true
	}
	for len(pick) < n {
		pick[r.Int64N(u.Size())] = true
	}
	var mods []module.Version
	for id := range pick {
		p, v, _ := u.Module(id)
		mods = append(mods, module.Version{Path: p, Version: v})
	}
	if c, _, err := s.Seed(context.Background(), mods, 64, nil); err != nil || c.Fetched != len(mods) {
		t.Fatalf("seed: %+v, %v", c, err)
	}
}
