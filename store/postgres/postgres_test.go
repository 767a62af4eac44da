package postgres_test

import (
	"context"
	"net/url"
	"testing"

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
