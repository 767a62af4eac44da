package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

// The fetch path's figures: how fast a lazy mirror answers what it does not
// hold, against an upstream whose every request takes a fixed latency (a
// checksum database far away; loopback otherwise).
//
//   - cold lookups: a lazy mirror serving the upstream's head is asked, by 8
//     clients at once, for records it does not hold; each answer is one
//     fetch-through (lookup, proof tiles, commit). Targets: p50 <= 3 upstream
//     round trips and p99 <= 6, i.e. 60 ms and 120 ms at 20 ms. The first
//     -cold-warmup lookups (16), of other records, are not counted: they
//     are the process's first, which open the store's and the upstream's
//     connections (a server that has run for a while holds them), and
//     otherwise they alone are the slowest 2%: the p99. -trace-cold N
//     prints where the N slowest lookups spent their time.
//   - seed: Syncer.Seed of 2,000 module@versions (a go.sum of 4,000 lines):
//     records/s beside the latency bound, records / (latency × the rounds
//     the concurrency needs, ceil(records / concurrency)); the lookups'
//     rounds only: each record's proof tiles are fetched beside the next
//     rounds' lookups, as many at a time, so only the last group's tiles
//     and commit add to it. Beside it, the CPU it took (this process, the
//     upstream included, and the database's backends) and the ratio that
//     CPU alone allows on the machine's cores. Then the same seed from an
//     upstream whose lookups each come with a head of their own, as a
//     caching proxy serves them (one real proxy answered a 2,091-record
//     go.sum with heads spread over 15 million records): every head is
//     linked and kept, and the figure is its records/s over the plain
//     seed's.

// slowUpstream serves h after a fixed delay per request and counts requests.
type slowUpstream struct {
	h        http.Handler
	delay    time.Duration
	requests atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
	mu       sync.Mutex
	remotes  map[string]bool
}

// conns returns how many connections have sent requests.
func (s *slowUpstream) conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.remotes)
}

func (s *slowUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	if s.remotes == nil {
		s.remotes = make(map[string]bool)
	}
	s.remotes[r.RemoteAddr] = true
	s.mu.Unlock()
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxIn.Load(); n > m && !s.maxIn.CompareAndSwap(m, n); m = s.maxIn.Load() {
	}
	select {
	case <-time.After(s.delay):
	case <-r.Context().Done():
		return
	}
	s.h.ServeHTTP(w, r)
}

// fetchPathFigures measures cold lookups and seed against h (the upstream
// u, pre-rendered).
func fetchPathFigures(ctx context.Context, u *sumdbtest.Upstream, h http.Handler, add func(name, value, target string)) error {
	gin.SetMode(gin.ReleaseMode)
	if !seedOnly {
		if err := coldLookups(ctx, u, h, 20*time.Millisecond, 8, 400, add); err != nil {
			return fmt.Errorf("cold lookups: %w", err)
		}
	}
	if !fetchPathSeed {
		return nil
	}
	if err := seedFigures(ctx, u, h, 50*time.Millisecond, 2000, add); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if seedOnly {
		return nil
	}
	if err := advanceFigures(ctx, u, add); err != nil {
		return fmt.Errorf("lazy head advance: %w", err)
	}
	return nil
}

// newPostgres returns a fresh Postgres store and a function that closes
// and drops it.
func newPostgres(ctx context.Context, prefix string) (*postgres.Store, func(), error) {
	dsn, drop, err := pgtest.Create(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		drop()
		return nil, nil, err
	}
	return st, func() { st.Close(); drop() }, nil
}

// distinctIDs returns k distinct record ids of u, drawn uniformly.
func distinctIDs(u *sumdbtest.Upstream, k int, seed uint64) []int64 {
	r := rand.New(rand.NewPCG(seed, 7))
	seen := make(map[int64]bool)
	var ids []int64
	for len(ids) < k {
		id := r.Int64N(u.Size())
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

func coldLookups(ctx context.Context, u *sumdbtest.Upstream, h http.Handler, delay time.Duration, clients, k int, add func(name, value, target string)) error {
	slow := &slowUpstream{h: h, delay: delay}
	upURL, stopUp, err := listen(slow)
	if err != nil {
		return err
	}
	defer stopUp()
	st, drop, err := newPostgres(ctx, "sumkeep_bench_cold")
	if err != nil {
		return err
	}
	defer drop()
	tr := newTracer()
	var ms store.Store = st
	var mu mirror.Upstream = upstream.NewClient(upURL, nil)
	if traceCold > 0 {
		ms, mu = &tracedStore{Store: st, tr: tr}, tracedUpstream{mu}
	}
	s, err := mirror.New(mirror.Config{Store: ms, Upstream: mu, Key: u.VerifierKey(), Mode: mirror.ModeLazy})
	if err != nil {
		return err
	}
	if _, err := s.Once(ctx); err != nil {
		return err
	}
	srv := server.New(server.Config{Store: ms, Log: u.Name(), Fetch: map[string]server.Fetcher{u.Name(): s}})
	if err := srv.Refresh(ctx); err != nil {
		return err
	}
	mh := srv.Handler()
	if traceCold > 0 {
		mh = tr.handler(mh)
	}
	mirrorURL, stop, err := listen(mh)
	if err != nil {
		return err
	}
	defer stop()

	// The ids drawn first are measured (the same as without a warm-up);
	// those after them warm the mirror up.
	all := distinctIDs(u, k+coldWarmup, 11)
	ids, warm := all[:k], all[k:]
	run := func(ids []int64) ([]time.Duration, error) {
		lat := make([]time.Duration, len(ids))
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr error
		var errMu sync.Mutex
		for range clients {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(ids) {
						return
					}
					p, v, _ := u.Module(ids[i])
					t0 := time.Now()
					_, err := fetch(mirrorURL + "/lookup/" + p + "@" + v)
					lat[i] = time.Since(t0)
					if err != nil {
						errMu.Lock()
						firstErr = err
						errMu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		return lat, firstErr
	}
	if len(warm) > 0 {
		if _, err := run(warm); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		tr.reset()
	}
	before := slow.requests.Load()
	start := time.Now()
	lat, err := run(ids)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	reqs := slow.requests.Load() - before
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	rt := func(d time.Duration) string {
		return fmt.Sprintf("%s (%.1f round trips)", d.Round(100*time.Microsecond), float64(d)/float64(delay))
	}
	fmt.Printf("  %d cold lookups, %d clients, upstream latency %s: %s (%.0f lookups/s), %.2f upstream requests per lookup\n",
		k, clients, delay, elapsed.Round(time.Millisecond), float64(k)/elapsed.Seconds(), float64(reqs)/float64(k))
	add(fmt.Sprintf("cold lookup p50 (%s upstream, %d in flight)", delay, clients), rt(p50), fmt.Sprintf("<= %s", 3*delay))
	add(fmt.Sprintf("cold lookup p99 (%s upstream, %d in flight)", delay, clients), rt(p99), fmt.Sprintf("<= %s", 6*delay))
	add("upstream requests per cold lookup", fmt.Sprintf("%.2f", float64(reqs)/float64(k)), "")
	if traceCold > 0 {
		fmt.Printf("  the %d slowest cold lookups (upstream connections: %d):\n", traceCold, slow.conns())
		tr.print(traceCold)
	}
	return nil
}

func seedFigures(ctx context.Context, u *sumdbtest.Upstream, h http.Handler, delay time.Duration, k int, add func(name, value, target string)) error {
	var mods []module.Version
	for _, id := range distinctIDs(u, k, 13) {
		p, v, _ := u.Module(id)
		mods = append(mods, module.Version{Path: p, Version: v})
	}
	// The upstream runs in a child process, as a real one runs on other
	// machines: its CPU is not the seed's. It holds the answers the seed
	// can ask for: /latest, every hash tile (no data tiles: lazy mode) and
	// the lookups of mods, rendered here by u.
	answers := make(map[string][]byte)
	if pre, ok := h.(*prerendered); ok {
		for path, b := range pre.tiles {
			if !strings.Contains(path, "/data/") {
				answers[path] = b
			}
		}
	}
	render := func(path string) error {
		rec := httptest.NewRecorder()
		u.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			return fmt.Errorf("rendering %s: %d", path, rec.Code)
		}
		answers[path] = rec.Body.Bytes()
		return nil
	}
	if err := render("/latest"); err != nil {
		return err
	}
	lookups := func() error {
		for _, m := range mods {
			ep, _ := module.EscapePath(m.Path)
			ev, _ := module.EscapeVersion(m.Version)
			if err := render("/lookup/" + ep + "@" + ev); err != nil {
				return err
			}
		}
		return nil
	}
	if err := lookups(); err != nil {
		return err
	}
	up, err := startUpstreamProc(answers, delay)
	if err != nil {
		return err
	}
	defer up.stop()
	var rate1 float64
	for run := 0; run < max(1, seedRuns); run++ {
		for _, h2 := range seedProtocols() {
			rate, err := seedRun(ctx, run, h2, up, u.VerifierKey(), mods, delay, "", add)
			if err != nil {
				return err
			}
			if rate1 == 0 {
				rate1 = rate
			}
		}
	}

	// The same seed from an upstream whose lookups each come with a head
	// of their own, as a caching proxy serves them: every head is linked
	// and kept, so a seed that reads every stored head to link the next
	// is quadratic in them.
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultCachedHeads})
	err = lookups()
	u.SetFault(sumdbtest.Fault{})
	if err != nil {
		return err
	}
	cup, err := startUpstreamProc(answers, delay)
	if err != nil {
		return err
	}
	defer cup.stop()
	h2 := seedProtocols()[0]
	rate, err := seedRun(ctx, 0, h2, cup, u.VerifierKey(), mods, delay, ", lookups with heads of their own", add)
	if err != nil {
		return err
	}
	add("seed with a head per lookup / seed with one head", fmt.Sprintf("%.2f", rate/rate1), "")
	return nil
}

// seedRun is one timed seed of mods into a fresh database, from the
// upstream process up, and returns its records/s. what (if not empty)
// tells the figures apart from the plain seed's.
func seedRun(ctx context.Context, run int, h2 bool, up *upstreamProc, key string, mods []module.Version, delay time.Duration, what string, add func(name, value, target string)) (float64, error) {
	upURL, upPID := up.url, up.pid
	upRequests := func() (requests, maxIn int64) {
		resp, err := http.Get(upURL + "/_bench/requests")
		if err != nil {
			return -1, -1
		}
		defer resp.Body.Close()
		fmt.Fscan(resp.Body, &requests, &maxIn)
		return requests, maxIn
	}
	k := len(mods)
	requests0, _ := upRequests()
	st, drop, err := newPostgres(ctx, "sumkeep_bench_seed")
	if err != nil {
		return 0, err
	}
	defer drop()
	commits := &countingStore{Store: st}
	concurrency := seedConcurrency
	// As `sumkeep seed` does: a connection kept for each lookup and tile
	// request in flight over HTTP/1.1; over HTTP/2, the streams of a few.
	var client *upstream.Client
	proto := "HTTP/1.1"
	if h2 {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
		client = upstream.NewClient(upURL, &http.Client{Transport: t, Timeout: time.Minute})
		proto = "HTTP/2"
	} else {
		client = upstream.NewClient(upURL, nil, upstream.WithIdleConns(2*concurrency))
	}
	s, err := mirror.New(mirror.Config{Store: commits, Upstream: client, Key: key, Mode: mirror.ModeLazy})
	if err != nil {
		return 0, err
	}
	if profile != "" {
		// One file a seed: the transports and the seed with a head per
		// lookup each have a name of their own.
		name := profile + ".seed-h1"
		if h2 {
			name = profile + ".seed-h2"
		}
		if what != "" {
			name += "-heads"
		}
		if run > 0 {
			name += "." + strconv.Itoa(run)
		}
		f, err := os.Create(name)
		if err != nil {
			return 0, err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuNow(ctx, st)
	upCPU0 := procCPU(strconv.Itoa(upPID))
	start := time.Now()
	counts, failures, err := s.Seed(ctx, mods, concurrency, nil)
	elapsed := time.Since(start)
	cpu := cpuNow(ctx, st).sub(cpu0)
	upCPU := procCPU(strconv.Itoa(upPID)) - upCPU0
	requests, maxIn := upRequests()
	requests -= requests0
	if err != nil {
		return 0, err
	}
	if len(failures) > 0 || counts.Fetched != k {
		return 0, fmt.Errorf("seed fetched %d of %d (%d failures, first: %v)", counts.Fetched, k, len(failures), failures[0].Err)
	}
	rounds := (k + concurrency - 1) / concurrency
	bound := float64(k) / (delay.Seconds() * float64(rounds))
	rate := float64(k) / elapsed.Seconds()
	proto += what
	fmt.Printf("  seed of %d module@versions (a %d-line go.sum), concurrency %d, upstream latency %s over %s: %s, %d upstream requests (at most %d in flight), %d commits, %d tile reads from the store\n",
		k, 2*k, concurrency, delay, proto, elapsed.Round(time.Millisecond), requests, maxIn, commits.commits.Load(), commits.tileReads.Load())
	fmt.Printf("  seed CPU: %s; upstream process %.2fs (not the seed's)\n", cpu, upCPU.Seconds())
	add(fmt.Sprintf("seed records/s (%s upstream, %s)", delay, proto), fmt.Sprintf("%.0f", rate), ">= 4920 (10x 492)")
	add(fmt.Sprintf("seed latency bound (records/(latency x %d rounds))", rounds), fmt.Sprintf("%.0f", bound), "reference")
	add(fmt.Sprintf("seed / latency bound, %s", proto), fmt.Sprintf("%.2f", rate/bound), ">= 0.70")
	// What the CPU alone allows, if every core were busy all the time: the
	// seed and the database share the cores (the upstream's CPU left out).
	ceiling := float64(k) / (cpu.total().Seconds() / float64(runtime.NumCPU())) / bound
	add(fmt.Sprintf("seed / latency bound, %s: ceiling from CPU alone on %d cores", proto, runtime.NumCPU()), fmt.Sprintf("%.2f", ceiling), "")
	add(fmt.Sprintf("seed CPU per record (postgres + go), %s", proto), (cpu.total() / time.Duration(k)).Round(time.Microsecond).String(), "")
	return rate, nil
}

// seedProtocols lists the transports the seed is timed over (-seed-http):
// false for HTTP/1.1, true for HTTP/2.
func seedProtocols() []bool {
	switch seedHTTP {
	case "1":
		return []bool{false}
	case "2":
		return []bool{true}
	}
	return []bool{false, true} // "both"; main checked the value
}

// countingStore counts durable commits and the store's tile reads (each
// one query, or one round trip). It embeds the Postgres store itself, not
// a store.Store, so that every optional interface the mirror looks for
// (LookupMany, RecordGrouper, ...) is there as in the product.
type countingStore struct {
	*postgres.Store
	commits   atomic.Int64
	tileReads atomic.Int64
}

func (c *countingStore) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	c.tileReads.Add(1)
	return c.Store.ReadTiles(ctx, log, tiles)
}

func (c *countingStore) ReadSomeTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	c.tileReads.Add(1)
	return c.Store.ReadSomeTiles(ctx, log, tiles)
}

func (c *countingStore) Commit(ctx context.Context, log string, b store.Batch) error {
	c.commits.Add(1)
	return c.Store.Commit(ctx, log, b)
}
