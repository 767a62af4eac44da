// Package metrics exposes what a sumkeep process does as Prometheus metrics
// (github.com/prometheus/client_golang), named by its conventions: the
// sumkeep_ prefix, base units (seconds, bytes), _total for counters.
//
// It is wired in as hooks, the way pgx takes tracers: package server
// defines server.Observer, package mirror defines mirror.RunObserver, and
// package upstream takes an observer function (upstream.WithObserver);
// none of them imports Prometheus, and a nil hook costs nothing. This
// package implements those hooks, reads the store and the upstreams'
// health at scrape time, and is wired by cmd/sumkeep. There is no global
// registry: every process makes its own (NewRegistry) and passes it in.
//
// Metrics (their names are a contract: dashboards are built on them):
//
//	sumkeep_http_requests_total{route,code}                  counter
//	sumkeep_http_request_duration_seconds{route}             histogram
//	sumkeep_lookups_total{outcome}                           counter: store_hit, cache_hit, fetched, not_found, failed
//	sumkeep_upstream_request_duration_seconds{upstream,kind} histogram: kind latest, lookup, tile, data_tile, supported
//	sumkeep_upstream_errors_total{upstream,kind,error}       counter: error as upstream.Observation.ErrorKind names it
//	sumkeep_upstream_lies_total{upstream}                    counter: lies caught (evidence kept, counted)
//	sumkeep_upstream_state{upstream,state}                   gauge: 1 for the current state, 0 for the others
//	sumkeep_upstream_hedged_requests_total{upstream}         counter
//	sumkeep_log_served_tree_size{log}                        gauge
//	sumkeep_log_newest_tree_size{log}                        gauge: the newest verified head
//	sumkeep_log_served_head_age_seconds{log}                 gauge: now minus when the served head was first seen
//	sumkeep_log_lag_records{log}                             gauge: newest minus served
//	sumkeep_log_records_stored{log}                          gauge
//	sumkeep_sync_runs_total{log,outcome}                     counter: success, failure
//	sumkeep_sync_duration_seconds{log}                       histogram
//	sumkeep_sync_records_written_total{log}                  counter
//	sumkeep_sync_tiles_written_total{log}                    counter
//	sumkeep_sync_last_success_timestamp_seconds{log}         gauge: Unix time
//	sumkeep_evidence{log,kind}                               gauge: evidence rows kept
//	sumkeep_store_size_bytes                                 gauge: where the store can tell (store.Sizer)
//
// Route labels are gin's route patterns, never raw paths, and upstream
// labels are the configured upstreams' URLs with credentials masked, so
// that no client can grow the number of series.
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "sumkeep"

// NewRegistry returns a registry for one process, holding the Go runtime's
// and the process's standard collectors (go_*, process_*).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves the metrics of g in Prometheus's exposition formats. A
// collector that fails is left out and the rest is served; at most a few
// scrapes run at once.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

// register registers every collector with reg.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("registering sumkeep's metrics: %w", err)
	}
	return nil
}

// Buckets of the histograms, in seconds.
var (
	// httpBuckets span an answer from memory (tens of microseconds) to a
	// lookup fetched through from a slow upstream (seconds).
	httpBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	// upstreamBuckets span a nearby upstream (a few milliseconds) to one
	// that hangs until its deadline.
	upstreamBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 2, 5, 10, 30, 60}
	// syncBuckets span a run with nothing new (a second) to a first full
	// sync of sum.golang.org (hours).
	syncBuckets = []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600}
)
