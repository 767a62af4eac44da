package metrics

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// Store is what the metrics read from a store at scrape time. A store that
// is also a store.RecordCounter has its records counted, and one that is a
// store.Sizer has its size shown.
type Store interface {
	Logs(ctx context.Context) ([]string, error)
	ServedHead(ctx context.Context, log string) (store.Head, error)
	LatestHead(ctx context.Context, log string) (store.Head, error)
	Synced(ctx context.Context, log string) (int64, error)
	Evidence(ctx context.Context, log string) ([]store.Evidence, error)
}

// Config says where a process's metrics read from at scrape time.
type Config struct {
	// Store, if not nil, is read for the per-log gauges, the evidence, the
	// lies caught and the store's size.
	Store Store
	// Health, if not nil, tells each upstream's state, hedged requests and
	// lies caught (the upstream pool).
	Health upstream.HealthReporter
	// CacheFor is how long what was read from the store is shown before it
	// is read again (default 10s): scrapes, however frequent, cost the
	// store a few small queries that often.
	CacheFor time.Duration
	// StoreTimeout bounds reading the store for one scrape (default 5s); a
	// store that does not answer in time leaves the per-log metrics out of
	// that scrape.
	StoreTimeout time.Duration
	// Logger receives store errors met while scraping; nil discards them.
	Logger *slog.Logger
}

// Process holds the metrics of a long-running process (serve, or sync
// --schedule): upstream requests, sync runs, and what the store and the
// upstreams' health tell at scrape time. Its ObserveUpstream is the
// function to give upstream.WithObserver, and it is a mirror.RunObserver.
type Process struct {
	upDuration *prometheus.HistogramVec
	upErrors   *prometheus.CounterVec

	syncRuns     *prometheus.CounterVec
	syncDuration *prometheus.HistogramVec
	syncRecords  *prometheus.CounterVec
	syncTiles    *prometheus.CounterVec
	syncLast     *prometheus.GaugeVec

	seenMu sync.RWMutex
	seen   map[string]bool // upstreams observed: each has a lies series, 0 until one is caught
}

var _ mirror.RunObserver = (*Process)(nil)

// New registers the metrics of a long-running process with reg.
func New(reg prometheus.Registerer, cfg Config) (*Process, error) {
	p := &Process{
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "request_duration_seconds",
			Help:    "Time of one HTTP request to an upstream (each attempt of a retried one), by upstream and kind: latest, lookup, tile, data_tile, supported.",
			Buckets: upstreamBuckets,
		}, []string{"upstream", "kind"}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "errors_total",
			Help: "Failed HTTP requests to an upstream, by upstream, kind and error: canceled, timeout, network, not_found, refused, status_4xx, status_5xx, html, other.",
		}, []string{"upstream", "kind", "error"}),
		syncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "sync", Name: "runs_total",
			Help: "Sync runs, by log and outcome: success, failure.",
		}, []string{"log", "outcome"}),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "sync", Name: "duration_seconds",
			Help:    "Time of one sync run, by log.",
			Buckets: syncBuckets,
		}, []string{"log"}),
		syncRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "sync", Name: "records_written_total",
			Help: "Records stored by sync runs, by log.",
		}, []string{"log"}),
		syncTiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "sync", Name: "tiles_written_total",
			Help: "Hash tiles stored or widened by sync runs, by log.",
		}, []string{"log"}),
		syncLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "sync", Name: "last_success_timestamp_seconds",
			Help: "When the last successful sync run of this process ended, by log (Unix time).",
		}, []string{"log"}),
		seen: make(map[string]bool),
	}
	sc := newStateCollector(cfg, p.upstreams)
	if err := register(reg, p.upDuration, p.upErrors, p.syncRuns, p.syncDuration, p.syncRecords, p.syncTiles, p.syncLast, sc); err != nil {
		return nil, err
	}
	return p, nil
}

// ObserveUpstream counts one request to an upstream; give it to
// upstream.WithObserver.
func (p *Process) ObserveUpstream(o upstream.Observation) {
	p.upDuration.WithLabelValues(o.Upstream, o.Kind).Observe(o.Duration.Seconds())
	if kind := o.ErrorKind(); kind != "" {
		p.upErrors.WithLabelValues(o.Upstream, o.Kind, kind).Inc()
	}
	p.seenMu.RLock()
	seen := p.seen[o.Upstream]
	p.seenMu.RUnlock()
	if !seen {
		p.seenMu.Lock()
		p.seen[o.Upstream] = true
		p.seenMu.Unlock()
	}
}

// upstreams returns the upstreams observed so far.
func (p *Process) upstreams() []string {
	p.seenMu.RLock()
	defer p.seenMu.RUnlock()
	us := make([]string, 0, len(p.seen))
	for u := range p.seen {
		us = append(us, u)
	}
	slices.Sort(us)
	return us
}

// SyncRun implements mirror.RunObserver.
func (p *Process) SyncRun(res mirror.Result, err error) {
	success, failure := p.syncRuns.WithLabelValues(res.Log, "success"), p.syncRuns.WithLabelValues(res.Log, "failure")
	if err != nil {
		failure.Inc()
	} else {
		success.Inc()
		p.syncLast.WithLabelValues(res.Log).SetToCurrentTime()
	}
	p.syncDuration.WithLabelValues(res.Log).Observe(res.Elapsed.Seconds())
	p.syncRecords.WithLabelValues(res.Log).Add(float64(res.Records))
	p.syncTiles.WithLabelValues(res.Log).Add(float64(res.Tiles))
}

// stateCollector reads the store and the upstreams' health at scrape time.
type stateCollector struct {
	cfg       Config
	upstreams func() []string // observed upstreams

	servedSize, newestSize, headAge, lag, records, evidence, size, lies, state, hedged *prometheus.Desc

	mu   sync.Mutex // held while reading the store
	last *storeSnapshot
}

// storeSnapshot is what one read of the store found.
type storeSnapshot struct {
	at   time.Time
	ok   bool // false: reading failed; nothing of it is shown
	logs []logSnapshot
	lies map[string]int64 // evidence counted by source
	size int64            // -1: the store cannot tell
}

type logSnapshot struct {
	name      string
	served    int64
	firstSeen time.Time // of the served head; zero if none
	newest    int64
	records   int64 // -1: unknown
	evidence  map[string]int
}

func newStateCollector(cfg Config, upstreams func() []string) *stateCollector {
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 10 * time.Second
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &stateCollector{
		cfg:        cfg,
		upstreams:  upstreams,
		servedSize: d("log_served_tree_size", "Size of the served tree head, by log.", "log"),
		newestSize: d("log_newest_tree_size", "Size of the newest verified tree head known, by log.", "log"),
		headAge:    d("log_served_head_age_seconds", "Time since the served tree head was first seen, by log.", "log"),
		lag:        d("log_lag_records", "Records the served head is behind the newest verified head, by log.", "log"),
		records:    d("log_records_stored", "Records stored, by log.", "log"),
		evidence:   d("evidence", "Evidence of upstream misbehaviour kept, by log and kind.", "log", "kind"),
		size:       d("store_size_bytes", "Size of the store in bytes."),
		lies:       d("upstream_lies_total", "Lies caught from an upstream (or another source, such as a bundle): evidence kept, counted each time it was seen.", "upstream"),
		state:      d("upstream_state", "An upstream's state: 1 for the current one (healthy, slow, down, quarantined), 0 for the others.", "upstream", "state"),
		hedged:     d("upstream_hedged_requests_total", "Requests sent to an upstream as a hedge, because another was slow.", "upstream"),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.servedSize, c.newestSize, c.headAge, c.lag, c.records, c.evidence, c.size, c.lies, c.state, c.hedged} {
		ch <- d
	}
}

// evidenceKinds are the kinds every log shows, 0 until there is some.
var evidenceKinds = []string{store.EvidenceFork, store.EvidenceBadRecord, store.EvidenceBadTile,
	store.EvidenceDuplicate, store.EvidenceBadSig, store.EvidenceReplicaMismatch}

// states are the states every upstream with a health report shows.
var states = []upstream.State{upstream.StateHealthy, upstream.StateSlow, upstream.StateDown, upstream.StateQuarantined}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	lies := make(map[string]int64)
	for _, u := range c.upstreams() {
		lies[u] = 0
	}
	if snap := c.snapshot(); snap != nil && snap.ok {
		now := time.Now()
		for _, l := range snap.logs {
			gauge(c.servedSize, float64(l.served), l.name)
			gauge(c.newestSize, float64(l.newest), l.name)
			gauge(c.lag, float64(max(0, l.newest-l.served)), l.name)
			if !l.firstSeen.IsZero() {
				gauge(c.headAge, max(0, now.Sub(l.firstSeen).Seconds()), l.name)
			}
			if l.records >= 0 {
				gauge(c.records, float64(l.records), l.name)
			}
			for _, k := range evidenceKinds {
				gauge(c.evidence, float64(l.evidence[k]), l.name, k)
			}
			for k, n := range l.evidence {
				if !slices.Contains(evidenceKinds, k) {
					gauge(c.evidence, float64(n), l.name, k)
				}
			}
		}
		if snap.size >= 0 {
			gauge(c.size, float64(snap.size))
		}
		for src, n := range snap.lies {
			lies[src] += n
		}
	}
	if c.cfg.Health != nil {
		for _, h := range c.cfg.Health.Health() {
			lies[h.URL] = max(lies[h.URL], h.Lies)
			for _, s := range states {
				v := 0.0
				if h.State == s {
					v = 1
				}
				gauge(c.state, v, h.URL, string(s))
			}
			counter(c.hedged, float64(h.Hedges), h.URL)
		}
	}
	for u, n := range lies {
		counter(c.lies, float64(n), u)
	}
}

// snapshot returns what the store holds, read at most every CacheFor; nil
// without a store.
func (c *stateCollector) snapshot() *storeSnapshot {
	if c.cfg.Store == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && time.Since(c.last.at) < c.cfg.CacheFor {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.StoreTimeout)
	defer cancel()
	snap, err := readStore(ctx, c.cfg.Store)
	if err != nil {
		if c.last == nil || c.last.ok {
			c.cfg.Logger.Warn("metrics: reading the store (the per-log metrics are left out until it answers)", "err", err)
		}
		snap = &storeSnapshot{}
	} else if c.last != nil && !c.last.ok {
		c.cfg.Logger.Info("metrics: reading the store works again")
	}
	snap.at = time.Now()
	c.last = snap
	return snap
}

// readStore reads what the metrics show of st.
func readStore(ctx context.Context, st Store) (*storeSnapshot, error) {
	snap := &storeSnapshot{ok: true, lies: make(map[string]int64), size: -1}
	names, err := st.Logs(ctx)
	if err != nil {
		return nil, err
	}
	counter, canCount := st.(store.RecordCounter)
	for _, name := range names {
		l := logSnapshot{name: name, records: -1, evidence: make(map[string]int)}
		switch h, err := st.ServedHead(ctx, name); {
		case err == nil:
			l.served, l.firstSeen = h.Size, h.FirstSeen
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		switch h, err := st.LatestHead(ctx, name); {
		case err == nil:
			l.newest = h.Size
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		if canCount {
			if l.records, err = counter.CountRecords(ctx, name); err != nil {
				return nil, err
			}
		} else {
			synced, err := st.Synced(ctx, name)
			if err != nil {
				return nil, err
			}
			if synced > 0 {
				l.records = synced
			}
		}
		es, err := st.Evidence(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			l.evidence[e.Kind]++
			if e.Source != "" && e.Kind != store.EvidenceReplicaMismatch {
				snap.lies[e.Source] += max(1, e.Count)
			}
		}
		snap.logs = append(snap.logs, l)
	}
	if sz, ok := st.(store.Sizer); ok {
		if snap.size, err = sz.SizeBytes(ctx); err != nil {
			return nil, err
		}
	}
	return snap, nil
}
