package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
)

// twoWriters opens two Stores on one database: a syncer's and another
// process's.
func twoWriters(t *testing.T) (a, b *Store) {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDSN(t)
	a, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if b, err = Open(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return a, b
}

func recordRange(from, n int) []store.Record {
	var rs []store.Record
	for i := from; i < from+n; i++ {
		rs = append(rs, filterRecord(i, int64(i)))
	}
	return rs
}

// TestStagedBatchOtherWriter: while a batch is staged, another process
// stores a record with one of its module@versions. The staged probes ran
// before, so the batch must find out under the log's lock: above the batch
// (the log's max_id reaches past it) or in a hole below it (only the
// generation tells).
func TestStagedBatchOtherWriter(t *testing.T) {
	for _, otherID := range []int64{5000, 150} {
		t.Run(fmt.Sprint(otherID), func(t *testing.T) {
			ctx := context.Background()
			a, b := twoWriters(t)
			w1 := a.StageCommit(ctx, "log", store.Batch{Records: recordRange(0, 100), Synced: 100, Resumable: true}, nil)
			if err := w1(); err != nil {
				t.Fatal(err)
			}
			hooked := false
			a.stagedHook = func() {
				hooked = true
				if err := b.Commit(ctx, "log", store.Batch{Records: []store.Record{filterRecord(250, otherID)}, Synced: -1}); err != nil {
					t.Error(err)
				}
			}
			// Ids 200..299: scattered, as stores allow, leaving a hole.
			err := a.StageCommit(ctx, "log", store.Batch{Records: recordRange(200, 100), Synced: -1, Resumable: true}, w1)()
			var de *store.DuplicateError
			if !hooked || !errors.As(err, &de) || de.ID != 250 || de.OtherID != otherID {
				t.Fatalf("err = %v (hook ran: %v), want a DuplicateError for 250 and %d", err, hooked, otherID)
			}
		})
	}
}

// TestStagedBatchOverlapped: while a batch is staged, another process
// stores one of its records (fetched on demand). The staged rows are
// dropped and the batch committed the ordinary way: each record once.
func TestStagedBatchOverlapped(t *testing.T) {
	ctx := context.Background()
	a, b := twoWriters(t)
	w1 := a.StageCommit(ctx, "log", store.Batch{Records: recordRange(0, 100), Synced: 100, Resumable: true}, nil)
	if err := w1(); err != nil {
		t.Fatal(err)
	}
	a.stagedHook = func() {
		if err := b.Commit(ctx, "log", store.Batch{Records: recordRange(150, 1), Synced: -1}); err != nil {
			t.Error(err)
		}
	}
	if err := a.StageCommit(ctx, "log", store.Batch{Records: recordRange(100, 100), Synced: 200, Resumable: true}, w1)(); err != nil {
		t.Fatal(err)
	}
	var rows, ids int64
	if err := a.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM records`).Scan(&rows, &ids); err != nil {
		t.Fatal(err)
	}
	if rows != 200 || ids != 200 {
		t.Fatalf("%d rows for %d ids, want 200 and 200", rows, ids)
	}
	if n, err := a.Synced(ctx, "log"); err != nil || n != 200 {
		t.Fatalf("Synced = %d, %v; want 200", n, err)
	}
}
