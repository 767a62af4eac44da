package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

// returnsWithin runs f and fails the test unless it returns within a
// generous bound: the point is that it returns at all.
func returnsWithin(t *testing.T, what string, bound time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(bound):
		t.Fatalf("%s: still waiting after %v", what, bound)
	}
}

// TestOutage: against a database that is stopped, or that accepts
// connections but answers nothing, every call made with a deadline returns
// an error that store.Unavailable recognises, releasing the sync lock
// returns, Connect succeeds without the database, and the same Store works
// again once the database is back.
func TestOutage(t *testing.T) {
	c := pgtest.NewCluster(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	unlock, err := s.LockSync(ctx, "example.test")
	if err != nil {
		t.Fatal(err)
	}

	call := func(what string) {
		t.Helper()
		returnsWithin(t, what, time.Minute, func() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := s.Logs(cctx)
			if !store.Unavailable(err) {
				t.Errorf("%s: Logs: %v, want an error store.Unavailable recognises", what, err)
			}
		})
	}

	c.Pause()
	call("paused")
	returnsWithin(t, "unlocking while paused", time.Minute, unlock)
	c.Resume()
	if _, err := s.Logs(ctx); err != nil {
		t.Fatalf("after resume: %v", err)
	}

	c.Stop()
	call("stopped")
	returnsWithin(t, "Open while stopped", time.Minute, func() {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := postgres.Open(octx, c.DSN()); !store.Unavailable(err) {
			t.Errorf("Open while stopped: %v, want an error store.Unavailable recognises", err)
		}
	})
	waiting, err := postgres.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatalf("Connect while stopped: %v", err)
	}
	defer waiting.Close()
	c.Start()
	if _, err := s.Logs(ctx); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if err := waiting.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after restart: %v", err)
	}
}

// TestCloseDuringLookup: a lookup batch whose query the database does not
// answer (paused) holds its worker until the query's own deadline (30s)
// unless Close ends it: Close returns long before, and so do the lookups
// waiting; LookupWithin gives up on its own bound with an error wrapping
// context.DeadlineExceeded.
func TestCloseDuringLookup(t *testing.T) {
	c := pgtest.NewCluster(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := store.Record{ID: 0, Path: "example.com/m", Version: "v1.0.0", Data: []byte("example.com/m v1.0.0 h1:x\nexample.com/m v1.0.0/go.mod h1:y\n")}
	if err := s.Commit(ctx, "log", store.Batch{Records: []store.Record{r}, Synced: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, "log", r.Path, r.Version, 1); err != nil {
		t.Fatal(err)
	}

	c.Pause()
	defer c.Resume()
	returnsWithin(t, "LookupWithin 1s while paused", 20*time.Second, func() {
		if _, err := s.LookupWithin(ctx, time.Second, "log", r.Path, r.Version, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("LookupWithin while paused: %v, want an error wrapping context.DeadlineExceeded", err)
		}
	})
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Lookup(ctx, "log", r.Path, r.Version, 1)
		waiting <- err
	}()
	time.Sleep(100 * time.Millisecond) // its batch (or the one before) is under way
	returnsWithin(t, "Close during a lookup", 20*time.Second, s.Close)
	returnsWithin(t, "the lookup waiting", time.Second, func() {
		if err := <-waiting; err == nil {
			t.Error("a lookup answered by a paused database")
		}
	})
}
