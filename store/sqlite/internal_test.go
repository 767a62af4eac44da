package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

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

// TestCommitDiskFull checks that a commit SQLite refuses for want of space
// (SQLITE_FULL, made here by capping the file's pages, as a full disk
// does) names the database file and says why, stores nothing, and that
// the store takes the same batch once it has room again.
func TestCommitDiskFull(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pages int
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages+8)); err != nil {
		t.Fatal(err)
	}
	var b store.Batch
	b.Synced = -1
	for i := range 32 { // 256 KiB of tiles: more than 8 pages
		b.Tiles = append(b.Tiles, store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: int64(i), W: 256}, Data: make([]byte, 256*32)})
	}
	const log = "example.com/log"
	err = s.Commit(ctx, log, b)
	var se *msqlite.Error
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_FULL {
		t.Fatalf("commit with the file capped: %v, want SQLITE_FULL", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "disk holding it is full") {
		t.Errorf("error %q does not name %s and say its disk is full", err, path)
	}
	if _, err := s.ReadTiles(ctx, log, []tlog.Tile{b.Tiles[0].Tile}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the failed commit, reading a tile of it: %v, want ErrNotFound", err)
	}

	if _, err := s.w.ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, log, b); err != nil {
		t.Fatalf("commit once there is room: %v", err)
	}
	got, err := s.ReadTiles(ctx, log, []tlog.Tile{b.Tiles[31].Tile})
	if err != nil || len(got) != 1 || len(got[0]) != 256*32 {
		t.Fatalf("reading a tile of the batch: %d tiles, %v", len(got), err)
	}
}
