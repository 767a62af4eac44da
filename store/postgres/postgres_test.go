package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), pgtest.NewDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDSN(t)
	for i := 0; i < 2; i++ {
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// TestConcurrentCommitsSmallPool: concurrent commits each need two
// connections (the batch and its duplicate probe); with a pool of two they
// must take turns rather than wait on each other forever.
func TestConcurrentCommitsSmallPool(t *testing.T) {
	u, err := url.Parse(pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "2")
	u.RawQuery = q.Encode()
	s, err := postgres.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.ConcurrentCommits(t, s)
}

// TestHostileRows: rows no store writes, put into the database behind the
// store's back, are errors naming the row on every read path, and every
// read gives its connection back to the pool.
func TestHostileRows(t *testing.T) {
	storetest.RunHostile(t, func(t *testing.T) storetest.Hostile {
		dsn := pgtest.NewDSN(t)
		s, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Hostile{
			Store: s,
			Exec: func(ctx context.Context, query string, args ...any) (int64, error) {
				tag, err := s.Pool().Exec(ctx, dollars(query), args...)
				return tag.RowsAffected(), err
			},
			Idle: func(ctx context.Context) error {
				// Connections come back when a call returns; background
				// work (index summaries after a commit) may hold one for
				// a moment, so wait for it with a generous deadline.
				deadline := time.Now().Add(20 * time.Second)
				for {
					n := s.Pool().Stat().AcquiredConns()
					if n == 0 {
						return nil
					}
					if time.Now().After(deadline) {
						return fmt.Errorf("the pool has %d connections acquired", n)
					}
					time.Sleep(10 * time.Millisecond)
				}
			},
		}
	})
}

// dollars numbers the ? placeholders of query as Postgres wants them.
func dollars(query string) string {
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// TestCloseWithConnectionHeld: Close returns, in a bounded time, even
// while a connection is never given back (issue 15: a leaked connection
// made SIGTERM hang in the pool's Close for as long as the process lived).
func TestCloseWithConnectionHeld(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	done := make(chan struct{})
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("Close hangs while a connection is held")
	}
}
