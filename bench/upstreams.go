package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

// Several upstreams (-upstreams, -upstreams-only): cold fetch-through
// lookups (each a module the store lacks, 8 in flight) with
//
//   - one upstream of 20 ms latency alone (the reference);
//   - that one plus one of 300 ms plus one that is down (refuses
//     connections): target p50 and p99 within 1.2x of the reference;
//   - the same three with the fast one spiking to 2 s on a tenth of its
//     requests: target p99 under 1.5x of the run without spikes;
//
// and hedged requests as a share of all upstream requests (target <= 10%).

const (
	upFast     = 20 * time.Millisecond
	upSlow     = 300 * time.Millisecond
	upSpike    = 2 * time.Second
	upInFlight = 8
)

// delayed serves h after a latency: d, or spike for a share of requests.
type delayed struct {
	h         http.Handler
	d, spike  time.Duration
	spikeFrac float64
	mu        sync.Mutex
	rng       *rand.Rand
}

func (x *delayed) setSpikes(frac float64) {
	x.mu.Lock()
	x.spikeFrac = frac
	x.mu.Unlock()
}

func (x *delayed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := x.d
	x.mu.Lock()
	if x.spikeFrac > 0 && x.rng.Float64() < x.spikeFrac {
		d = x.spike
	}
	x.mu.Unlock()
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return
	}
	x.h.ServeHTTP(w, r)
}

// upstreamsFigures measures the several-upstreams figures; u's log must be
// large enough for 1 + 3 x upstreamPairs runs of lookups (and warm-up
// lookups) of distinct modules. The first run, a warm-up, is not counted.
func upstreamsFigures(ctx context.Context, u *sumdbtest.Upstream, lookups int, add func(name, value, target string)) error {
	fmt.Println("several upstreams: cold fetch-through lookups, 8 in flight...")
	// Data tiles refused, as by a proxy's /sumdb/: lazy mode.
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	defer u.SetFault(sumdbtest.Fault{})
	fast := &delayed{h: u.Handler(), d: upFast, spike: upSpike, rng: rand.New(rand.NewPCG(1, 2))}
	slow := &delayed{h: u.Handler(), d: upSlow, rng: rand.New(rand.NewPCG(3, 4))}
	fastURL, stopFast, err := listen(fast)
	if err != nil {
		return err
	}
	defer stopFast()
	slowURL, stopSlow, err := listen(slow)
	if err != nil {
		return err
	}
	defer stopSlow()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	downURL := "http://" + l.Addr().String()
	l.Close() // connections refused from now on

	// Each run asks for modules no earlier run asked for: every lookup is
	// cold.
	ids := rand.New(rand.NewPCG(5, 6)).Perm(int(u.Size()))
	next := 0
	run := func(name string, urls []string) (p50, p99 time.Duration, hedges, requests int64, err error) {
		warm := ids[next : next+coldWarmup]
		next += coldWarmup
		pick := ids[next : next+lookups]
		next += lookups
		var cands []upstream.Candidate
		for _, url := range urls {
			cands = append(cands, upstream.Candidate{URL: url})
		}
		pool := upstream.NewPool(cands, upstream.PoolConfig{})
		dsn, drop, err := pgtest.Create(ctx, "sumkeep_bench_up")
		if err != nil {
			return 0, 0, 0, 0, err
		}
		defer drop()
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		defer st.Close()
		s, err := mirror.New(mirror.Config{Store: st, Upstream: pool, Key: u.VerifierKey(), Mode: mirror.ModeLazy})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		// As serve does at start: link and serve the newest head (this
		// also measures each upstream once).
		if err := s.Refresh(ctx); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		// As in the fetch-path figures, -cold-warmup lookups of other
		// records come first, uncounted: a serving mirror's pool has
		// measured its upstreams and saved up some hedge budget, and its
		// connections are open; the figures are of that steady state, not
		// of a process's first requests.
		var wwg sync.WaitGroup
		for _, id := range warm {
			wwg.Go(func() {
				p, v, _ := u.Module(int64(id))
				s.Fetch(ctx, p, v)
			})
		}
		wwg.Wait()
		var h0, r0 int64
		for _, h := range pool.Health() {
			h0 += h.Hedges
			r0 += h.Requests
		}
		lat := make([]time.Duration, len(pick))
		var wg sync.WaitGroup
		sem := make(chan struct{}, upInFlight)
		var firstErr error
		var mu sync.Mutex
		for i, id := range pick {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				p, v, _ := u.Module(int64(id))
				start := time.Now()
				err := s.Fetch(ctx, p, v)
				lat[i] = time.Since(start)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("%s: fetching %s@%s: %w", name, p, v, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			return 0, 0, 0, 0, firstErr
		}
		slices.Sort(lat)
		if traceUpstreams {
			q := func(f float64) string { return ms(lat[min(len(lat)-1, int(f*float64(len(lat))))]) }
			fmt.Printf("    %s: p50 %s p90 %s p95 %s p98 %s p99 %s max %s\n", name, q(0.5), q(0.9), q(0.95), q(0.98), q(0.99), ms(lat[len(lat)-1]))
		}
		for _, h := range pool.Health() {
			hedges += h.Hedges
			requests += h.Requests
		}
		hedges, requests = hedges-h0, requests-r0
		return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], hedges, requests, nil
	}

	if _, _, _, _, err := run("warm-up", []string{fastURL}); err != nil {
		return err
	}
	// The three runs alternate, upstreamPairs times: the machine's speed
	// drifts within minutes, so each figure is the median over the rounds
	// and each ratio is that of medians.
	var a50, a99, b50, b99, c50, c99 []time.Duration
	var bh, br, ch, cr int64
	for i := 0; i < upstreamPairs; i++ {
		p50, p99, _, _, err := run("fast alone", []string{fastURL})
		if err != nil {
			return err
		}
		a50, a99 = append(a50, p50), append(a99, p99)
		p50, p99, h, r, err := run("three", []string{slowURL, downURL, fastURL})
		if err != nil {
			return err
		}
		b50, b99, bh, br = append(b50, p50), append(b99, p99), bh+h, br+r
		fast.setSpikes(0.1)
		p50, p99, h, r, err = run("three, spikes", []string{slowURL, downURL, fastURL})
		fast.setSpikes(0)
		if err != nil {
			return err
		}
		c50, c99, ch, cr = append(c50, p50), append(c99, p99), ch+h, cr+r
		fmt.Printf("  round %d: p50/p99 alone %s/%s, three %s/%s, three with spikes %s/%s\n", i+1, ms(a50[i]), ms(a99[i]), ms(b50[i]), ms(b99[i]), ms(c50[i]), ms(c99[i]))
	}
	A50, A99, B50, B99, C50, C99 := medianD(a50), medianD(a99), medianD(b50), medianD(b99), medianD(c50), medianD(c99)
	add("cold lookup, 20 ms upstream alone: p50", ms(A50), "reference")
	add("cold lookup, 20 ms upstream alone: p99", ms(A99), "reference")
	add("cold lookup, + 300 ms + down: p50", fmt.Sprintf("%s (%.2fx)", ms(B50), ratio(B50, A50)), "<= 1.2x of alone")
	add("cold lookup, + 300 ms + down: p99", fmt.Sprintf("%s (%.2fx)", ms(B99), ratio(B99, A99)), "<= 1.2x of alone")
	add("cold lookup, fast one spiking to 2 s 1/10: p50", ms(C50), "")
	add("cold lookup, fast one spiking to 2 s 1/10: p99", fmt.Sprintf("%s (%.2fx of no spikes)", ms(C99), ratio(C99, B99)), "< 1.5x of no spikes")
	add("hedged requests, no spikes", share(bh, br), "<= 10%")
	add("hedged requests, with spikes", share(ch, cr), "<= 10%")
	return nil
}

func medianD(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func share(part, all int64) string {
	if all == 0 {
		return "0 of 0"
	}
	return fmt.Sprintf("%.1f%% (%d of %d)", 100*float64(part)/float64(all), part, all)
}

// runUpstreams measures only the several-upstreams figures, on a log of n
// records.
func runUpstreams(ctx context.Context, n int) error {
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
	if err := upstreamsFigures(ctx, u, upstreamLookups, add); err != nil {
		return err
	}
	printRows(rows)
	return nil
}
