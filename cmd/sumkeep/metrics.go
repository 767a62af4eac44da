package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sumkeep/sumkeep/metrics"
	"github.com/sumkeep/sumkeep/upstream"
)

const metricsListenUsage = "serve Prometheus metrics at /metrics (and /livez) on this address, e.g. 127.0.0.1:9090"

// processMetrics makes the registry of a long-running command and the
// metrics every such command has (upstream requests, sync runs, the store
// and the upstreams' health read at scrape time), and hooks them into the
// upstream clients and syncers newSyncer makes from now on.
func (e *env) processMetrics(st metrics.Store) (*prometheus.Registry, error) {
	reg := metrics.NewRegistry()
	pm, err := metrics.New(reg, metrics.Config{Store: st, Health: &e.health, Logger: e.logger})
	if err != nil {
		return nil, err
	}
	e.observeUpstream = pm.ObserveUpstream
	e.runObserver = pm
	return reg, nil
}

// poolHealth is the health of the upstream pool newSyncer makes: the
// metrics are made before it, so that its clients report to them.
type poolHealth struct{ pool atomic.Pointer[upstream.Pool] }

func (h *poolHealth) Health() []upstream.Health {
	if p := h.pool.Load(); p != nil {
		return p.Health()
	}
	return nil
}

// serveMetrics serves h at /metrics, and /livez, on its own listener at
// addr until ctx ends. It returns once it listens, or with an error saying
// why it cannot.
func serveMetrics(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return envError{fmt.Errorf("--metrics-listen: %w", err)}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, "live")
	})
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
	}()
	return nil
}
