package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/storetest"
	"github.com/sumkeep/sumkeep/upstream"
)

const logName = "sumdb.test"

func newUpstream(t *testing.T, n int) (*sumdbtest.Upstream, string) {
	t.Helper()
	u := newLog(t, n)
	url := u.Start()
	t.Cleanup(u.Close)
	return u, url
}

// newLog returns a hermetic upstream of n synthetic records, not started.
func newLog(t *testing.T, n int) *sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.NewSynthetic(logName, n)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// forkOf returns a fork of u (same name and key) that keeps u's first
// keep records and then adds n of its own (see sumdbtest.Upstream.Fork).
func forkOf(t *testing.T, u *sumdbtest.Upstream, keep int64, n int) *sumdbtest.Upstream {
	t.Helper()
	f, err := u.Fork(keep)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.AddSynthetic(n); err != nil {
		t.Fatal(err)
	}
	return f
}

func newStore(t *testing.T) store.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newSyncer(t *testing.T, st store.Store, url, key string) *mirror.Syncer {
	t.Helper()
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: key, BatchTiles: 4, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkMirror checks that the store serves exactly the upstream's log.
func checkMirror(t *testing.T, st store.Store, u *sumdbtest.Upstream) {
	t.Helper()
	ctx := context.Background()
	n := u.Size()
	h, err := st.ServedHead(ctx, logName)
	if err != nil || h.Size != n || h.Hash != u.Tree().Hash {
		t.Fatalf("served head = %d %v, %v; want %d %v", h.Size, h.Hash, err, n, u.Tree().Hash)
	}
	recs, err := st.ReadRecords(ctx, logName, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if !bytes.Equal(r.Data, u.Record(int64(i))) {
			t.Fatalf("record %d = %q, want %q", i, r.Data, u.Record(int64(i)))
		}
	}
	tiles := tlog.NewTiles(8, 0, n)
	data, err := st.ReadTiles(ctx, logName, tiles)
	if err != nil {
		t.Fatal(err)
	}
	for i, tl := range tiles {
		want, err := tlog.ReadTileData(tl, u.HashReader())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data[i], want) {
			t.Fatalf("tile %s differs", tl.Path())
		}
	}
	// Spot-check lookups through the store.
	for _, id := range []int64{0, n / 2, n - 1} {
		path, version, _, _ := store.EncodeRecord(u.Record(id))
		r, err := st.Lookup(ctx, logName, path, version, n)
		if err != nil || r.ID != id {
			t.Fatalf("Lookup(%s@%s) = %d, %v; want %d", path, version, r.ID, err, id)
		}
	}
}

func TestFullSyncAndGrowth(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 1000)
	st := newStore(t)
	s := newSyncer(t, st, url, u.VerifierKey())

	res, err := s.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Served.Size != 1000 || res.Records != 1000 || res.Previous != 0 {
		t.Fatalf("result = %+v", res)
	}
	checkMirror(t, st, u)

	// Nothing new: no tile is fetched.
	before := u.Requests("/tile/")
	if res, err := s.Once(ctx); err != nil || res.Records != 0 || res.Served.Size != 1000 {
		t.Fatalf("second sync = %+v, %v", res, err)
	}
	if got := u.Requests("/tile/") - before; got != 0 {
		t.Fatalf("up-to-date sync fetched %d tiles", got)
	}

	// The log grows by a partial tile, then by several: only new data is fetched.
	for _, add := range []int{10, 3000, 255} {
		if err := u.AddSynthetic(add); err != nil {
			t.Fatal(err)
		}
		old := u.Size() - int64(add)
		before := u.Requests("/tile/8/data/")
		res, err := s.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Previous != old || res.Served.Size != u.Size() || res.Records != int64(add) {
			t.Fatalf("after adding %d: result = %+v", add, res)
		}
		wantTiles := (u.Size()+255)/256 - old/256
		if got := u.Requests("/tile/8/data/") - before; got != wantTiles {
			t.Errorf("after adding %d: fetched %d data tiles, want %d", add, got, wantTiles)
		}
		checkMirror(t, st, u)
	}
	heads, _ := st.Heads(ctx, logName)
	if len(heads) != 4 {
		t.Errorf("stored %d heads, want 4", len(heads))
	}
}

// TestCancelAndResume stops syncs part-way at several points; the resumed
// store must equal one synced without interruption.
func TestCancelAndResume(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 10000)

	ref := newStore(t)
	if _, err := newSyncer(t, ref, url, u.VerifierKey()).Once(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := storetest.Digest(ctx, ref, logName)
	if err != nil {
		t.Fatal(err)
	}

	st := newStore(t)
	// One tile a batch: the fetch stage runs at most a few batches ahead of
	// the commits, so stopping after k tile requests stops part-way.
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), BatchTiles: 1, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var cancel context.CancelFunc
	var stopAfter, seen int
	u.OnRequest(func(r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/tile/8/data/") {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		seen++
		if seen == stopAfter && cancel != nil {
			cancel()
		}
	})
	interrupted := 0
	var cursors []int64
	for _, n := range []int{1, 12, 9, 15} {
		mu.Lock()
		var cctx context.Context
		cctx, cancel = context.WithCancel(ctx)
		stopAfter, seen = n, 0
		mu.Unlock()
		_, err := s.Once(cctx)
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("interrupted sync: %v", err)
		}
		interrupted++
		c, _ := st.Synced(ctx, logName)
		cursors = append(cursors, c)
	}
	t.Logf("cursor after each interrupted run: %v", cursors)
	if interrupted < 3 {
		t.Fatalf("only %d syncs were interrupted", interrupted)
	}
	if synced, _ := st.Synced(ctx, logName); synced == 0 || synced == 10000 {
		t.Fatalf("after interruptions the cursor is at %d; want part-way", synced)
	}
	mu.Lock()
	cancel = nil
	mu.Unlock()
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := storetest.Digest(ctx, st, logName)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatal("resumed store differs from an uninterrupted sync")
	}
	checkMirror(t, st, u)
}

func TestOneSyncerPerLog(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 10)
	st := newStore(t)
	unlock, err := st.LockSync(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, err = newSyncer(t, st, url, u.VerifierKey()).Once(ctx)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("sync while locked: err = %v, want ErrLocked", err)
	}
}

func TestSplitDataTileForms(t *testing.T) {
	// Exercised through a real sync of records whose text the upstream
	// formats; here the edge forms of the tile itself.
	u, url := newUpstream(t, 0)
	recs := [][]byte{
		[]byte("example.com/a v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nexample.com/a v1.0.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"),
		[]byte("example.com/b v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \n"), // trailing white space
		[]byte("one line without go.mod\n"),
	}
	if err := u.Add(recs...); err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	if _, err := newSyncer(t, st, url, u.VerifierKey()).Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkMirror(t, st, u)
}
