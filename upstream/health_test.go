package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// noteInForm is a signed note in form, its signature no key's: what the
// client passes on from /latest (checking it is the caller's).
const noteInForm = "go.sum database tree\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u2014 sumdb.test AAAAAAA=\n"

func TestObserver(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/latest":
			w.Write([]byte(noteInForm))
		case "/tile/8/data/000":
			http.Error(w, "Go module path not permitted", http.StatusForbidden)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var mu sync.Mutex
	var seen []Observation
	c := NewClient(srv.URL, nil, WithObserver(func(o Observation) {
		mu.Lock()
		seen = append(seen, o)
		mu.Unlock()
	}))
	ctx := context.Background()
	if _, err := c.Latest(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "example.com/m", "v1.0.0"); err == nil {
		t.Fatal("lookup of a missing module succeeded")
	}
	if _, err := c.Tile(ctx, tlog.Tile{H: 8, L: -1, N: 0, W: 256}); err == nil {
		t.Fatal("refused data tile succeeded")
	}
	want := []struct {
		kind, errKind string
		status        int
	}{
		{KindLatest, "", 200},
		{KindLookup, "not_found", 404},
		{KindDataTile, "refused", 403},
	}
	if len(seen) != len(want) {
		t.Fatalf("observed %d requests, want %d: %+v", len(seen), len(want), seen)
	}
	for i, w := range want {
		o := seen[i]
		if o.Kind != w.kind || o.ErrorKind() != w.errKind || o.Status != w.status || o.Upstream != c.URL() {
			t.Errorf("observation %d = %+v (error kind %q), want kind %s, error kind %q, status %d", i, o, o.ErrorKind(), w.kind, w.errKind, w.status)
		}
	}
}
