package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// storeTiles reads tiles from the store only: what a client of the mirror
// can get.
type storeTiles struct {
	ctx context.Context
	st  store.Store
}

func (r storeTiles) Height() int { return store.TileHeight }
func (r storeTiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	return r.st.ReadTiles(r.ctx, logName, ts)
}
func (r storeTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// checkProvable checks lazy mode's invariant from the store alone: every
// stored record and every stored head is provable under the served head
// with stored tiles. It returns the number of records.
func checkProvable(t *testing.T, st store.Store, u *sumdbtest.Upstream) int {
	t.Helper()
	ctx := context.Background()
	served, err := st.ServedHead(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	hr := tlog.TileHashReader(served.Tree(), storeTiles{ctx, st})
	n := 0
	for after := int64(-1); ; {
		ids, err := st.RecordIDs(ctx, logName, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 {
			break
		}
		for _, id := range ids {
			recs, err := st.ReadRecords(ctx, logName, id, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(recs[0].Data, u.Record(id)) {
				t.Fatalf("record %d differs from the upstream's", id)
			}
			p, err := tlog.ProveRecord(served.Size, id, hr)
			if err != nil {
				t.Fatalf("record %d is not provable under served head %d from stored tiles: %v", id, served.Size, err)
			}
			if err := tlog.CheckRecord(p, served.Size, served.Hash, id, tlog.RecordHash(recs[0].Data)); err != nil {
				t.Fatalf("record %d: %v", id, err)
			}
			n++
		}
		after = ids[len(ids)-1]
	}
	heads, err := st.Heads(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range heads {
		if h.Size >= served.Size {
			continue
		}
		p, err := tlog.ProveTree(served.Size, h.Size, hr)
		if err != nil {
			t.Fatalf("head %d is not provable under served head %d from stored tiles: %v", h.Size, served.Size, err)
		}
		if err := tlog.CheckTree(p, served.Size, served.Hash, h.Size, h.Hash); err != nil {
			t.Fatalf("head %d: %v", h.Size, err)
		}
	}
	return n
}

func newLazy(t *testing.T, n int) (*sumdbtest.Upstream, store.Store, *mirror.Syncer) {
	t.Helper()
	u, url := newUpstream(t, n)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	st := newStore(t)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	return u, st, s
}

func fetchID(t *testing.T, s *mirror.Syncer, u *sumdbtest.Upstream, id int64) {
	t.Helper()
	p, v, ok := u.Module(id)
	if !ok {
		t.Fatalf("upstream has no record %d", id)
	}
	if err := s.Fetch(context.Background(), p, v); err != nil {
		t.Fatalf("Fetch %s@%s: %v", p, v, err)
	}
}

// TestLazy: auto mode picks lazy against an upstream that refuses data
// tiles; fetched records are stored with their proofs; as the log grows,
// each run moves the served head and every stored record and head stays
// provable from stored tiles; only what is asked for is stored.
func TestLazy(t *testing.T) {
	ctx := context.Background()
	u, st, s := newLazy(t, 70000)
	res, err := s.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != mirror.ModeLazy || res.Served.Size != 70000 || res.Records != 0 {
		t.Fatalf("first run = %+v", res)
	}
	if u.Requests("/tile/8/data/") != 1 {
		t.Fatalf("auto mode asked for %d data tiles, want 1 (the probe)", u.Requests("/tile/8/data/"))
	}
	ids := []int64{0, 1, 255, 256, 40000, 65535, 65536, 69999}
	for _, id := range ids {
		fetchID(t, s, u, id)
	}
	if n := checkProvable(t, st, u); n != len(ids) {
		t.Fatalf("%d records stored, want %d", n, len(ids))
	}
	// Fetching a stored record again stores nothing new and keeps it.
	fetchID(t, s, u, 40000)

	for round, add := range []int{1, 300, 70000} {
		if err := u.AddSynthetic(add); err != nil {
			t.Fatal(err)
		}
		before := u.Requests("/tile/")
		res, err := s.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Served.Size != u.Size() {
			t.Fatalf("round %d: served %d, upstream %d", round, res.Served.Size, u.Size())
		}
		checkProvable(t, st, u)
		// Only the tiles the proofs need: a handful per level, not the log.
		if got := u.Requests("/tile/") - before; got > 40 {
			t.Errorf("round %d: fetched %d tiles to move the head", round, got)
		}
		fetchID(t, s, u, u.Size()-1) // the newest record
	}
	checkProvable(t, st, u)

	// A caching upstream signs lookups with an older head: that head is
	// kept, and provable under the served one.
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultStaleHead, N: 100000})
	fetchID(t, s, u, 99000)
	if hs, _ := st.Heads(ctx, logName); !slices.ContainsFunc(hs, func(h store.Head) bool { return h.Size == 100000 }) {
		t.Fatalf("the stale lookup's head was not kept")
	}
	checkProvable(t, st, u)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})

	// A record newer than the served head moves the head first.
	if err := u.AddSynthetic(1000); err != nil {
		t.Fatal(err)
	}
	fetchID(t, s, u, u.Size()-1)
	if h, _ := st.ServedHead(ctx, logName); h.Size != u.Size() {
		t.Fatalf("served head %d after fetching record %d", h.Size, u.Size()-1)
	}
	checkProvable(t, st, u)

	if err := s.Fetch(ctx, "example.com/no/such/module", "v1.0.0"); !errors.Is(err, mirror.ErrNoRecord) || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Fetch of a missing module: %v", err)
	}
}

// TestLazyOneFetchPerRecord: concurrent fetches of one missing record make
// one upstream lookup.
func TestLazyOneFetchPerRecord(t *testing.T) {
	ctx := context.Background()
	u, _, s := newLazy(t, 3000)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	u.OnRequest(func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/lookup/") {
			<-gate
		}
	})
	p, v, _ := u.Module(1234)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Fetch(ctx, p, v) }()
	}
	waitRequests(t, u, "/lookup/", 1)
	close(gate)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := u.Requests("/lookup/"); n != 1 {
		t.Fatalf("%d lookups for one record", n)
	}
}

func waitRequests(t *testing.T, u *sumdbtest.Upstream, prefix string, n int64) {
	t.Helper()
	// A generous deadline: the machines running the tests are shared.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && u.Requests(prefix) < n; {
		time.Sleep(10 * time.Millisecond)
	}
	if u.Requests(prefix) < n {
		t.Fatalf("no request for %s arrived", prefix)
	}
}

// TestLazyLies: a fetch through a lying upstream stores nothing and says
// what was wrong.
func TestLazyLies(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		fault func(u *sumdbtest.Upstream) sumdbtest.Fault
		id    int64
		want  string
		kind  string
	}{
		{"WrongLookup", func(*sumdbtest.Upstream) sumdbtest.Fault { return sumdbtest.Fault{Kind: sumdbtest.FaultWrongLookup} },
			500, "answered with a record for", store.EvidenceWrongAnswer},
		{"AlterRecord", func(*sumdbtest.Upstream) sumdbtest.Fault {
			return sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: 500}
		},
			500, "does not match its leaf hash", store.EvidenceBadRecord},
		{"FlipLevel0", func(*sumdbtest.Upstream) sumdbtest.Fault {
			return sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 0, N: -1, Offset: 7}
		}, 500, "do not match the signed root", store.EvidenceBadTile},
		{"FlipLevel1", func(u *sumdbtest.Upstream) sumdbtest.Fault {
			// Level-1 tile 0 is stored at the served width: grow the log so
			// that a wider one is needed.
			if err := u.AddSynthetic(500); err != nil {
				t.Fatal(err)
			}
			return sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 1, N: -1, Offset: 3}
		}, 3200, "do not match the signed root", store.EvidenceBadTile},
		{"BadSignature", func(*sumdbtest.Upstream) sumdbtest.Fault { return sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature} },
			500, "does not verify", store.EvidenceBadSig},
		{"Fork", func(u *sumdbtest.Upstream) sumdbtest.Fault {
			f := forkOf(t, u, 2500, 1000)
			return sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: f}
		}, 3200, "forked", store.EvidenceFork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, st, s := newLazy(t, 3000)
			if _, err := s.Once(ctx); err != nil {
				t.Fatal(err)
			}
			fetchID(t, s, u, 10)
			before, err := st.State(ctx, logName)
			if err != nil {
				t.Fatal(err)
			}
			f := tc.fault(u)
			u.SetFault(f)
			var p, v string
			if f.Kind == sumdbtest.FaultFork {
				p, v, _ = f.Fork.Module(tc.id)
			} else {
				p, v, _ = u.Module(tc.id)
			}
			err = s.Fetch(ctx, p, v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Fetch through %s: err = %v, want %q", tc.name, err, tc.want)
			}
			if _, err := st.Lookup(ctx, logName, p, v, 1<<40); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the lie was stored: %v", err)
			}
			after, _ := st.State(ctx, logName)
			if after != before {
				t.Fatalf("state moved from %+v to %+v", before, after)
			}
			es, _ := st.Evidence(ctx, logName)
			if tc.kind == "" && len(es) != 0 {
				t.Fatalf("evidence %+v for an unsigned lie", es)
			}
			if tc.kind != "" && (len(es) != 1 || es[0].Kind != tc.kind) {
				t.Fatalf("evidence = %+v, want one of kind %s", es, tc.kind)
			}
			u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
			checkProvable(t, st, u)
		})
	}
}

// TestLazyConflict: a record stored while a head is being moved (by another
// process: here a second Syncer on the same store) is proven again before
// the head is served.
func TestLazyConflict(t *testing.T) {
	ctx := context.Background()
	u, st, s := newLazy(t, 5000)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	s2, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(u.URL(), nil), Key: u.VerifierKey(), Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 5; round++ {
		if err := u.AddSynthetic(700); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := s.Once(ctx); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				id := int64(round*1000 + i*37)
				p, v, _ := u.Module(id)
				if err := s2.Fetch(ctx, p, v); err != nil {
					t.Error(err)
				}
			}
		}()
		wg.Wait()
		checkProvable(t, st, u)
	}
}
