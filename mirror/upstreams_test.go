package mirror_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// copyOf returns a started Upstream holding the same log as u (same key,
// same records), answering with its own faults and latency.
func copyOf(t *testing.T, u *sumdbtest.Upstream) *sumdbtest.Upstream {
	t.Helper()
	c, err := u.Fork(u.Size())
	if err != nil {
		t.Fatal(err)
	}
	c.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	c.Start()
	t.Cleanup(c.Close)
	return c
}

// newPoolSyncer returns a lazy Syncer over a pool of the upstreams, in
// that order of preference.
func newPoolSyncer(t *testing.T, st store.Store, key string, us ...*sumdbtest.Upstream) (*mirror.Syncer, *upstream.Pool) {
	t.Helper()
	var cands []upstream.Candidate
	for _, u := range us {
		cands = append(cands, upstream.Candidate{URL: u.URL()})
	}
	p := upstream.NewPool(cands, upstream.PoolConfig{})
	s, err := mirror.New(mirror.Config{Store: st, Upstream: p, Key: key, Concurrency: 8, Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

// health returns the pool's measure of the upstream at url.
func health(t *testing.T, p *upstream.Pool, url string) upstream.Health {
	t.Helper()
	for _, h := range p.Health() {
		if h.URL == url {
			return h
		}
	}
	t.Fatalf("the pool does not know %s", url)
	return upstream.Health{}
}

// TestPoolLiars: three upstreams of one log: the first asked lies (in each
// way), one is slow and honest, one answers 503. Every fetch through stores
// the honest record; the liar is quarantined, with evidence naming it and
// only it; the slow one answered.
func TestPoolLiars(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		fault sumdbtest.Fault
		kind  string
	}{
		{"BadSignature", sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature}, store.EvidenceBadSig},
		{"FlipTileByte", sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 0, N: -1, Offset: 5}, store.EvidenceBadTile},
		{"AlterRecord", sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: 1700}, store.EvidenceBadRecord},
		{"WrongLookup", sumdbtest.Fault{Kind: sumdbtest.FaultWrongLookup}, store.EvidenceWrongAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			honest, _ := newUpstream(t, 3000)
			honest.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
			liar, failing := copyOf(t, honest), copyOf(t, honest)
			liar.SetFault(tc.fault)
			failing.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError})
			honest.SetLatency(30 * time.Millisecond)
			st := newStore(t)
			s, p := newPoolSyncer(t, st, honest.VerifierKey(), liar, failing, honest)

			for _, id := range []int64{1700, 10, 2999} {
				fetchID(t, s, honest, id)
			}
			checkProvable(t, st, honest)
			es, err := st.Evidence(ctx, logName)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 1 || es[0].Kind != tc.kind || es[0].Source != liar.URL() || !strings.Contains(es[0].Message, liar.URL()) {
				t.Fatalf("evidence = %+v, want one of kind %s naming %s", es, tc.kind, liar.URL())
			}
			if h := health(t, p, liar.URL()); h.State != upstream.StateQuarantined || h.Lies != 1 || !h.Until.After(time.Now()) {
				t.Errorf("liar: %+v, want quarantined for one lie", h)
			}
			if h := health(t, p, failing.URL()); h.State != upstream.StateDown || h.Errors == 0 || h.LastError == "" {
				t.Errorf("failing upstream: %+v, want down with its error", h)
			}
			if h := health(t, p, honest.URL()); h.State == upstream.StateQuarantined || h.State == upstream.StateDown || h.Lies != 0 || h.Requests == 0 {
				t.Errorf("honest upstream: %+v", h)
			}
			// The quarantined liar is no longer asked.
			liar.ResetRequests()
			fetchID(t, s, honest, 2000)
			if n := liar.Requests(""); n != 0 {
				t.Errorf("the quarantined liar was asked %d requests", n)
			}
		})
	}
}

// TestPoolFastOneKilled: with the fast upstream gone mid-run, fetches keep
// succeeding from the slower one, and the fast one is marked down.
func TestPoolFastOneKilled(t *testing.T) {
	ctx := context.Background()
	slow, _ := newUpstream(t, 3000)
	slow.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	fast := copyOf(t, slow)
	slow.SetLatency(40 * time.Millisecond)
	st := newStore(t)
	s, p := newPoolSyncer(t, st, slow.VerifierKey(), fast, slow)
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for id := int64(0); id < 2000; id += 400 {
		fetchID(t, s, slow, id)
	}
	if h := health(t, p, fast.URL()); h.State == upstream.StateDown || h.State == upstream.StateQuarantined || h.Requests == 0 {
		t.Fatalf("fast upstream before it goes: %+v", h)
	}
	fastURL := fast.URL()
	fast.Close()
	slow.ResetRequests()
	for id := int64(2001); id < 3000; id += 200 {
		fetchID(t, s, slow, id)
	}
	checkProvable(t, st, slow)
	if slow.Requests("/lookup/") == 0 {
		t.Error("the slow upstream answered no lookup after the fast one went")
	}
	if h := health(t, p, fastURL); h.State != upstream.StateDown || h.LastError == "" {
		t.Errorf("fast upstream after it went: %+v, want down", h)
	}
	if es, _ := st.Evidence(ctx, logName); len(es) != 0 {
		t.Errorf("evidence %+v from honest upstreams", es)
	}
}

// TestPoolSplitView: two upstreams serving inconsistent signed heads of the
// same log (same key) are caught as a fork, kept as signed evidence with
// both notes, and the log stops advancing.
func TestPoolSplitView(t *testing.T) {
	ctx := context.Background()
	a, _ := newUpstream(t, 2500)
	a.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	b := forkOf(t, a, 2000, 700)
	b.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	b.Start()
	t.Cleanup(b.Close)
	st := newStore(t)
	s, _ := newPoolSyncer(t, st, a.VerifierKey(), a, b)
	_, err := s.Once(ctx)
	mis, ok := errors.AsType[*mirror.MisbehaviourError](err)
	if !ok || mis.Evidence.Kind != store.EvidenceFork {
		t.Fatalf("sync over a split view: %v, want a fork", err)
	}
	es, err := st.Evidence(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Kind != store.EvidenceFork || len(es[0].NoteA) == 0 || len(es[0].NoteB) == 0 {
		t.Fatalf("evidence = %+v, want one fork with both signed heads", es)
	}
	if _, err := s.Once(ctx); err == nil || !strings.Contains(err.Error(), "refusing to advance") {
		t.Fatalf("sync after the fork: %v, want a refusal", err)
	}
}

// TestPoolNewestHead: a lazy mirror over an upstream with a stale head and
// one with the newest serves the newest from the start (Refresh), and a
// lookup answered with the stale head does not move it back.
func TestPoolNewestHead(t *testing.T) {
	ctx := context.Background()
	fresh, _ := newUpstream(t, 3000)
	fresh.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	stale := copyOf(t, fresh)
	stale.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultStaleHead, N: 1000})
	fresh.SetLatency(20 * time.Millisecond)
	st := newStore(t)
	s, _ := newPoolSyncer(t, st, fresh.VerifierKey(), stale, fresh)
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := servedSize(t, st); got != 3000 {
		t.Fatalf("served head %d after Refresh, want the newest, 3000", got)
	}
	fetchID(t, s, fresh, 500) // answered by the stale one, first in order
	if got := servedSize(t, st); got != 3000 {
		t.Fatalf("served head %d after a lookup with a stale head, want 3000", got)
	}
	checkProvable(t, st, fresh)
}

func servedSize(t *testing.T, st store.Store) int64 {
	t.Helper()
	h, err := st.ServedHead(context.Background(), logName)
	if err != nil {
		t.Fatal(err)
	}
	return h.Size
}
