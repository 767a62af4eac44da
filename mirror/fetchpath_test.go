package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

// TestFetchAbsentRemembered: a storm of lookups of a module@version the
// upstream answers 404 for makes one upstream request, at once and for a
// while after; an upstream failure (a 503) is not remembered.
func TestFetchAbsentRemembered(t *testing.T) {
	ctx := context.Background()
	u, _, s := newLazy(t, 1000)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	u.OnRequest(func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/lookup/") {
			<-gate
		}
	})
	const path, version = "example.com/never/published", "v1.2.3"
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Fetch(ctx, path, version) }()
	}
	waitRequests(t, u, "/lookup/", 1)
	close(gate)
	wg.Wait()
	for i := 0; i < 100; i++ {
		errs = append(errs, s.Fetch(ctx, path, version))
	}
	for _, err := range errs {
		if fe, ok := errors.AsType[*mirror.FetchError](err); !ok || fe.Kind != mirror.FetchNotInLog || !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Fetch of a module@version not in the log: %v", err)
		}
	}
	if n := u.Requests("/lookup/"); n != 1 {
		t.Fatalf("%d upstream lookups for a storm of 300 lookups of one missing module@version, want 1", n)
	}

	// Failures are not remembered: each Fetch asks again.
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError, Prefix: "/lookup/"})
	const other = "example.com/flaky"
	for i := 0; i < 2; i++ {
		if err := s.Fetch(ctx, other, version); err == nil {
			t.Fatal("Fetch through a failing upstream succeeded")
		}
	}
	first := u.Requests("/lookup/" + other)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	if err := s.Fetch(ctx, other, version); !errors.Is(err, mirror.ErrNoRecord) {
		t.Fatalf("Fetch after the upstream recovered: %v", err)
	}
	if n := u.Requests("/lookup/" + other); n <= first || first < 2 {
		t.Fatalf("upstream lookups of a module@version whose lookups failed: %d, then %d after one more Fetch; want each Fetch to ask", first, n)
	}
}

// rounds is a hermetic upstream in front of u that delays every request
// and tells how many round trips a piece of work took: the depth of a
// request is one more than the deepest request that had been answered
// when it arrived, so requests sent together share a depth and a request
// sent after another's answer is one deeper.
type rounds struct {
	h     http.Handler
	delay time.Duration
	mu    sync.Mutex
	done  int // the deepest request answered
	deep  int // the deepest request seen
	n     int
}

func (r *rounds) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	d := r.done + 1
	r.deep = max(r.deep, d)
	r.n++
	r.mu.Unlock()
	select {
	case <-time.After(r.delay): // the latency of a distant upstream
	case <-req.Context().Done():
	}
	r.h.ServeHTTP(w, req)
	r.mu.Lock()
	r.done = max(r.done, d)
	r.mu.Unlock()
}

// start begins counting anew.
func (r *rounds) start() {
	r.mu.Lock()
	r.done, r.deep, r.n = 0, 0, 0
	r.mu.Unlock()
}

func (r *rounds) result() (depth, requests int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deep, r.n
}

// TestColdLookupRoundTrips: a cold lookup costs two upstream round trips:
// the lookup, then every tile its proofs need at once. That holds for a
// record under the served head, for one whose lookup came with a newer
// head than any stored (its consistency proof is read in the same round),
// and for a record newer than the served head (the head move's proofs too).
func TestColdLookupRoundTrips(t *testing.T) {
	ctx := context.Background()
	u := newLog(t, 70000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	// A generous latency: requests sent together must arrive before any
	// is answered, even on a busy machine.
	rt := &rounds{h: u.Handler(), delay: 300 * time.Millisecond}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	st := newStore(t)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	fetch := func(what string, id int64) {
		t.Helper()
		p, v, _ := u.Module(id)
		rt.start()
		if err := s.Fetch(ctx, p, v); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if depth, n := rt.result(); depth > 2 {
			t.Errorf("%s: %d upstream round trips (%d requests), want 2", what, depth, n)
		} else {
			t.Logf("%s: %d round trips, %d requests", what, depth, n)
		}
	}
	fetch("a record under the served head", 123)
	fetch("another one", 40000)
	if err := u.AddSynthetic(5000); err != nil {
		t.Fatal(err)
	}
	fetch("a record whose lookup comes with a newer head", 50000)
	if err := u.AddSynthetic(3000); err != nil {
		t.Fatal(err)
	}
	fetch("a record newer than the served head", u.Size()-1)
	checkProvable(t, st, u)
}

// commitCounter is a real store that counts commits.
type commitCounter struct {
	store.Store
	commits   atomic.Int64
	records   atomic.Int64
	tileReads atomic.Int64
}

func (c *commitCounter) Commit(ctx context.Context, log string, b store.Batch) error {
	c.commits.Add(1)
	c.records.Add(int64(len(b.Records)))
	return c.Store.Commit(ctx, log, b)
}

// Tile reads from the store, each one query.
func (c *commitCounter) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	c.tileReads.Add(1)
	return c.Store.ReadTiles(ctx, log, tiles)
}

func (c *commitCounter) ReadSomeTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	c.tileReads.Add(1)
	return c.Store.ReadSomeTiles(ctx, log, tiles)
}

// TestSeedCommitsInGroups: a seed stores what it fetched in groups, one
// commit for many records, each of them provable; and one that meets a lie
// halfway stops, with everything it stored still provable and nothing of
// the lie stored.
func TestSeedCommitsInGroups(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 20000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	st := &commitCounter{Store: newStore(t)}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy, Concurrency: 64})
	if err != nil {
		t.Fatal(err)
	}
	mods := modsEvery(t, u, 0, 20000, 23)
	counts, failures, err := s.Seed(ctx, mods, 64, nil)
	if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
		t.Fatalf("seed: %v, counts %+v, failures %v", err, counts, failures)
	}
	tileReads := st.tileReads.Load()
	if n := checkProvable(t, st, u); n != len(mods) {
		t.Fatalf("%d records stored, want %d", n, len(mods))
	}
	// A group is cut when the lookups pause; however they pause, far
	// fewer commits than records.
	if c := st.commits.Load(); c > int64(len(mods)/4) {
		t.Errorf("seed of %d records made %d commits, want them grouped", len(mods), c)
	} else {
		t.Logf("seed of %d records: %d commits", len(mods), c)
	}

	// The tiles of a group's proofs, of which the store holds some (the
	// groups before it stored them), are read from the store in one
	// query, not one per tile: a few reads per commit, not per record.
	if r := tileReads; r > 3*st.commits.Load()+3 {
		t.Errorf("seed of %d records in %d commits read the store's tiles %d times, want a few per commit", len(mods), st.commits.Load(), r)
	} else {
		t.Logf("seed of %d records: %d tile reads from the store", len(mods), r)
	}

	// The log grows, and its tiles lie from some record on: a seed of
	// records before and after stops on the lie.
	if err := u.AddSynthetic(2000); err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: 21000})
	var more []module.Version
	for _, id := range []int64{20001, 20500, 21000, 21500, 21999} {
		p, v, _ := u.Module(id)
		more = append(more, module.Version{Path: p, Version: v})
	}
	_, _, err = s.Seed(ctx, more, 4, nil)
	var me *mirror.MisbehaviourError
	if !errors.As(err, &me) || me.Evidence.Kind != store.EvidenceBadRecord {
		t.Fatalf("seed through a lie: %v, want a MisbehaviourError of kind %s", err, store.EvidenceBadRecord)
	}
	checkProvable(t, st, u)
	p, v, _ := u.Module(21000)
	if _, err := st.Lookup(ctx, logName, p, v, 1<<62); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the altered record was stored: %v", err)
	}
}

// TestSeedCachedHeads: a seed whose lookups each come with a head of their
// own (as a caching proxy serves them) links and keeps every one of those
// heads, each provable under the served head, and links each by reading
// its neighbours, not every stored head: reading them all for each new
// head made a seed quadratic in the heads it met (76 s of a real seed's
// CPU went there).
func TestSeedCachedHeads(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 6000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultCachedHeads})
	st := &headReadCounter{Store: newStore(t)}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy, Concurrency: 32})
	if err != nil {
		t.Fatal(err)
	}
	mods := modsEvery(t, u, 3, 6000, 13)
	counts, failures, err := s.Seed(ctx, mods, 32, nil)
	if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
		t.Fatalf("seed: %v, counts %+v, failures %v", err, counts, failures)
	}
	if n := checkProvable(t, st, u); n != len(mods) {
		t.Fatalf("%d records stored, want %d", n, len(mods))
	}
	heads, err := st.Store.Heads(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	// Sizes drawn per record: a few coincide.
	if len(heads) < len(mods)*3/4 {
		t.Fatalf("%d heads stored after a seed of %d lookups each with its own head, want about one each", len(heads), len(mods))
	}
	// Reading every head is left to the advance of the served head,
	// which proves them all: a few times a seed, not once a head.
	if n := st.allHeads.Load(); n > int64(len(heads))/10 {
		t.Errorf("a seed that linked %d heads read every stored head %d times", len(heads), n)
	} else {
		t.Logf("a seed that linked %d heads read every stored head %d times and the heads around one %d times", len(heads), n, st.around.Load())
	}
	// The heads of a group have their neighbours read at once.
	if n := st.aroundMany.Load(); n > int64(len(heads))/4 {
		t.Errorf("a seed that linked %d heads read their neighbours in %d reads", len(heads), n)
	} else {
		t.Logf("a seed that linked %d heads read their neighbours in %d reads", len(heads), n)
	}
	// The heads of a group are stored in one commit, not one each.
	if n := st.adds.Load(); n > int64(len(heads))/4 {
		t.Errorf("a seed that linked %d heads stored them in %d commits", len(heads), n)
	} else {
		t.Logf("a seed that linked %d heads stored them in %d commits", len(heads), n)
	}
}

// TestSeedServesNewestHead: a seed whose lookups come with older heads (a
// caching proxy's) serves the upstream's newest head once done, with every
// record it stored provable under it; and when the newest head cannot be
// had (/latest fails), the seed still stores what its lookups found,
// proven under their heads.
func TestSeedServesNewestHead(t *testing.T) {
	ctx := context.Background()
	for _, latestFails := range []bool{false, true} {
		u := newLog(t, 6000)
		u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultCachedHeads})
		h := u.Handler()
		var latestAsked atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/latest") {
				latestAsked.Add(1)
				if latestFails {
					http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
					return
				}
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		st := newStore(t)
		s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy, Concurrency: 8})
		if err != nil {
			t.Fatal(err)
		}
		// Records early in the log: their lookups' heads are drawn from
		// sizes above each, and the largest of 30 is not the log's.
		mods := modsEvery(t, u, 0, 3000, 100)
		counts, failures, err := s.Seed(ctx, mods, 8, nil)
		if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
			t.Fatalf("/latest failing %v: seed: %v, counts %+v, failures %v", latestFails, err, counts, failures)
		}
		if latestAsked.Load() == 0 {
			t.Fatalf("/latest failing %v: the seed never asked for the newest head", latestFails)
		}
		served, err := st.ServedHead(ctx, logName)
		if err != nil {
			t.Fatal(err)
		}
		if !latestFails && served.Size != u.Size() {
			t.Errorf("after a seed, the store serves head %d, want the upstream's newest, %d", served.Size, u.Size())
		}
		if latestFails && served.Size == u.Size() {
			t.Errorf("with /latest failing, the store serves the newest head %d: the test's lookups carry it", served.Size)
		}
		if n := checkProvable(t, st, u); n != len(mods) {
			t.Fatalf("/latest failing %v: %d records stored, want %d", latestFails, n, len(mods))
		}
	}
}

// TestSeedRefreshWithinBudget: a seed at concurrency 1 through three
// upstreams, whose /latest requests outnumber its budget of two requests
// in flight, and whose newest head must be linked to stored heads with
// tiles read through that budget, ends: the refresh holds its slots only
// while the heads come, never while it waits for more.
func TestSeedRefreshWithinBudget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := newLog(t, 3000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	var cands []upstream.Candidate
	for range 3 {
		srv := httptest.NewServer(u.Handler())
		t.Cleanup(srv.Close)
		cands = append(cands, upstream.Candidate{URL: srv.URL})
	}
	st := newStore(t)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewPool(cands, upstream.PoolConfig{}), Key: u.VerifierKey(), Mode: mirror.ModeLazy, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	for round, n := range []int{3000, 4000} {
		if n > int(u.Size()) {
			if err := u.AddSynthetic(n - int(u.Size())); err != nil {
				t.Fatal(err)
			}
		}
		mods := modsEvery(t, u, int64(round), int64(n), 97)
		counts, failures, err := s.Seed(ctx, mods, 1, nil)
		if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
			t.Fatalf("seed %d: %v, counts %+v, failures %v", round, err, counts, failures)
		}
		served, err := st.ServedHead(ctx, logName)
		if err != nil {
			t.Fatal(err)
		}
		if served.Size != u.Size() {
			t.Fatalf("seed %d: serving head %d, want the newest, %d", round, served.Size, u.Size())
		}
	}
	checkProvable(t, st, u)
}

// headReadCounter is a real store that counts reads of the stored heads,
// and the calls that store heads.
type headReadCounter struct {
	store.Store
	allHeads, around, aroundMany, adds atomic.Int64
}

func (c *headReadCounter) AddHead(ctx context.Context, log string, hs ...store.Head) error {
	c.adds.Add(1)
	return c.Store.AddHead(ctx, log, hs...)
}

func (c *headReadCounter) Heads(ctx context.Context, log string) ([]store.Head, error) {
	c.allHeads.Add(1)
	return c.Store.Heads(ctx, log)
}

func (c *headReadCounter) HeadsAround(ctx context.Context, log string, size int64) (store.Around, error) {
	c.around.Add(1)
	return c.Store.HeadsAround(ctx, log, size)
}

func (c *headReadCounter) HeadsAroundMany(ctx context.Context, log string, sizes []int64) ([]store.Around, error) {
	c.aroundMany.Add(1)
	c.around.Add(int64(len(sizes)))
	return c.Store.HeadsAroundMany(ctx, log, sizes)
}

// TestLyingTileEvidenceOnce: lookups that each meet the same lying tile
// keep one piece of evidence, counted, not a row per lookup.
func TestLyingTileEvidenceOnce(t *testing.T) {
	ctx := context.Background()
	u, st, s := newLazy(t, 5000)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 0, N: 7, Offset: 100})
	for id := int64(7 * 256); id < 7*256+5; id++ {
		p, v, _ := u.Module(id)
		var me *mirror.MisbehaviourError
		if err := s.Fetch(ctx, p, v); !errors.As(err, &me) || me.Evidence.Kind != store.EvidenceBadTile {
			t.Fatalf("Fetch of record %d through a lying tile: %v", id, err)
		}
	}
	es, err := st.Evidence(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Count != 5 || es[0].Object != "tile tile/8/0/007" {
		for _, e := range es {
			t.Logf("evidence %s %q x%d", e.Kind, e.Object, e.Count)
		}
		t.Fatalf("%d pieces of evidence for 5 lookups meeting one lying tile, want 1 naming tile/8/0/007, counted 5", len(es))
	}
}

// TestSeedBoundsRequestsInFlight: a seed asks its upstream for at most
// 2 x concurrency things at once (its lookups, and the proof tiles of the
// groups being proven, shared among them), however many groups are being
// proven, against an upstream slow enough for requests to pile up.
func TestSeedBoundsRequestsInFlight(t *testing.T) {
	ctx := context.Background()
	u, _ := newUpstream(t, 60000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	u.SetLatency(20 * time.Millisecond)
	var inFlight, peak atomic.Int64
	h := u.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	st := newStore(t)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	// A level-0 tile for each record: groups with many tiles to read.
	mods := modsEvery(t, u, 0, 60000, 257)
	const concurrency = 8
	counts, failures, err := s.Seed(ctx, mods, concurrency, nil)
	if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
		t.Fatalf("seed: %v, counts %+v, failures %v", err, counts, failures)
	}
	if p := peak.Load(); p > 2*concurrency {
		t.Errorf("seed with --concurrency %d had %d upstream requests in flight, want at most %d", concurrency, p, 2*concurrency)
	} else {
		t.Logf("seed of %d records: at most %d upstream requests in flight", len(mods), p)
	}
}

// TestSeedTilesTakeTheLookupsSlots: once a seed's lookups are done, the
// proof tiles of the groups left have every slot of the 2 x concurrency
// requests in flight, not only the half they share while lookups run. A
// seed of one round of lookups, one record per level-0 tile, reads its
// group's tiles (more than concurrency of them) in one round.
func TestSeedTilesTakeTheLookupsSlots(t *testing.T) {
	ctx := context.Background()
	u, _ := newUpstream(t, 60000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	u.SetLatency(100 * time.Millisecond)
	var tilesInFlight, peak, inFlight, peakAll atomic.Int64
	h := u.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		all := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := peakAll.Load(); all > m && !peakAll.CompareAndSwap(m, all); m = peakAll.Load() {
		}
		if strings.Contains(r.URL.Path, "/tile/") {
			n := tilesInFlight.Add(1)
			defer tilesInFlight.Add(-1)
			for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s, err := mirror.New(mirror.Config{Store: newStore(t), Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	const concurrency = 8
	var mods []module.Version
	for id := int64(100); len(mods) < concurrency; id += 7 * 256 {
		p, v, _ := u.Module(id)
		mods = append(mods, module.Version{Path: p, Version: v})
	}
	counts, failures, err := s.Seed(ctx, mods, concurrency, nil)
	if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
		t.Fatalf("seed: %v, counts %+v, failures %v", err, counts, failures)
	}
	if p := peakAll.Load(); p > 2*concurrency {
		t.Errorf("seed with concurrency %d had %d upstream requests in flight, want at most %d", concurrency, p, 2*concurrency)
	}
	if p := peak.Load(); p <= concurrency {
		t.Errorf("seed with concurrency %d, its lookups done, had at most %d tile requests in flight, want more than %d", concurrency, p, concurrency)
	} else {
		t.Logf("seed of %d records with concurrency %d: %d tile requests in flight at most", len(mods), concurrency, p)
	}
}

// lookupCounter is a real store (store/postgres) that counts its lookups
// of records, one at a time and many at once.
type lookupCounter struct {
	store.Store
	lookups, manys atomic.Int64
}

func (c *lookupCounter) Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error) {
	c.lookups.Add(1)
	return c.Store.Lookup(ctx, log, path, version, maxID)
}

func (c *lookupCounter) LookupMany(ctx context.Context, log string, paths, versions []string, maxID int64) ([]store.Record, []error, error) {
	c.manys.Add(1)
	return c.Store.(*postgres.Store).LookupMany(ctx, log, paths, versions, maxID)
}

// TestReseedChecksTheStoreInChunks: a seed of module@versions that are
// mostly stored already asks the store about them a chunk at a time, not
// one query each, and counts them as present.
func TestReseedChecksTheStoreInChunks(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 8000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	st := &lookupCounter{Store: newStore(t)}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	var first, again []module.Version
	for id := int64(0); id < 8000; id++ {
		p, v, _ := u.Module(id)
		switch id % 7 {
		case 0:
			first = append(first, module.Version{Path: p, Version: v})
			again = append(again, module.Version{Path: p, Version: v})
		case 3:
			again = append(again, module.Version{Path: p, Version: v})
		}
	}
	const concurrency = 64
	if counts, failures, err := s.Seed(ctx, first, concurrency, nil); err != nil || len(failures) > 0 || counts.Fetched != len(first) {
		t.Fatalf("first seed: %v, counts %+v, failures %v", err, counts, failures)
	}
	st.lookups.Store(0)
	st.manys.Store(0)
	counts, failures, err := s.Seed(ctx, again, concurrency, nil)
	if err != nil || len(failures) > 0 || counts.Present != len(first) || counts.Fetched != len(again)-len(first) {
		t.Fatalf("second seed of %d (%d stored): %v, counts %+v, failures %v", len(again), len(first), err, counts, failures)
	}
	// A first chunk of concurrency, then chunks of 1,024.
	chunks := 1 + int64(len(again)-concurrency+1023)/1024
	if l, m := st.lookups.Load(), st.manys.Load(); l > 0 || m > chunks {
		t.Errorf("a seed of %d module@versions looked up %d records one at a time and %d chunks, want %d chunks", len(again), l, m, chunks)
	} else {
		t.Logf("a seed of %d module@versions, %d stored: %d chunks looked up", len(again), len(first), m)
	}
	checkProvable(t, st, u)
}

// slowCommits is a real store whose commits take a while, so that a
// seed's groups are proven while the groups before them commit.
type slowCommits struct {
	store.Store
	delay time.Duration
}

func (s slowCommits) Commit(ctx context.Context, log string, b store.Batch) error {
	time.Sleep(s.delay)
	return s.Store.Commit(ctx, log, b)
}

// TestSeedGroupsShareTiles: the groups of a seed proven at once need some
// of the same tiles (here, the tiles of the tree's right edge, which every
// proof reads), which the store lacks until the group that fetched them
// has committed: they are fetched once, not once a group.
func TestSeedGroupsShareTiles(t *testing.T) {
	ctx := context.Background()
	u, _ := newUpstream(t, 60000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	// Lookups come back in waves further apart than a group lingers:
	// a group each.
	u.SetLatency(50 * time.Millisecond)
	var mu sync.Mutex
	requests := make(map[string]int)
	h := u.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/tile/") {
			mu.Lock()
			requests[r.URL.Path]++
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	st := slowCommits{Store: newStore(t), delay: 150 * time.Millisecond}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	mods := modsEvery(t, u, 3, 60000, 937)
	counts, failures, err := s.Seed(ctx, mods, 8, nil)
	if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
		t.Fatalf("seed: %v, counts %+v, failures %v", err, counts, failures)
	}
	var again []string
	for path, n := range requests {
		if n > 1 {
			again = append(again, fmt.Sprintf("%s x%d", path, n))
		}
	}
	slices.Sort(again)
	if len(again) > 0 {
		t.Errorf("a seed of %d records in groups fetched %d tiles, and these more than once: %v", len(mods), len(requests), again)
	} else {
		t.Logf("a seed of %d records in groups fetched %d tiles, each once", len(mods), len(requests))
	}
	checkProvable(t, st, u)
}

// TestSeedSplitViewHeads: a seed whose lookups come with heads of two
// histories signed with the same key (a split view: some answered with the
// upstream's head, others with a forked history's older head) stops at
// the fork and keeps its evidence, whichever group meets the forked head,
// and stores no head of the forked history when it knows the other's
// newer head.
func TestSeedSplitViewHeads(t *testing.T) {
	ctx := context.Background()
	u := newLog(t, 6000)
	f := forkOf(t, u, 2500, 1000)
	// The forked history's lookups come with its head of 3000 records,
	// past where the histories part.
	f.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultStaleHead, N: 3000})
	// A third of the lookups are answered by the forked history.
	var mods []module.Version
	fromFork := make(map[string]bool)
	for id := int64(100); id < 140; id++ {
		p, v, _ := u.Module(id)
		mods = append(mods, module.Version{Path: p, Version: v})
		if id%3 == 0 {
			ep, _ := module.EscapePath(p)
			ev, _ := module.EscapeVersion(v)
			fromFork["/lookup/"+ep+"@"+ev] = true
		}
	}
	var forked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fromFork[r.URL.Path] {
			forked.Add(1)
			f.Handler().ServeHTTP(w, r)
			return
		}
		u.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	st := newStore(t)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	// The upstream's newest head is stored first, so that every forked
	// head a lookup brings is linked through it, whichever group it is in
	// (an empty store would keep the first head it meets, forked or not).
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Seed(ctx, mods, 8, nil)
	if forked.Load() == 0 {
		t.Fatal("no lookup was answered by the forked history: the test does not test it")
	}
	var me *mirror.MisbehaviourError
	if !errors.As(err, &me) || me.Evidence.Kind != store.EvidenceFork {
		t.Fatalf("seed meeting heads of two histories: %v, want a MisbehaviourError of kind %s", err, store.EvidenceFork)
	}
	heads, err := st.Heads(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := f.SignedHeadAt(3000)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range heads {
		if bytes.Equal(h.Note, fh) {
			t.Errorf("the forked history's head of size %d was stored", h.Size)
		}
	}
}

// TestSeedHeadStoredMeanwhile: a group's newest head that another process
// stores after the group read the store's newest head (as a seed's
// concurrent groups do, or a second mirror on the same database) is a
// stored head to link the group's other heads through, not a reason to
// fail the group.
func TestSeedHeadStoredMeanwhile(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 6000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultCachedHeads})
	st := &storesMeanwhile{Store: newStore(t), u: u}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy, Concurrency: 32})
	if err != nil {
		t.Fatal(err)
	}
	mods := modsEvery(t, u, 3, 6000, 13)
	counts, failures, err := s.Seed(ctx, mods, 32, nil)
	if err != nil || len(failures) > 0 || counts.Fetched != len(mods) {
		t.Fatalf("seed: %v, counts %+v, first failures %v", err, counts, failures[:min(len(failures), 3)])
	}
	if n := st.stored.Load(); n == 0 {
		t.Fatal("no head was stored meanwhile: the test does not test it")
	} else {
		t.Logf("%d heads stored by another process meanwhile", n)
	}
	if n := checkProvable(t, st, u); n != len(mods) {
		t.Fatalf("%d records stored, want %d", n, len(mods))
	}
}

// storesMeanwhile is a real store where, just before the neighbours of
// several heads are read, another process stores the largest of them (an
// honest head of u).
type storesMeanwhile struct {
	store.Store
	u      *sumdbtest.Upstream
	stored atomic.Int64
}

func (s *storesMeanwhile) HeadsAroundMany(ctx context.Context, log string, sizes []int64) ([]store.Around, error) {
	if len(sizes) > 1 {
		n := slices.Max(sizes)
		near, err := s.Store.HeadsAround(ctx, log, n)
		if err != nil {
			return nil, err
		}
		if near.At == nil {
			msg, err := s.u.SignedHeadAt(n)
			if err != nil {
				return nil, err
			}
			hash, err := tlog.TreeHash(n, s.u.HashReader())
			if err != nil {
				return nil, err
			}
			if err := s.Store.AddHead(ctx, log, store.Head{Size: n, Hash: hash, Note: msg}); err != nil {
				return nil, err
			}
			s.stored.Add(1)
		}
	}
	return s.Store.HeadsAroundMany(ctx, log, sizes)
}
