package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
)

// TestOpenReadOnly (issue 15): a read-only open of a database without
// sumkeep's schema fails with store.ErrNotStore and creates nothing; of a
// store, it reads and refuses every write.
func TestOpenReadOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.NewDSN(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tables := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
			WHERE ns.nspname NOT IN ('pg_catalog', 'information_schema') AND ns.nspname NOT LIKE 'pg_toast%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// An empty database; then another application's.
	for _, setup := range []string{"", `CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)`} {
		if setup != "" {
			if _, err := conn.Exec(ctx, setup); err != nil {
				t.Fatal(err)
			}
		}
		before := tables()
		s, err := OpenReadOnly(ctx, dsn)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, store.ErrNotStore) {
			t.Fatalf("OpenReadOnly with %q: err = %v, want store.ErrNotStore", setup, err)
		}
		if after := tables(); after != before {
			t.Fatalf("OpenReadOnly with %q: %d relations before, %d after", setup, before, after)
		}
	}
	if _, err := conn.Exec(ctx, `DROP TABLE schema_migrations`); err != nil {
		t.Fatal(err)
	}

	// A store: read-only reads it and writes nothing.
	rw, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	h := signedLike(1)
	if err := rw.AddHead(ctx, "l", h); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	ro, err := OpenReadOnly(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got, err := ro.LatestHead(ctx, "l"); err != nil || got.Size != 1 {
		t.Fatalf("LatestHead = %+v, %v", got, err)
	}
	if err := ro.AddHead(ctx, "l", signedLike(2)); err == nil {
		t.Fatal("AddHead on a read-only store succeeded")
	}
	if err := ro.AddEvidence(ctx, "l", store.Evidence{Kind: store.EvidenceFork, Message: "m"}); err == nil {
		t.Fatal("AddEvidence on a read-only store succeeded")
	}

	// An older schema is not read: it may lack what this sumkeep reads.
	if _, err := conn.Exec(ctx, `DELETE FROM schema_migrations WHERE version > 1`); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenReadOnly(ctx, dsn); !errors.Is(err, store.ErrSchemaVersion) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("OpenReadOnly of schema version 1: err = %v, want store.ErrSchemaVersion", err)
	}
}

// signedLike returns a head of size n whose note has a tree head's form
// (the store checks that; it does not check signatures).
func signedLike(n int64) store.Head {
	h := tlog.Hash(sha256.Sum256(fmt.Append(nil, "root", n)))
	return store.Head{Size: n, Hash: h, Note: fmt.Appendf(nil, "go.sum database tree\n%d\n%s\n\n— test sig\n", n, h)}
}
