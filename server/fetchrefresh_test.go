package server

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sumkeep/sumkeep/store"
)

// logsCounter is a store that counts Logs calls: each is one refresh of
// the server's snapshot of served heads.
type logsCounter struct {
	store.Store
	logs atomic.Int64
}

func (c *logsCounter) Logs(ctx context.Context) ([]string, error) {
	c.logs.Add(1)
	return c.Store.Logs(ctx)
}

// lazyFetch is a Fetcher that stores the record asked for, proven under
// the served head (serve 0), or serving a newer head with it, as the
// mirror's Fetch does for a record the served head does not hold.
type lazyFetch struct {
	t     *testing.T
	l     *testLog
	st    store.Store
	serve int64
}

func (f lazyFetch) Fetch(ctx context.Context, path, version string) error {
	for id, m := range f.l.mods {
		if m.Path == path && m.Version == version {
			b := f.l.batch(f.t, int64(id), int64(id)+1)
			b.Synced, b.Serve = -1, f.serve
			return f.st.Commit(ctx, f.l.name, b)
		}
	}
	return store.ErrNotFound
}

// TestFetchedUnderSnapshotHead: a record fetched through under the head
// the server serves already is answered without refreshing the snapshot
// of served heads (the lookups a group commit answers would otherwise
// take turns refreshing it); one fetched with a newer head is answered
// under that head.
func TestFetchedUnderSnapshotHead(t *testing.T) {
	ctx := context.Background()
	pg, _ := openStore(t)
	st := &logsCounter{Store: pg}
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 700)
	l.sync(t, st, 0, 512, 256, true)
	// Head 600 served, its records from 512 on not stored.
	if err := st.AddHead(ctx, l.name, l.head(t, 600)); err != nil {
		t.Fatal(err)
	}
	b := l.batch(t, 512, 600)
	b.Records, b.Synced, b.Serve = nil, -1, 600
	if err := st.Commit(ctx, l.name, b); err != nil {
		t.Fatal(err)
	}
	f := &lazyFetch{t: t, l: l, st: st}
	s := New(Config{Store: st, Log: l.name, Fetch: map[string]Fetcher{l.name: f}})
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	h := s.Handler()

	before := st.logs.Load()
	w := do(h, http.MethodGet, lookupPath(t, l.mods[550]))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), string(l.recs[550])) || !strings.HasSuffix(w.Body.String(), string(l.note(t, 600))) {
		t.Fatalf("lookup fetched under the served head: %d %q", w.Code, w.Body)
	}
	if n := st.logs.Load() - before; n != 0 {
		t.Errorf("lookup fetched under the served head refreshed the snapshot %d times; want none", n)
	}

	// A record beyond the served head: the fetch serves head 700 with it.
	if err := st.AddHead(ctx, l.name, l.head(t, 700)); err != nil {
		t.Fatal(err)
	}
	f.serve = 700
	w = do(h, http.MethodGet, lookupPath(t, l.mods[650]))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), string(l.recs[650])) || !strings.HasSuffix(w.Body.String(), string(l.note(t, 700))) {
		t.Fatalf("lookup fetched with a newer head: %d %q", w.Code, w.Body)
	}
}
