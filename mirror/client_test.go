package mirror_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/upstream"
)

// TestClientReusesConnections: a full sync over HTTP/1.1 keeps its tile
// requests on the connections it opened for the first burst, rather than
// dialing (over TLS: handshaking) again for each batch.
func TestClientReusesConnections(t *testing.T) {
	u := newLog(t, 96*256)
	var dials atomic.Int64
	srv := httptest.NewUnstartedServer(u.Handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	const concurrency = 8
	s, err := mirror.New(mirror.Config{Store: newStore(t), Upstream: upstream.NewClient(srv.URL, nil),
		Key: u.VerifierKey(), BatchTiles: 4, Concurrency: concurrency, Mode: mirror.ModeFull})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 192 tile requests in 24 batches, at most 8 at a time for the
	// batches and 8 more for the tiles that authenticate them, and /latest.
	// (A transport that keeps two idle connections dials several more for
	// every batch.)
	if n, most := dials.Load(), int64(2*concurrency+1); n > most {
		t.Errorf("the sync opened %d connections for at most %d requests in flight", n, most)
	}
}
