// Command bench measures sumkeep on this machine and prints the figures the
// README quotes, each beside a reference measured in the same run:
//
//   - sync throughput from a 1,000,000-record upstream on loopback, beside a
//     plain COPY of the same rows into the same schema;
//   - store size in bytes per record, indexes included;
//   - lookup throughput and p99 latency under 64 connections, beside
//     golang.org/x/mod/sumdb.Server over in-memory data;
//   - lookup throughput with Prometheus metrics on, beside the same server
//     with them off (-lookup-only measures only the lookups, after one
//     untimed sync);
//   - sync throughput with the Trillian replica on, beside the same sync
//     with it off (-trillian=false skips it, -trillian-only runs only it);
//   - cold fetch-through lookups through several upstreams (fast, slow,
//     down; with spikes) beside the fast one alone, and the share of hedged
//     requests (-upstreams=false skips it, -upstreams-only runs only it);
//   - the fetch path (-fetchpath-only runs only it): cold lookups of a lazy
//     mirror against an upstream of 20 ms latency, 8 in flight (p50, p99),
//     and a seed of 2,000 module@versions from an upstream of 50 ms latency
//     beside the latency bound.
//
// It needs the Postgres server tests use (SUMKEEP_TEST_POSTGRES), creates its
// own databases and drops them. Run it with `make bench`.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/gob"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/loadgen"
	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/metrics"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

func main() {
	records := flag.Int("records", 1_000_000, "records in the upstream log")
	conns := flag.Int("conns", 64, "concurrent connections for the lookup load")
	dur := flag.Duration("duration", 5*time.Second, "measured time of each load run")
	pairs := flag.Int("pairs", 5, "plain COPY and sync runs, alternated, for the sync ratio")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the last sync to this file")
	flag.IntVar(&batchTiles, "batch-tiles", 0, "data tiles per sync batch (0: the syncer's default)")
	flag.BoolVar(&syncOnly, "sync-only", false, "measure only the sync against the plain COPY")
	flag.BoolVar(&withTrillian, "trillian", true, "also measure the sync with the Trillian replica on beside it off (builds Trillian's binaries once per version)")
	flag.BoolVar(&trillianOnly, "trillian-only", false, "measure only the sync with the Trillian replica on beside it off")
	flag.IntVar(&trillianPairs, "trillian-pairs", 1, "sync runs with and without the replica, alternated")
	serveFile := flag.String("serve-upstream", "", "(internal) serve the pre-rendered upstream in this file, printing its URL")
	serveLatency := flag.Duration("serve-upstream-latency", 0, "(internal) with -serve-upstream: answer each request after this latency")
	flag.BoolVar(&lookupOnly, "lookup-only", false, "measure only the lookups (after one untimed sync): against sumdb.Server, and with metrics on beside off")
	flag.IntVar(&lookupPairs, "lookup-pairs", 5, "lookup runs of sumkeep, each paired with one of the reference, run right before it in even pairs and right after it in odd ones (cache on, then off)")
	flag.IntVar(&metricsPairs, "metrics-pairs", 10, "lookup runs with metrics on and off, alternated, for the metrics overhead")
	flag.BoolVar(&withUpstreams, "upstreams", true, "also measure cold lookups through several upstreams (fast, slow, down; with spikes) and the share of hedged requests")
	flag.BoolVar(&upstreamsOnly, "upstreams-only", false, "measure only the several-upstreams figures, on a log of -upstream-records records")
	flag.IntVar(&upstreamRecords, "upstream-records", 100_000, "records in the log of -upstreams-only")
	flag.IntVar(&upstreamLookups, "upstream-lookups", 300, "cold lookups in each several-upstreams run")
	flag.IntVar(&upstreamPairs, "upstream-rounds", 3, "rounds of the several-upstreams runs (alone, three, three with spikes), alternated")
	flag.BoolVar(&fetchPathOnly, "fetchpath-only", false, "measure only the fetch path: cold lookups and seed against an upstream with latency")
	flag.BoolVar(&traceUpstreams, "trace-upstreams", false, "print more percentiles of each several-upstreams run")
	flag.IntVar(&traceCold, "trace-cold", 0, "print the store and upstream calls of this many of the slowest cold lookups (fetch-path figures)")
	flag.IntVar(&coldWarmup, "cold-warmup", 16, "cold lookups of other records made, and not counted, before the measured ones: they open the store's and the upstream's connections (fetch-path figures)")
	flag.BoolVar(&fetchPathSeed, "fetchpath-seed", true, "also measure seed in the fetch-path figures")
	flag.BoolVar(&seedOnly, "seed-only", false, "with -fetchpath-only: measure the seed alone, not the cold lookups")
	flag.IntVar(&seedRuns, "seed-runs", 1, "seeds timed one after another, each into a fresh database, in the fetch-path figures (-cpuprofile: one profile each, .seed-h1, .seed-h2, .seed-h2.1, ..., and .seed-h1-heads or .seed-h2-heads for the seed with a head per lookup)")
	flag.BoolVar(&withFetch, "fetchpath", true, "also measure the fetch path (cold lookups and seed) after the lookups")
	flag.StringVar(&seedHTTP, "seed-http", "both", "the seed's transport to its upstream in the fetch-path figures: 1 (HTTP/1.1, a connection a request in flight), 2 (HTTP/2 from the start, as over TLS), or both, one after the other")
	flag.IntVar(&seedConcurrency, "seed-concurrency", mirror.DefaultSeedConcurrency, "seed's concurrency in the fetch-path figures")
	flag.Parse()
	if seedHTTP != "1" && seedHTTP != "2" && seedHTTP != "both" {
		fmt.Fprintf(os.Stderr, "bench: -seed-http %q: want 1, 2 or both\n", seedHTTP)
		os.Exit(2)
	}
	if *serveFile != "" {
		if err := serveUpstream(*serveFile, *serveLatency); err != nil {
			fmt.Fprintln(os.Stderr, "bench: upstream:", err)
			os.Exit(1)
		}
		return
	}
	profile = *cpuprofile
	if upstreamsOnly {
		if err := runUpstreams(context.Background(), upstreamRecords); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), *records, *conns, *pairs, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var (
	profile    string
	batchTiles int
	syncOnly   bool

	withTrillian, trillianOnly bool
	fetchPathOnly              bool
	traceCold, coldWarmup      int
	traceUpstreams             bool
	fetchPathSeed, seedOnly    bool
	withFetch                  bool
	seedRuns                   int
	seedConcurrency            int
	seedHTTP                   string
	trillianPairs              int

	lookupOnly                       bool
	metricsPairs, lookupPairs        int
	withUpstreams, upstreamsOnly     bool
	upstreamRecords, upstreamLookups int
	upstreamPairs                    int
)

type row struct{ name, value, target string }

func run(ctx context.Context, n, conns, pairs int, dur time.Duration) error {
	var rows []row
	add := func(name, value, target string) {
		rows = append(rows, row{name, value, target})
		fmt.Printf("  %-44s %s\n", name, value)
	}

	fmt.Printf("building a %d-record upstream...\n", n)
	u, err := sumdbtest.NewSynthetic("sumdb.bench", n)
	if err != nil {
		return err
	}
	// A real upstream runs on other machines and serves tiles from a cache;
	// here it shares our two cores, so its tiles are rendered once before
	// timing, and served by a process of its own: its CPU is not billed
	// to sumkeep (it is printed beside), and its memory does not change
	// how this process's garbage collector paces the syncer's.
	fmt.Println("pre-rendering upstream tiles...")
	up, err := startUpstream(u)
	if err != nil {
		return err
	}
	defer up.stop()
	url := up.url
	if fetchPathOnly {
		if err := fetchPathFigures(ctx, u, prerender(u), add); err != nil {
			return err
		}
		printRows(rows)
		return nil
	}
	if trillianOnly {
		if err := replicaFigures(ctx, u, url, trillianPairs, add); err != nil {
			return err
		}
		printRows(rows)
		return nil
	}

	// Sync against a plain COPY of the same rows into the same schema,
	// alternated pairs times back to back: the machine's speed drifts by
	// a third within minutes, so each pair gives a ratio and the median
	// ratio is the figure. The last sync's store is measured further.
	var st *postgres.Store
	var copyRates, syncRates, ratios, ceilings []float64
	var syncCPUs, copyCPUs []cpuUse
	var upCPUs []time.Duration
	if lookupOnly {
		// The lookups need a store: one sync, not timed against a COPY.
		var drop func()
		st, _, _, drop, err = timedSync(ctx, u, url, true)
		if err != nil {
			return err
		}
		defer drop()
		defer st.Close()
		pairs = 0
		withTrillian = false
	}
	dropSynced := func() {}
	defer func() { dropSynced() }()
	for i := 0; i < pairs; i++ {
		// Each run starts from a buffer pool without the runs before it:
		// the sync before is dropped (its store closed first), as the
		// plain COPY's database is before the sync. Kept, its dirty pages
		// filled the shared buffers, and the next plain COPY, evicting
		// them, wrote them out in its own backend: CPU billed to the
		// reference for the sync's writes.
		if st != nil {
			st.Close()
			dropSynced()
			st, dropSynced = nil, func() {}
		}
		copyRate, copyCPU, err := plainCopy(ctx, u)
		if err != nil {
			return fmt.Errorf("plain COPY: %w", err)
		}
		var syncRate float64
		var syncCPU cpuUse
		var drop func()
		upCPU0 := procCPU(strconv.Itoa(up.pid))
		st, syncRate, syncCPU, drop, err = timedSync(ctx, u, url, i == pairs-1)
		upCPUs = append(upCPUs, procCPU(strconv.Itoa(up.pid))-upCPU0)
		if err != nil {
			return err
		}
		dropSynced = drop
		defer func(st *postgres.Store) { st.Close() }(st)
		copyRates, syncRates = append(copyRates, copyRate), append(syncRates, syncRate)
		ratios = append(ratios, syncRate/copyRate)
		syncCPUs, copyCPUs = append(syncCPUs, syncCPU), append(copyCPUs, copyCPU)
		// However well it overlaps its work, the sync cannot finish
		// before its CPU time spread over all cores has passed.
		ceiling := float64(n) / (syncCPU.total().Seconds() / float64(runtime.NumCPU())) / copyRate
		ceilings = append(ceilings, ceiling)
		fmt.Printf("  pair %d: sync %.0f records/s, plain COPY %.0f records/s, ratio %.2f; CPU: sync %s, COPY %s, upstream process %.2fs (not sumkeep's); ratio ceiling from CPU on %d cores %.2f\n",
			i+1, syncRate, copyRate, syncRate/copyRate, syncCPU, copyCPU, upCPUs[i].Seconds(), runtime.NumCPU(), ceiling)
	}
	if pairs > 0 {
		add("sync throughput (records/s, median)", fmt.Sprintf("%.0f", median(syncRates)), ">= 90000")
		add("plain COPY, same rows and schema (records/s, median)", fmt.Sprintf("%.0f", median(copyRates)), "reference")
		add("sync / plain COPY (median of pairs)", fmt.Sprintf("%.2f (pairs: %s)", median(ratios), list(ratios)), ">= 0.80")
		add("CPU per 1,000,000 records: sync / plain COPY (median)", fmt.Sprintf("%s / %s", medianCPU(syncCPUs, n), medianCPU(copyCPUs, n)), "")
		add(fmt.Sprintf("sync / plain COPY ceiling from CPU alone on %d cores (median)", runtime.NumCPU()), fmt.Sprintf("%.2f", median(ceilings)), "")
	}
	if withTrillian {
		if err := replicaFigures(ctx, u, url, trillianPairs, add); err != nil {
			return err
		}
	}
	if syncOnly {
		return nil
	}

	var bytes int64
	if err := st.Pool().QueryRow(ctx, `SELECT sum(pg_total_relation_size(c))::bigint FROM unnest(ARRAY['logs','heads','tiles','records','evidence']) AS c`).Scan(&bytes); err != nil {
		return err
	}
	add("store size (bytes/record, indexes included)", fmt.Sprintf("%.0f", float64(bytes)/float64(n)), "<= 250")

	// Serving is measured in steady state: after a bulk load autovacuum
	// vacuums and analyzes the table, and would otherwise do so on these
	// two cores in the middle of the lookup runs.
	vstart := time.Now()
	if _, err := st.Pool().Exec(ctx, `VACUUM (ANALYZE) records`); err != nil {
		return err
	}
	add("post-load VACUUM (ANALYZE) of records", time.Since(vstart).Round(time.Millisecond).String(), "")
	// And the pages the load and the vacuum dirtied are written now, not
	// by the checkpointer during the first lookup runs.
	if _, err := st.Pool().Exec(ctx, `CHECKPOINT`); err != nil {
		return err
	}

	// Lookup load: sumkeep against sumdb.Server over in-memory data, with
	// module popularity skewed as in real build traffic (Zipf, s=1.1), and
	// once more with sumkeep's record cache off so every lookup reaches
	// Postgres.
	gin.SetMode(gin.ReleaseMode)
	// Steady state: before timing, each server answers 200,000 earlier
	// lookups drawn from the same distribution (another seed), as a mirror
	// that has been serving a while has; the timed lookups are a fresh
	// sample, so only modules popular enough to recur are cached.
	earlier := lookupPaths(u, 200_000, 3)
	paths := lookupPaths(u, 200_000, 1)
	urlsFor := func(base string) []string {
		us := make([]string, len(paths))
		for i, p := range paths {
			us[i] = base + p
		}
		return us
	}
	warm := func(base string) {
		us := make([]string, len(earlier))
		for i, p := range earlier {
			us[i] = base + p
		}
		loadgen.Run(ctx, us, conns, 0, time.Minute, len(us))
	}
	refURL, stopRef, err := listen(sumdb.NewServer(&memOps{u: u, signed: u.SignedHead()}))
	if err != nil {
		return err
	}
	defer stopRef()
	// measure times lookups against a server made from cfg, after
	// warmup (not timed), and returns the CPU time they took (this
	// process's, which holds the load generator too, and the database's).
	measure := func(cfg server.Config, warmup time.Duration, before func() error) (loadgen.Result, cpuUse, error) {
		mirror := server.New(cfg)
		if err := mirror.Refresh(ctx); err != nil {
			return loadgen.Result{}, cpuUse{}, err
		}
		mirrorURL, stop, err := listen(mirror.Handler())
		if err != nil {
			return loadgen.Result{}, cpuUse{}, err
		}
		defer stop()
		if err := check(urlsFor(mirrorURL)[:100], urlsFor(refURL)[:100]); err != nil {
			return loadgen.Result{}, cpuUse{}, err
		}
		warm(mirrorURL)
		if cfg.Metrics != nil {
			// Scraped every second meanwhile, more often than Prometheus
			// is usually told to.
			sctx, stopScrapes := context.WithCancel(ctx)
			defer stopScrapes()
			go scrapeEvery(sctx, mirrorURL+"/metrics", time.Second)
		}
		if before != nil {
			if err := before(); err != nil {
				return loadgen.Result{}, cpuUse{}, err
			}
		}
		cpu0 := cpuNow(ctx, st)
		r := loadgen.Run(ctx, urlsFor(mirrorURL), conns, warmup, dur, 10_000_000)
		cpu := cpuNow(ctx, st).sub(cpu0)
		if r.Errors > 0 {
			return r, cpu, fmt.Errorf("mirror lookup errors: %v", r.FirstErr)
		}
		return r, cpu, nil
	}
	fmt.Printf("lookup load: %d connections, %s each after a 1s warm-up, %d pairs...\n", conns, dur, lookupPairs)
	warm(refURL)
	// Each sumkeep run is timed right after a run of the reference (the
	// pair's ratio); the machine's speed drifts within minutes, so each
	// figure is the median of the pairs' ratios, and the runs shown are
	// those of the median pair.
	var ref loadgen.Result
	var refCPU time.Duration
	timeRef := func() error {
		cpu0 := procCPU("self")
		ref = loadgen.Run(ctx, urlsFor(refURL), conns, time.Second, dur, 10_000_000)
		refCPU = procCPU("self") - cpu0
		if ref.Errors > 0 {
			return fmt.Errorf("reference lookup errors: %v", ref.FirstErr)
		}
		return nil
	}
	type pair struct{ ref, mir loadgen.Result }
	// Each pair also prints the CPU time a lookup took, load generator
	// included (the 1s warm-up's too, of requests not counted): this
	// process's for the reference, this process's and the database's
	// backends' for sumkeep. On a shared machine their ratio is steadier
	// than the throughputs'.
	perLookup := func(d time.Duration, r loadgen.Result) float64 {
		return float64(d.Microseconds()) / float64(max(1, r.Requests-r.Errors))
	}
	var cpuRatios []float64
	paired := func(cfg server.Config) ([]float64, pair, error) {
		var ratios []float64
		var ps []pair
		cpuRatios = cpuRatios[:0]
		for i := range lookupPairs {
			// The reference runs right before sumkeep in even pairs and
			// right after it in odd ones: whatever drifts within a pair
			// favours neither.
			before := timeRef
			if i%2 == 1 {
				before = nil
			}
			r, cpu, err := measure(cfg, time.Second, before)
			if err == nil && before == nil {
				err = timeRef()
			}
			if err != nil {
				return nil, pair{}, err
			}
			ratios = append(ratios, r.RPS()/ref.RPS())
			ps = append(ps, pair{ref, r})
			refUs, mirUs := perLookup(refCPU, ref), perLookup(cpu.total(), r)
			cpuRatios = append(cpuRatios, mirUs/refUs)
			fmt.Printf("  pair %d: reference %.0f req/s, %.1fµs CPU a lookup; sumkeep %.0f req/s, %.1fµs CPU a lookup (go %.1f + postgres %.1f); throughput ratio %.2f, CPU ratio %.2f\n",
				i+1, ref.RPS(), refUs, r.RPS(), mirUs, perLookup(cpu.self, r), perLookup(cpu.pg, r), r.RPS()/ref.RPS(), mirUs/refUs)
		}
		sorted := slices.Clone(ratios)
		slices.Sort(sorted)
		med := sorted[len(sorted)/2]
		for _, p := range ps {
			if p.mir.RPS()/p.ref.RPS() == med {
				return ratios, p, nil
			}
		}
		return ratios, ps[0], nil
	}
	if profile != "" {
		f, err := os.Create(profile + ".lookup")
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
	}
	hotRatios, hot, err := paired(server.Config{Store: st, Log: u.Name()})
	hotCPU := slices.Clone(cpuRatios)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	coldRatios, coldPair, err := paired(server.Config{Store: st, Log: u.Name(), CacheRecords: -1})
	if err != nil {
		return err
	}
	coldCPU := slices.Clone(cpuRatios)
	ref, mir, cold := hot.ref, hot.mir, coldPair.mir
	// The request log, on by default in serve: one slog text line per
	// request, written to a file as serve writes to its standard error.
	logf, err := os.CreateTemp("", "sumkeep-bench-requests-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	logged, _, err := measure(server.Config{Store: st, Log: u.Name(), RequestLog: true, Logger: slog.New(slog.NewTextHandler(logf, nil))}, time.Second, nil)
	if err != nil {
		return err
	}
	add("lookups, sumdb.Server in memory (median pair)", ref.String(), "reference")
	add("lookups, sumkeep (median pair)", mir.String(), "")
	add("lookup throughput / reference (median of pairs)", fmt.Sprintf("%.2f (pairs: %s)", median(hotRatios), list(hotRatios)), ">= 1.0")
	add("CPU per lookup, sumkeep / reference (median of pairs)", fmt.Sprintf("%.2f (pairs: %s)", median(hotCPU), list(hotCPU)), "")
	add("lookup p99, sumkeep / reference", fmt.Sprintf("%s / %s = %.2f", mir.P99.Round(time.Microsecond), ref.P99.Round(time.Microsecond),
		float64(mir.P99)/float64(ref.P99)), "<= 1.5")
	add("lookups, sumkeep, request log on (to a file)", logged.String(), "")
	add("request log on / off throughput", fmt.Sprintf("%.2f", logged.RPS()/mir.RPS()), "")
	add("lookups, sumkeep, cache off (all Postgres)", cold.String(), "")
	add("cache-off throughput / reference (median of pairs)", fmt.Sprintf("%.2f (pairs: %s)", median(coldRatios), list(coldRatios)), ">= 0.6")
	add("cache-off CPU per lookup, sumkeep / reference (median of pairs)", fmt.Sprintf("%.2f (pairs: %s)", median(coldCPU), list(coldCPU)), "")
	if withUpstreams {
		if err := upstreamsFigures(ctx, u, upstreamLookups, add); err != nil {
			return err
		}
	}

	// Metrics on beside off, alternated (the order flips each pair): the
	// machine's speed drifts, so each pair gives a ratio and the median is
	// the figure. Throughput moves with whatever else the machine runs;
	// the CPU time a lookup costs (this process's, load generator
	// included, and the database's) much less, so both are shown. The
	// servers were warmed (warm) before: nothing is timed as warm-up, so
	// the CPU time is that of the lookups counted.
	var onOff, cpuOnOff []float64
	for i := range metricsPairs {
		reg := metrics.NewRegistry()
		hm, err := metrics.NewHTTP(reg)
		if err != nil {
			return err
		}
		if _, err := metrics.New(reg, metrics.Config{Store: st}); err != nil {
			return err
		}
		on := server.Config{Store: st, Log: u.Name(), Observer: hm, Metrics: metrics.Handler(reg)}
		off := server.Config{Store: st, Log: u.Name()}
		var ron, roff loadgen.Result
		var con, coff cpuUse
		for j := range 2 {
			if (i+j)%2 == 0 {
				roff, coff, err = measure(off, 0, nil)
			} else {
				ron, con, err = measure(on, 0, nil)
			}
			if err != nil {
				return err
			}
		}
		perOn := con.total().Seconds() / float64(ron.Requests)
		perOff := coff.total().Seconds() / float64(roff.Requests)
		onOff = append(onOff, ron.RPS()/roff.RPS())
		cpuOnOff = append(cpuOnOff, perOn/perOff)
		fmt.Printf("  metrics pair %d: on %.0f req/s, %.1fµs CPU a lookup; off %.0f req/s, %.1fµs CPU a lookup; throughput ratio %.3f, CPU ratio %.3f\n",
			i+1, ron.RPS(), perOn*1e6, roff.RPS(), perOff*1e6, ron.RPS()/roff.RPS(), perOn/perOff)
	}
	if len(onOff) > 0 {
		add("lookup throughput, metrics on / off (median of pairs)", fmt.Sprintf("%.3f (pairs: %s)", median(onOff), listPrec(onOff, 3)), ">= 0.97")
		add("CPU per lookup, metrics on / off (median of pairs)", fmt.Sprintf("%.3f (pairs: %s)", median(cpuOnOff), listPrec(cpuOnOff, 3)), "<= 1.03")
	}

	if withFetch {
		if err := fetchPathFigures(ctx, u, prerender(u), add); err != nil {
			return err
		}
	}
	printRows(rows)
	return nil
}

func printRows(rows []row) {
	fmt.Printf("\n| figure | value | target |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.value, r.target)
	}
}

// timedSync syncs the upstream into a fresh database and returns the store,
// the records per second, and a function that drops the database.
func timedSync(ctx context.Context, u *sumdbtest.Upstream, url string, last bool) (*postgres.Store, float64, cpuUse, func(), error) {
	dsn, drop, err := pgtest.Create(ctx, "sumkeep_bench")
	if err != nil {
		return nil, 0, cpuUse{}, nil, err
	}
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		drop()
		return nil, 0, cpuUse{}, nil, err
	}
	fail := func(err error) (*postgres.Store, float64, cpuUse, func(), error) {
		st.Close()
		drop()
		return nil, 0, cpuUse{}, nil, err
	}
	// As `sumkeep sync` does with a database on this machine: one core
	// fewer for this process (which also holds the upstream) while it
	// syncs.
	if st.OnThisMachine() {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)-1)))
	}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(),
		BatchTiles: batchTiles, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), ProgressEvery: 3 * time.Second})
	if err != nil {
		return fail(err)
	}
	if err := checkpoint(ctx, st); err != nil {
		return fail(err)
	}
	fmt.Println("syncing...")
	if profile != "" && last {
		f, err := os.Create(profile)
		if err != nil {
			return fail(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuNow(ctx, st)
	start := time.Now()
	res, err := s.Once(ctx)
	if err != nil {
		return fail(err)
	}
	rate := float64(res.Records) / time.Since(start).Seconds()
	return st, rate, cpuNow(ctx, st).sub(cpu0), drop, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func list(xs []float64) string { return listPrec(xs, 2) }

func listPrec(xs []float64, prec int) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', prec, 64))
	}
	return strings.Join(parts, ", ")
}

// plainCopy COPYs the upstream's records, encoded as the store encodes them,
// into a fresh database with sumkeep's schema, in one transaction.
// checkpoint makes the server write out its dirty pages and start a new
// checkpoint cycle before a timed sync or plain COPY: each writes about a
// quarter of the default max_wal_size (1 GB) of WAL, so a checkpoint the
// WAL forces fell on every fourth run or so, sync or COPY as it happened,
// and moved that run's rate by a fifth or more. After a CHECKPOINT none
// falls within a run (unless checkpoint_timeout ends first).
func checkpoint(ctx context.Context, st *postgres.Store) error {
	if _, err := st.Pool().Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("checkpoint before a timed run: %w", err)
	}
	return nil
}

func plainCopy(ctx context.Context, u *sumdbtest.Upstream) (float64, cpuUse, error) {
	dsn, drop, err := pgtest.Create(ctx, "sumkeep_bench_copy")
	if err != nil {
		return 0, cpuUse{}, err
	}
	defer drop()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		return 0, cpuUse{}, err
	}
	defer st.Close()
	var logID int16
	if err := st.Pool().QueryRow(ctx, `INSERT INTO logs (name) VALUES ('copy') RETURNING id`).Scan(&logID); err != nil {
		return 0, cpuUse{}, err
	}
	n := u.Size()
	recs := make([]store.Record, n)
	for i := range recs {
		d := u.Record(int64(i))
		p, v := store.RecordModule(d)
		recs[i] = store.Record{ID: int64(i), Path: p, Version: v, Data: d}
	}
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		return 0, cpuUse{}, err
	}
	defer conn.Release()
	if err := checkpoint(ctx, st); err != nil {
		return 0, cpuUse{}, err
	}
	fmt.Println("plain COPY...")
	cpu0 := cpuNow(ctx, st)
	start := time.Now()
	// Encoded as the store encodes records (inside the stream), without
	// any of its checks.
	if _, err := conn.Conn().PgConn().CopyFrom(ctx, postgres.RecordCopy(logID, recs), postgres.CopyRecordsSQL); err != nil {
		return 0, cpuUse{}, err
	}
	rate := float64(n) / time.Since(start).Seconds()
	return rate, cpuNow(ctx, st).sub(cpu0), nil
}

// cpuUse is CPU time (user and system) spent by a store's Postgres
// backends and by this process, which holds the upstream and the load
// generators too. Both are read from /proc: zero where there is none, or
// where Postgres runs elsewhere. Kernel work for loopback traffic is counted
// to whichever process the kernel did it in, so the split is approximate;
// the total is not.
// cpuUse is the CPU time of the database's backends and of this process,
// and the WAL the server wrote (its insert position: the whole server's,
// other databases' writes included).
type cpuUse struct {
	pg, self             time.Duration
	wal                  int64
	pgFaults, selfFaults int64
}

func (c cpuUse) sub(d cpuUse) cpuUse {
	return cpuUse{c.pg - d.pg, c.self - d.self, c.wal - d.wal, c.pgFaults - d.pgFaults, c.selfFaults - d.selfFaults}
}
func (c cpuUse) total() time.Duration { return c.pg + c.self }
func (c cpuUse) scale(f float64) cpuUse {
	return cpuUse{time.Duration(float64(c.pg) * f), time.Duration(float64(c.self) * f), int64(float64(c.wal) * f),
		int64(float64(c.pgFaults) * f), int64(float64(c.selfFaults) * f)}
}
func (c cpuUse) String() string {
	return fmt.Sprintf("%.2fs (postgres %.2fs + go %.2fs; WAL %.0f MB; page faults postgres %d, go %d)", c.total().Seconds(), c.pg.Seconds(), c.self.Seconds(), float64(c.wal)/1e6, c.pgFaults, c.selfFaults)
}

// medianCPU is the use of median total, scaled to 1,000,000 records.
func medianCPU(cs []cpuUse, n int) cpuUse {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b cpuUse) int { return cmp.Compare(a.total(), b.total()) })
	return cs[len(cs)/2].scale(1e6 / float64(n))
}

// cpuNow reads the CPU time of st's database's backends (those connected
// now: read it before closing st) and of this process.
func cpuNow(ctx context.Context, st *postgres.Store) cpuUse {
	c := cpuUse{}
	c.self, c.selfFaults = procStat("self")
	st.Pool().QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint`).Scan(&c.wal)
	rows, err := st.Pool().Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return c
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			cpu, faults := procStat(strconv.Itoa(pid))
			c.pg += cpu
			c.pgFaults += faults
		}
	}
	return c
}

// procCPU returns the user and system time of /proc/<pid>, or 0.
func procCPU(pid string) time.Duration {
	cpu, _ := procStat(pid)
	return cpu
}

// procStat returns the user and system time of /proc/<pid> and the minor
// page faults it took, or zeros. On some virtual machines a minor fault
// costs about 11 µs (a process touching 128 MiB of shared memory that
// another had filled took 32,768 faults and 0.36 s), so the faults a run's
// backends take account for CPU time that no profile of their code shows:
// a backend takes one for each page of shared buffers it touches first.
func procStat(pid string) (time.Duration, int64) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces and parentheses): minflt is the 8th, utime and stime are the
	// 12th and 13th, in clock ticks.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0
	}
	minflt, _ := strconv.ParseInt(f[7], 10, 64)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, minflt // USER_HZ
}

func listen(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// lookupPaths returns k /lookup paths drawn (with seed) with Zipf-distributed
// popularity over the whole log (a few modules asked for very often, a long
// tail asked for rarely), in a fixed pseudo-random order.
func lookupPaths(u *sumdbtest.Upstream, k int, seed uint64) []string {
	n := u.Size()
	// Popularity rank -> record id: a fixed random permutation (the same for
	// every sample), so popular modules are spread over the log.
	perm := rand.New(rand.NewPCG(1, 2)).Perm(int(n))
	r := rand.New(rand.NewPCG(seed, 2))
	z := zipf(r, 1.1, int(n))
	ps := make([]string, k)
	for i := range ps {
		p, v := store.RecordModule(u.Record(int64(perm[z()])))
		ep, _ := module.EscapePath(p)
		ev, _ := module.EscapeVersion(v)
		ps[i] = "/lookup/" + ep + "@" + ev
	}
	return ps
}

// zipf returns a sampler of ranks in [0, n) with P(rank) proportional to
// 1/(rank+1)^s, by inverting the cumulative distribution.
func zipf(r *rand.Rand, s float64, n int) func() int {
	cdf := make([]float64, n)
	sum := 0.0
	for i := range cdf {
		sum += 1 / math.Pow(float64(i+1), s)
		cdf[i] = sum
	}
	return func() int {
		x := r.Float64() * sum
		lo, hi := 0, n-1
		for lo < hi {
			mid := (lo + hi) / 2
			if cdf[mid] < x {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo
	}
}

// check makes sure both servers give the same answers before timing them.
func check(mirror, ref []string) error {
	for i := range mirror {
		a, err1 := fetch(mirror[i])
		b, err2 := fetch(ref[i])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("checking answers: %v / %v", err1, err2)
		}
		if a != b {
			return fmt.Errorf("mirror and reference answer %s differently", mirror[i])
		}
	}
	return nil
}

func fetch(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

// memOps is sumdb.ServerOps over the upstream's in-memory log with a
// pre-signed head: the fastest reference x/mod's server allows.
type memOps struct {
	u      *sumdbtest.Upstream
	signed []byte
}

func (o *memOps) Signed(context.Context) ([]byte, error) { return o.signed, nil }

func (o *memOps) ReadRecords(_ context.Context, id, n int64) ([][]byte, error) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = o.u.Record(id + int64(i))
	}
	return out, nil
}

func (o *memOps) Lookup(_ context.Context, m module.Version) (int64, error) {
	id, ok := o.u.Lookup(m.Path, m.Version)
	if !ok {
		return 0, os.ErrNotExist
	}
	return id, nil
}

func (o *memOps) ReadTileData(_ context.Context, t tlog.Tile) ([]byte, error) {
	return tlog.ReadTileData(t, o.u.HashReader())
}

// prerendered serves tiles rendered once by the wrapped upstream, as a
// CDN-fronted checksum database does.
type prerendered struct {
	h     http.Handler
	tiles map[string][]byte
}

func (p *prerendered) fill(n int64) {
	p.tiles = make(map[string][]byte)
	var ts []tlog.Tile
	for k := int64(0); k*256 < n; k++ {
		w := int(min(256, n-k*256))
		ts = append(ts, tlog.Tile{H: 8, L: -1, N: k, W: w}, tlog.Tile{H: 8, L: 0, N: k, W: w})
	}
	for _, t := range tlog.NewTiles(8, 0, n) {
		if t.L > 0 {
			ts = append(ts, t)
		}
	}
	for _, t := range ts {
		rec := httptest.NewRecorder()
		p.h.ServeHTTP(rec, httptest.NewRequest("GET", "/"+t.Path(), nil))
		if rec.Code == http.StatusOK {
			p.tiles["/"+t.Path()] = rec.Body.Bytes()
		}
	}
}

func (p *prerendered) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := p.tiles[r.URL.Path]
	if !ok {
		b, ok = p.prefix(r.URL.Path)
	}
	if ok {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
		return
	}
	p.h.ServeHTTP(w, r)
}

// prefix answers a partial hash tile (a tile of an older tree) from a wider
// one rendered, as a checksum database answers it: tiles are prefix-stable.
func (p *prerendered) prefix(path string) ([]byte, bool) {
	t, err := tlog.ParseTilePath(strings.TrimPrefix(path, "/"))
	if err != nil || t.L < 0 {
		return nil, false
	}
	for w := t.W + 1; w <= 1<<t.H; w++ {
		wide := t
		wide.W = w
		if b, ok := p.tiles["/"+wide.Path()]; ok {
			return b[:t.W*tlog.HashSize], true
		}
	}
	return nil, false
}

// upstreamProc is the pre-rendered upstream served by a child process (this
// program run with -serve-upstream).
type upstreamProc struct {
	url  string
	pid  int
	stop func()
}

// startUpstream renders u's tiles and /latest, writes them to a file, and
// starts a child process serving them.
// prerender returns u's handler with every tile of its tree rendered.
func prerender(u *sumdbtest.Upstream) *prerendered {
	cached := &prerendered{h: u.Handler()}
	cached.fill(u.Size())
	return cached
}

func startUpstream(u *sumdbtest.Upstream) (*upstreamProc, error) {
	cached := prerender(u)
	cached.tiles["/latest"] = u.SignedHead()
	return startUpstreamProc(cached.tiles, 0)
}

// startUpstreamProc starts a child process serving answers (path -> body;
// any other path is 404), each after latency. Its /_bench/requests
// answers, at once, "<requests> <most in flight>" so far.
func startUpstreamProc(answers map[string][]byte, latency time.Duration) (*upstreamProc, error) {
	f, err := os.CreateTemp("", "sumkeep-bench-upstream")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	err = gob.NewEncoder(f).Encode(answers)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing the upstream's tiles: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-upstream", f.Name(), "-serve-upstream-latency", latency.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return nil, fmt.Errorf("starting the upstream process: %w", err)
	}
	return &upstreamProc{url: strings.TrimSpace(line), pid: cmd.Process.Pid, stop: stop}, nil
}

// serveUpstream serves the responses in file (path -> body, gob) until
// killed, each after latency, printing its URL first.
func serveUpstream(file string, latency time.Duration) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	p := &prerendered{h: http.NotFoundHandler()}
	err = gob.NewDecoder(f).Decode(&p.tiles)
	f.Close()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("http://" + ln.Addr().String())
	if latency <= 0 {
		return http.Serve(ln, p)
	}
	slow := &slowUpstream{h: p, delay: latency}
	mux := http.NewServeMux()
	mux.Handle("/", slow)
	mux.HandleFunc("/_bench/requests", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %d", slow.requests.Load(), slow.maxIn.Load())
	})
	// HTTP/1.1, and HTTP/2 to a client that speaks it from the start (as
	// an upstream over TLS speaks it once ALPN has chosen it).
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv.Serve(ln)
}

// scrapeEvery GETs url every interval until ctx ends, as Prometheus would.
func scrapeEvery(ctx context.Context, url string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
