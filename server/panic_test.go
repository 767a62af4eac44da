package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

// panickyStore is a real store whose reads panic on demand.
type panickyStore struct {
	store.Store
	tiles atomic.Bool  // ReadTiles panics
	logs  atomic.Int32 // Logs panics this many more times
}

func (p *panickyStore) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	if p.tiles.Load() {
		panic("test: ReadTiles panics")
	}
	return p.Store.ReadTiles(ctx, log, tiles)
}

func (p *panickyStore) Logs(ctx context.Context) ([]string, error) {
	if p.logs.Add(-1) >= 0 {
		panic("test: Logs panics")
	}
	return p.Store.Logs(ctx)
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sumkeep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// TestPanic: a panic while answering a request, in the handler or in the
// refresh a first request starts, is a 500 (or a 503 when no head could be
// read) for that request; it releases what it held and the server keeps
// serving.
func TestPanic(t *testing.T) {
	st := &panickyStore{Store: openSQLite(t)}
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 600)
	l.sync(t, st, 0, 600, 600, true)

	// The first refresh panics: it runs in the background for the first
	// request, which finds nothing to serve.
	st.logs.Store(1)
	srv := New(Config{Store: st, Log: l.name, StoreTimeout: 10 * time.Second, CacheTiles: -1})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	hc := &http.Client{Timeout: time.Minute}
	get := func(p string) int {
		t.Helper()
		resp, err := hc.Get(hs.URL + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/latest"); code != http.StatusServiceUnavailable {
		t.Errorf("/latest while the first refresh panics: %d, want 503", code)
	}
	// The panicking refresh let go of the refresh: the next request
	// refreshes and is served.
	if code := get("/latest"); code != http.StatusOK {
		t.Errorf("/latest after a refresh panicked: %d, want 200", code)
	}

	tile := "/" + tlog.Tile{H: 8, L: 1, N: 0, W: 2}.Path()
	if code := get(tile); code != http.StatusOK {
		t.Fatalf("%s: %d", tile, code)
	}
	st.tiles.Store(true)
	for range 3 {
		if code := get(tile); code != http.StatusInternalServerError {
			t.Errorf("%s while ReadTiles panics: %d, want 500", tile, code)
		}
		if code := get(lookupPath(t, l.mods[7])); code != http.StatusOK {
			t.Errorf("lookup while ReadTiles panics: %d, want 200", code)
		}
	}
	st.tiles.Store(false)
	if code := get(tile); code != http.StatusOK {
		t.Errorf("%s after the panics: %d, want 200", tile, code)
	}
	// A synchronous Refresh (as after a fetch-through) that panics releases
	// the refresh too.
	st.logs.Store(1)
	func() {
		defer func() { recover() }()
		srv.Refresh(context.Background())
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Refresh(ctx); err != nil {
		t.Errorf("Refresh after a panicking one: %v", err)
	}
}

// TestReadyz: ready means the store answers and there is something to
// serve.
func TestReadyz(t *testing.T) {
	st := openSQLite(t)
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 300)
	check := func(h http.Handler, want int) {
		t.Helper()
		w := do(h, "GET", "/readyz")
		if w.Code != want {
			t.Errorf("/readyz: %d %q, want %d", w.Code, w.Body.String(), want)
		}
		if want == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
			t.Errorf("/readyz: 503 without Retry-After")
		}
	}
	// Heads re-read only every hour: readiness must not run ahead of
	// the heads requests are answered from.
	full := New(Config{Store: st, Log: l.name, HeadRefresh: time.Hour}).Handler()
	lazy := New(Config{Store: st, Log: l.name, Fetch: map[string]Fetcher{l.name: noFetch{}}}).Handler()
	noRoot := New(Config{Store: st}).Handler()
	check(full, http.StatusServiceUnavailable)   // no served head yet
	check(noRoot, http.StatusServiceUnavailable) // no log at all
	check(lazy, http.StatusServiceUnavailable)   // lazy too: nothing verifiable to serve yet
	l.sync(t, st, 0, 300, 300, false)
	check(full, http.StatusServiceUnavailable) // a head, but not served
	check(lazy, http.StatusServiceUnavailable)
	if w := do(full, "GET", "/latest"); w.Code == http.StatusOK {
		t.Fatalf("/latest with no served head: %d", w.Code)
	}
	if err := st.Commit(context.Background(), l.name, store.Batch{Synced: -1, Serve: 300}); err != nil {
		t.Fatal(err)
	}
	check(full, http.StatusOK)
	if w := do(full, "GET", "/latest"); w.Code != http.StatusOK {
		t.Errorf("/latest right after /readyz said ready: %d %q", w.Code, w.Body.String())
	}
	check(noRoot, http.StatusOK)
	check(lazy, http.StatusOK)
	if w := do(full, "GET", "/healthz"); w.Code != http.StatusOK {
		t.Errorf("/healthz: %d", w.Code)
	}
}

// noFetch is a Fetcher that finds nothing.
type noFetch struct{}

func (noFetch) Fetch(ctx context.Context, path, version string) error { return store.ErrNotFound }
