package mirror_test

import (
	"context"
	"testing"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
)

// TestStatus: what status reports of an empty store, of a full copy and of
// a store filled on demand; and that a store that cannot be read is an
// error, not a count of zero.
func TestStatus(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	ls, err := mirror.Status(ctx, st, logName)
	if err != nil || ls.Served != nil || ls.Latest != nil || ls.Synced != 0 || ls.OnDemand != 0 || len(ls.Evidence) != 0 {
		t.Fatalf("empty store: %+v, %v", ls, err)
	}

	u, url := newUpstream(t, 1000)
	s := newSyncer(t, st, url, u.VerifierKey())
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	ls, err = mirror.Status(ctx, st, logName)
	if err != nil || ls.Served == nil || ls.Served.Size != 1000 || ls.Latest.Size != 1000 || ls.Synced != 1000 || ls.OnDemand != 0 {
		t.Fatalf("full copy: %+v, %v", ls, err)
	}

	lu, lst, ls2 := newLazy(t, 3000)
	if _, err := ls2.Once(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{5, 700, 2999} {
		fetchID(t, ls2, lu, id)
	}
	if err := lst.AddEvidence(ctx, logName, store.Evidence{Kind: store.EvidenceBadTile, Message: "test", Source: "x", Object: "tile/8/0/000"}); err != nil {
		t.Fatal(err)
	}
	got, err := mirror.Status(ctx, lst, logName)
	if err != nil || got.Synced != 0 || got.OnDemand != 3 || got.Served.Size != 3000 || len(got.Evidence) != 1 {
		t.Fatalf("lazy store: %+v, %v", got, err)
	}
	// A store that cannot count its records has them walked.
	walked, err := mirror.Status(ctx, struct{ mirror.StatusReader }{lst}, logName)
	if err != nil || walked.OnDemand != 3 {
		t.Fatalf("lazy store, records walked: %+v, %v", walked, err)
	}

	lst.Close()
	if _, err := mirror.Status(ctx, lst, logName); err == nil {
		t.Error("status of a closed store: no error")
	}
}
