package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sumkeep/sumkeep/upstream"
)

// poolSettings are the flags of the upstream pool (poolFlags).
type poolSettings struct {
	hedgeDelay hedgeDelay
	hedgeMax   float64
	quarantine time.Duration
}

// hedgeDelay is --hedge-delay: "auto" (0) or a duration.
type hedgeDelay time.Duration

func (h *hedgeDelay) String() string {
	if h == nil || *h == 0 {
		return "auto"
	}
	return time.Duration(*h).String()
}

func (h *hedgeDelay) Set(s string) error {
	if s == "auto" {
		*h = 0
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("want \"auto\" or a positive duration such as 150ms")
	}
	*h = hedgeDelay(d)
	return nil
}

// poolFlags adds the flags of the commands that read upstreams.
func (e *env) poolFlags(fs *flag.FlagSet) {
	e.pool.hedgeMax = upstream.DefaultHedgeMax
	fs.Var(&e.pool.hedgeDelay, "hedge-delay", "how long a request waits for an upstream before it is sent again, to the upstream expected to answer first (often the same one): auto (from that upstream's recent latency: the p99 of its answers no hedge beat, at most 3x its median, at least 10ms) or a duration")
	fs.Float64Var(&e.pool.hedgeMax, "hedge-max", upstream.DefaultHedgeMax, "the largest share of upstream requests that may be hedges (0 or less: never hedge); failing over from an upstream that failed is not bounded")
	fs.DurationVar(&e.pool.quarantine, "quarantine", upstream.DefaultQuarantine, "how long an upstream caught lying (an answer that does not verify) is not asked")
}

// checkPool checks the pool flags.
func (e *env) checkPool() error {
	if e.pool.hedgeMax >= 1 {
		return usageError{"--hedge-max " + strconv.FormatFloat(e.pool.hedgeMax, 'g', -1, 64) + ": want a share below 1, e.g. 0.1"}
	}
	if e.pool.quarantine < 0 {
		return usageError{"--quarantine must not be negative"}
	}
	return nil
}

// discoveryTimeout bounds asking the GOPROXY entries whether they serve the
// database.
const discoveryTimeout = 10 * time.Second

// upstreams returns the upstreams of the log name: --upstream's list, or
// else those discovery finds (see upstream.Discover; never an error).
func (e *env) upstreams(ctx context.Context, name string) ([]upstream.Candidate, error) {
	if e.upstream != "" {
		var out []upstream.Candidate
		for _, u := range upstream.ParseList(e.upstream) {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return nil, usageError{fmt.Sprintf("--upstream %q: want http:// or https:// URLs, comma-separated", upstream.JoinURLs(upstream.ParseList(e.upstream)))}
			}
			out = append(out, upstream.Candidate{URL: u})
		}
		if len(out) == 0 {
			return nil, usageError{"--upstream: no URL given"}
		}
		return out, nil
	}
	goproxy, err := upstream.GoProxy(ctx, e.getenv)
	if err != nil {
		e.logger.Info("GOPROXY is not set and the go command cannot say its default; reaching the checksum database directly", "err", err)
	}
	dctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	cands := upstream.Discover(dctx, name, goproxy, nil)
	for _, c := range cands {
		if c.Err != nil {
			e.logger.Warn("upstream unreachable for now: kept as down and probed again later", "err", c.Err)
		}
	}
	return cands, nil
}

// newPool returns the pool of the log's upstreams.
func (e *env) newPool(ctx context.Context, name string) (*upstream.Pool, error) {
	if err := e.checkPool(); err != nil {
		return nil, err
	}
	cands, err := e.upstreams(ctx, name)
	if err != nil {
		return nil, err
	}
	hedgeMax := e.pool.hedgeMax
	if hedgeMax <= 0 {
		hedgeMax = -1
	}
	pool := upstream.NewPool(cands, upstream.PoolConfig{
		HedgeDelay: time.Duration(e.pool.hedgeDelay),
		HedgeMax:   hedgeMax,
		Quarantine: e.pool.quarantine,
		Observe:    e.observeUpstream,
		// Each upstream's own bound (0: none): fetch-through lookups
		// beyond it wait, or give up with their clients.
		ClientOptions: []upstream.ClientOption{upstream.WithMaxInFlight(e.maxInFlight), upstream.WithIdleConns(e.idleConns)},
		Logger:        e.logger,
	})
	e.health.pool.Store(pool)
	return pool, nil
}

// probeTimeout bounds status's probe of each upstream.
const statusProbeTimeout = 5 * time.Second

// printUpstreams probes each upstream of the log name once (/latest) and
// prints its state and latency: what `sumkeep status` shows of them. A
// running server's live measures are on its status page and metrics.
func (e *env) printUpstreams(ctx context.Context, name string) error {
	cands, err := e.upstreams(ctx, name)
	if err != nil {
		return err
	}
	type probe struct {
		d   time.Duration
		err error
	}
	res := make([]probe, len(cands))
	var wg sync.WaitGroup
	for i, c := range cands {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, statusProbeTimeout)
			defer cancel()
			start := time.Now()
			_, err := upstream.NewClient(c.URL, nil).Latest(pctx)
			res[i] = probe{time.Since(start), err}
		})
	}
	wg.Wait()
	fmt.Fprintf(e.stdout, "upstreams of %s (probed once now with /latest; a running server shows its live measures on its status page):\n", name)
	for i, c := range cands {
		shown := upstream.NewClient(c.URL, nil).URL()
		if res[i].err != nil {
			fmt.Fprintf(e.stdout, "  %-11s %s: %v\n", upstream.StateDown, shown, res[i].err)
			continue
		}
		fmt.Fprintf(e.stdout, "  %-11s %s: answered in %s\n", upstream.StateHealthy, shown, res[i].d.Round(time.Millisecond))
	}
	return nil
}
