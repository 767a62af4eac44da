package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/metrics"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/upstream"
)

// BenchmarkLookup answers lookups that the record cache holds (the
// cheapest answer, so the one the metrics weigh most on) from a real
// server, in-process, with metrics off and on: compare the two ns/op.
// make bench reports the same on a loaded server (bench -lookup-only).
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	u, url := newUpstreamB(b, fullLog, 1024)
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "sumkeep.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeFull})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		b.Fatal(err)
	}
	var paths []string
	for id := range int64(1024) {
		p, v, _ := u.Module(id)
		paths = append(paths, "/lookup/"+p+"@"+v)
	}
	for _, on := range []bool{false, true} {
		name := "off"
		cfg := server.Config{Store: st, Log: u.Name()}
		if on {
			name = "on"
			reg := metrics.NewRegistry()
			hm, err := metrics.NewHTTP(reg)
			if err != nil {
				b.Fatal(err)
			}
			cfg.Observer, cfg.Metrics = hm, metrics.Handler(reg)
		}
		srv := server.New(cfg)
		if err := srv.Refresh(ctx); err != nil {
			b.Fatal(err)
		}
		h := srv.Handler()
		for _, p := range paths { // fill the cache
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
		}
		b.Run(name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, paths[i%len(paths)], nil))
					if w.Code != http.StatusOK {
						b.Fatalf("GET %s: %d", paths[i%len(paths)], w.Code)
					}
					i++
				}
			})
		})
	}
}

// BenchmarkObserver is what the metrics add to one lookup: a request and a
// lookup outcome observed, from every core at once.
func BenchmarkObserver(b *testing.B) {
	hm, err := metrics.NewHTTP(metrics.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			hm.Request("/lookup/*mv", http.StatusOK, 1234*time.Microsecond)
			hm.Lookup(server.LookupCacheHit)
		}
	})
}
