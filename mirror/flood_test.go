package mirror_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/upstream"
)

// hangingUpstream never answers: each request waits until its client
// gives up. It counts the requests and connections it holds.
type hangingUpstream struct {
	inFlight, maxInFlight atomic.Int64
	conns, maxConns       atomic.Int64
	requests              atomic.Int64
}

func raise(max *atomic.Int64, n int64) {
	for m := max.Load(); n > m && !max.CompareAndSwap(m, n); m = max.Load() {
	}
}

func (h *hangingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	raise(&h.maxInFlight, h.inFlight.Add(1))
	defer h.inFlight.Add(-1)
	<-r.Context().Done()
}

func (h *hangingUpstream) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		raise(&h.maxConns, h.conns.Add(1))
	case http.StateClosed, http.StateHijacked:
		h.conns.Add(-1)
	}
}

// heap returns the live heap after a collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestAbandonedLookupsReleased floods a lazy mirror (a real server over a
// real store) whose upstream never answers with thousands of lookups of
// modules it does not hold, each abandoned by its client: the upstream
// never sees more requests than the cap at once, and once the clients have
// gone, everything they started is released (no request left waiting at
// the upstream, no goroutines or memory left behind).
func TestAbandonedLookupsReleased(t *testing.T) {
	const limit = 8
	up := &hangingUpstream{}
	upSrv := httptest.NewUnstartedServer(up)
	upSrv.Config.ConnState = up.connState
	upSrv.Start()
	t.Cleanup(upSrv.Close)

	u, err := sumdbtest.New(logName) // for its key only
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	s, err := mirror.New(mirror.Config{Store: st, Key: u.VerifierKey(), Mode: mirror.ModeLazy,
		Upstream: upstream.NewClient(upSrv.URL, nil, upstream.WithMaxInFlight(limit))})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Log: logName, Fetch: map[string]server.Fetcher{logName: s}})
	mirrorSrv := httptest.NewServer(srv.Handler())
	t.Cleanup(mirrorSrv.Close)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	lookup := func(i int, wait time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/lookup/example.com/missing/m%d@v1.0.0", mirrorSrv.URL, i), nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	// Warm up: the server, the store's pool, the first goroutines.
	for i := 0; i < 20; i++ {
		lookup(-i-1, 50*time.Millisecond)
	}
	waitFor(t, func() bool { return up.inFlight.Load() == 0 }, "the warm-up's upstream requests to end")
	client.CloseIdleConnections()
	heapBefore, goBefore := heap(), runtime.NumGoroutine()

	const clients, each = 200, 15 // 3,000 lookups
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < each; k++ {
				lookup(c*each+k, 100*time.Millisecond)
			}
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()

	if n := up.requests.Load(); n == 0 {
		t.Fatal("no lookup reached the upstream")
	}
	// An abandoned request's connection is closed by the mirror and seen
	// closed by the upstream a moment later, while the request that took
	// its place may already be there: the upstream may count a few more
	// than the cap (but not the 200 clients' worth that an unbounded
	// mirror sends).
	if m := up.maxInFlight.Load(); m > 3*limit {
		t.Errorf("the upstream had %d requests in flight at once, want at most about %d", m, limit)
	}
	if m := up.maxConns.Load(); m > 3*limit {
		t.Errorf("the upstream had %d connections open at once, want at most about %d", m, limit)
	}
	waitFor(t, func() bool { return up.inFlight.Load() == 0 }, "every upstream request to be released once its clients had gone")
	waitFor(t, func() bool { return runtime.NumGoroutine() <= goBefore+50 }, "the goroutines of abandoned lookups to end")
	// A leak check, not a measurement: 3,000 lookups held would keep
	// their requests, buffers and goroutines; a bound far above noise.
	if after := heap(); after > heapBefore+32<<20 {
		t.Errorf("live heap grew from %d to %d bytes over 3,000 abandoned lookups", heapBefore, after)
	}
	t.Logf("upstream: %d requests, at most %d in flight, at most %d connections; goroutines %d -> %d",
		up.requests.Load(), up.maxInFlight.Load(), up.maxConns.Load(), goBefore, runtime.NumGoroutine())
}

// waitFor waits until cond holds, failing the test after a generous
// deadline (the machines running the tests are shared).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
