package metrics

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sumkeep/sumkeep/server"
)

// HTTP counts what a server answers: it is a server.Observer.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lookups  []prometheus.Counter // by server.LookupOutcome

	// series are the children of requests and duration, resolved once per
	// route and code: a map replaced whole when one is added (rarely: the
	// routes and codes are few), so that reading it takes no lock.
	series atomic.Pointer[map[routeCode]requestSeries]
	mu     sync.Mutex // held to add to series
}

type routeCode struct {
	route string
	code  int
}

type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

var _ server.Observer = (*HTTP)(nil)

// NewHTTP registers the request and lookup metrics with reg and returns
// the observer to give server.Config.
func NewHTTP(reg prometheus.Registerer) (*HTTP, error) {
	h := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: httpBuckets,
		}, []string{"route"}),
	}
	h.series.Store(&map[routeCode]requestSeries{})
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "lookups_total",
		Help: "Lookups answered, by outcome: store_hit, cache_hit, fetched (through from the upstream), not_found, failed.",
	}, []string{"outcome"})
	for _, o := range server.LookupOutcomes() {
		h.lookups = append(h.lookups, lookups.WithLabelValues(o.String()))
	}
	if err := register(reg, h.requests, h.duration, lookups); err != nil {
		return nil, err
	}
	return h, nil
}

// Request implements server.Observer.
func (h *HTTP) Request(route string, code int, d time.Duration) {
	k := routeCode{route, code}
	s, ok := (*h.series.Load())[k]
	if !ok {
		s = h.add(k)
	}
	s.count.Inc()
	s.duration.Observe(d.Seconds())
}

// add resolves the series of k and adds them to h.series.
func (h *HTTP) add(k routeCode) requestSeries {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.series.Load()
	if s, ok := old[k]; ok {
		return s
	}
	s := requestSeries{
		count:    h.requests.WithLabelValues(k.route, strconv.Itoa(k.code)),
		duration: h.duration.WithLabelValues(k.route),
	}
	next := maps.Clone(old)
	next[k] = s
	h.series.Store(&next)
	return s
}

// Lookup implements server.Observer.
func (h *HTTP) Lookup(o server.LookupOutcome) {
	if int(o) < len(h.lookups) {
		h.lookups[o].Inc()
	}
}
