package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/store"
)

// TestQueryPlans checks that the hot queries are index searches, never
// scans, on the schema the migrations make.
func TestQueryPlans(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "sumkeep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name, query string
		args        []any
		want        string
	}{
		{"lookup", lookupQuery, []any{1, 2, "a", "b", 5},
			"SEARCH records USING INDEX records_key (log_id=? AND key=? AND id<?)"},
		{"duplicate probe", probeQuery(3), []any{1, 2, 3, 4},
			"SEARCH records USING INDEX records_key (log_id=? AND key=?)"},
		{"tile", `SELECT hashes FROM tiles WHERE log_id = ? AND level = ? AND idx = ?`, []any{1, 0, 3},
			"SEARCH tiles USING INDEX sqlite_autoindex_tiles_1 (log_id=? AND level=? AND idx=?)"},
	} {
		rows, err := s.DB().QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if len(plan) == 0 || !strings.HasPrefix(plan[0], tc.want) || strings.Contains(strings.Join(plan, "\n"), "SCAN records") {
			t.Errorf("%s: plan = %q, want %q", tc.name, plan, tc.want)
		}
	}
}

// TestSynchronousPerBatch checks that a Resumable batch commits with
// synchronous=NORMAL and every other write with FULL.
func TestSynchronousPerBatch(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "sumkeep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	level := func() int {
		var n int
		if err := s.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const normal, full = 1, 2
	for _, tc := range []struct {
		b    store.Batch
		want int
	}{
		{store.Batch{Synced: -1, Resumable: true}, normal},
		{store.Batch{Synced: -1}, full},
		{store.Batch{Synced: -1, Resumable: true}, normal},
	} {
		if err := s.Commit(ctx, "l", tc.b); err != nil {
			t.Fatal(err)
		}
		if got := level(); got != tc.want {
			t.Errorf("after a batch with Resumable %v: synchronous = %d, want %d", tc.b.Resumable, got, tc.want)
		}
	}
	if err := s.AddHead(ctx, "l", store.Head{Size: 1, Note: []byte("n")}); err != nil {
		t.Fatal(err)
	}
	if got := level(); got != full {
		t.Errorf("after AddHead: synchronous = %d, want %d", got, full)
	}
}
