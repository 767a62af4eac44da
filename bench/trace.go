package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
)

// Tracing the fetch path (-trace-cold): every lookup sent to the mirror
// carries a trace in its context, and the store and the upstream the
// mirror reads note in it each call they answer (what, when, how long).
// The slowest lookups' traces are printed, so that a tail shows where its
// time went: the upstream, the store, or waiting in between.

// span is one call noted in a trace.
type span struct {
	what       string
	start, end time.Duration // since the trace began
}

// lookupTrace is one lookup's calls.
type lookupTrace struct {
	name  string
	begin time.Time
	total time.Duration
	mu    sync.Mutex
	spans []span
}

type traceKey struct{}

func (t *lookupTrace) note(what string, start time.Time) {
	if t == nil {
		return
	}
	now := time.Now()
	t.mu.Lock()
	t.spans = append(t.spans, span{what, start.Sub(t.begin), now.Sub(t.begin)})
	t.mu.Unlock()
}

func traceFrom(ctx context.Context) *lookupTrace {
	t, _ := ctx.Value(traceKey{}).(*lookupTrace)
	return t
}

// tracer holds every lookup's trace and the commits, which run on behalf
// of several lookups at once.
type tracer struct {
	mu      sync.Mutex
	traces  []*lookupTrace
	origin  time.Time
	commits []span // since origin
}

func newTracer() *tracer { return &tracer{origin: time.Now()} }

// handler wraps h: each request gets a trace.
func (tr *tracer) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := &lookupTrace{name: r.URL.Path, begin: time.Now()}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), traceKey{}, t)))
		t.total = time.Since(t.begin)
		tr.mu.Lock()
		tr.traces = append(tr.traces, t)
		tr.mu.Unlock()
	})
}

// reset forgets what was traced so far.
func (tr *tracer) reset() {
	tr.mu.Lock()
	tr.traces, tr.commits, tr.origin = nil, nil, time.Now()
	tr.mu.Unlock()
}

// print prints the n slowest traces, with the commits that ran meanwhile.
func (tr *tracer) print(n int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ts := slices.Clone(tr.traces)
	slices.SortFunc(ts, func(a, b *lookupTrace) int { return int(b.total - a.total) })
	// Per lookup: store calls and upstream requests (how many, and how
	// long they took, overlapping ones counted once), and the rest.
	var calls, reqs int
	var inStore, inUp, total time.Duration
	for _, t := range ts {
		t.mu.Lock()
		var st, up []span
		for _, s := range t.spans {
			if strings.HasPrefix(s.what, "store ") {
				st = append(st, s)
			} else {
				up = append(up, s)
			}
		}
		t.mu.Unlock()
		calls, reqs = calls+len(st), reqs+len(up)
		inStore, inUp, total = inStore+covered(st), inUp+covered(up), total+t.total
	}
	if n := len(ts); n > 0 {
		fmt.Printf("  per lookup (mean of %d): %.1f store calls taking %s, %.1f upstream requests taking %s, %s in neither (commits, waits, CPU), %s in all\n",
			n, float64(calls)/float64(n), ms(inStore/time.Duration(n)), float64(reqs)/float64(n), ms(inUp/time.Duration(n)),
			ms((total-inStore-inUp)/time.Duration(n)), ms(total/time.Duration(n)))
	}
	for _, t := range ts[:min(n, len(ts))] {
		at := t.begin.Sub(tr.origin)
		fmt.Printf("  %s at %s: %s\n", t.name, ms(at), ms(t.total))
		t.mu.Lock()
		for _, s := range t.spans {
			fmt.Printf("    %8s .. %8s  %s\n", ms(s.start), ms(s.end), s.what)
		}
		t.mu.Unlock()
		for _, c := range tr.commits {
			if c.end > at && c.start < at+t.total {
				fmt.Printf("    %8s .. %8s  (%s, any lookup's)\n", ms(c.start-at), ms(c.end-at), c.what)
			}
		}
	}
}

// tracedStore notes the store calls of the fetch path.
type tracedStore struct {
	store.Store
	tr *tracer
}

func (s *tracedStore) ServedHead(ctx context.Context, log string) (store.Head, error) {
	defer traceFrom(ctx).note("store ServedHead", time.Now())
	return s.Store.ServedHead(ctx, log)
}

func (s *tracedStore) Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error) {
	defer traceFrom(ctx).note("store Lookup", time.Now())
	return s.Store.Lookup(ctx, log, path, version, maxID)
}

func (s *tracedStore) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	start := time.Now()
	d, err := s.Store.ReadTiles(ctx, log, tiles)
	traceFrom(ctx).note(fmt.Sprintf("store ReadTiles %d (%v)", len(tiles), err), start)
	return d, err
}

func (s *tracedStore) Heads(ctx context.Context, log string) ([]store.Head, error) {
	defer traceFrom(ctx).note("store Heads", time.Now())
	return s.Store.Heads(ctx, log)
}

func (s *tracedStore) HeadsAround(ctx context.Context, log string, size int64) (store.Around, error) {
	defer traceFrom(ctx).note("store HeadsAround", time.Now())
	return s.Store.HeadsAround(ctx, log, size)
}

func (s *tracedStore) HeadsAroundMany(ctx context.Context, log string, sizes []int64) ([]store.Around, error) {
	defer traceFrom(ctx).note("store HeadsAroundMany", time.Now())
	return s.Store.HeadsAroundMany(ctx, log, sizes)
}

func (s *tracedStore) LatestHead(ctx context.Context, log string) (store.Head, error) {
	defer traceFrom(ctx).note("store LatestHead", time.Now())
	return s.Store.LatestHead(ctx, log)
}

func (s *tracedStore) State(ctx context.Context, log string) (store.State, error) {
	defer traceFrom(ctx).note("store State", time.Now())
	return s.Store.State(ctx, log)
}

func (s *tracedStore) Evidence(ctx context.Context, log string) ([]store.Evidence, error) {
	defer traceFrom(ctx).note("store Evidence", time.Now())
	return s.Store.Evidence(ctx, log)
}

func (s *tracedStore) Commit(ctx context.Context, log string, b store.Batch) error {
	start := time.Now()
	err := s.Store.Commit(ctx, log, b)
	end := time.Now()
	s.tr.mu.Lock()
	s.tr.commits = append(s.tr.commits, span{fmt.Sprintf("commit of %d records, %d tiles", len(b.Records), len(b.Tiles)), start.Sub(s.tr.origin), end.Sub(s.tr.origin)})
	s.tr.mu.Unlock()
	return err
}

// tracedUpstream notes the upstream requests of the fetch path.
type tracedUpstream struct {
	mirror.Upstream
}

func (u tracedUpstream) Lookup(ctx context.Context, path, version string) ([]byte, error) {
	defer traceFrom(ctx).note("upstream lookup", time.Now())
	return u.Upstream.Lookup(ctx, path, version)
}

func (u tracedUpstream) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	defer traceFrom(ctx).note("upstream tile "+t.Path(), time.Now())
	return u.Upstream.Tile(ctx, t)
}

// covered returns how long the spans cover, overlaps counted once.
func covered(spans []span) time.Duration {
	slices.SortFunc(spans, func(a, b span) int { return int(a.start - b.start) })
	var d, end time.Duration
	for _, s := range spans {
		if s.start > end {
			end = s.start
		}
		if s.end > end {
			d += s.end - end
			end = s.end
		}
	}
	return d
}
