package upstream_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/upstream"
)

// TestHTTP2Burst: a burst of 300 lookups through a Pool to an upstream
// over TLS and HTTP/2 (a server that allows 128 streams on a connection,
// as the Go module proxy does) opens a connection for every 100 requests
// in flight, not one for each, and every lookup is answered without the
// upstream ever seeming down. Go's transport alone, given the burst, dials
// for each request that finds no connection free: hundreds of TLS
// handshakes.
func TestHTTP2Burst(t *testing.T) {
	var conns, inFlight, most atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if r.ProtoMajor != 2 {
			http.Error(w, "not HTTP/2: "+r.Proto, http.StatusBadRequest)
			return
		}
		time.Sleep(20 * time.Millisecond)
		// A lookup answer in form (the client checks that much): id,
		// record, blank line; the signed head is the caller's to check.
		fmt.Fprintf(w, "7\n%s h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n", strings.TrimPrefix(r.URL.Path, "/lookup/"))
	}))
	srv.EnableHTTP2 = true
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 128}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()

	// The test server's certificate, in a transport of the Client's own.
	tr := srv.Client().Transport.(*http.Transport).Clone()
	p := upstream.NewPool([]upstream.Candidate{{URL: srv.URL}}, upstream.PoolConfig{HTTP: &http.Client{Transport: tr, Timeout: time.Minute}})

	const burst = 300
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, burst)
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = p.Lookup(ctx, "example.com/m", fmt.Sprintf("v1.0.%d", i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	t.Logf("%d connections, at most %d requests at the server at once", conns.Load(), most.Load())
	if n := conns.Load(); n > (burst+99)/100 {
		t.Errorf("%d connections for a burst of %d, want at most one for every 100 in flight", n, burst)
	}
	h := p.Health()[0]
	if h.State != upstream.StateHealthy || h.Errors != 0 {
		t.Errorf("upstream %s, %d errors (last: %s), want healthy with none", h.State, h.Errors, h.LastError)
	}
}
