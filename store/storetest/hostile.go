package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Hostile is a store and a way around it, for RunHostile.
type Hostile struct {
	Store store.Store
	// Exec runs one SQL statement on the store's database directly, as a
	// hand altering the database would. Placeholders are written ?; the
	// tables and columns are those both schemas share. An error means the
	// backend's schema refuses the row (the case is then skipped); else
	// it returns the number of rows changed.
	Exec func(ctx context.Context, query string, args ...any) (int64, error)
	// Idle, if set, fails unless the store holds none of its connections:
	// every read path must give back what it took, whatever it read.
	Idle func(ctx context.Context) error
}

// Read paths RunHostile tries on every corrupted store.
const (
	readLookup      = "Lookup"
	readRecords     = "ReadRecords"    // the whole range
	readRecord      = "ReadRecord"     // the corrupted id alone
	readRecordIDs   = "RecordIDs"      // a walk from the start
	readGroupIDs    = "GroupRecordIDs" // every id, by level-0 tile
	readLeafTile    = "ReadTiles/L0"   // rebuilt from the records
	readUpperTile   = "ReadTiles/L1"   // stored
	readTiles       = "ReadTiles/both" // both in one call
	readSomeTiles   = "ReadSomeTiles"  // both, in one call
	readHeads       = "Heads"
	readHeadsAround = "HeadsAround"
	readAroundMany  = "HeadsAroundMany"
	readLatestHead  = "LatestHead"
	readServedHead  = "ServedHead"
)

// hostileRow is one kind of row no store writes.
type hostileRow struct {
	name  string
	query string // with ? for args, then one for the log's name
	args  []any
	table string // the table named in the error
	row   string // the row named in the error
	id    int64  // the record a lookup asks for
	fail  []string
}

func hostileRows() []hostileRow {
	const logRow = `log_id = (SELECT id FROM logs WHERE name = ?)`
	recordReads := []string{readLookup, readRecords, readRecord, readLeafTile, readTiles, readSomeTiles}
	headReads := []string{readHeads, readHeadsAround, readAroundMany, readLatestHead, readServedHead}
	tileReads := []string{readUpperTile, readTiles, readSomeTiles}
	setRecord := func(name, set string, args ...any) hostileRow {
		return hostileRow{name: name, query: `UPDATE records SET ` + set + ` WHERE ` + logRow + ` AND id = 5`,
			args: args, table: "records", row: "id 5", id: 5, fail: recordReads}
	}
	other := record(9999, "v1.0.0").Data
	return []hostileRow{
		setRecord("ShortHashes", `hashes = ?, raw = NULL`, []byte{1, 2, 3}),
		setRecord("LongHashes", `hashes = ?, raw = NULL`, make([]byte, store.HashesSize+1)),
		setRecord("EmptyHashes", `hashes = ?, raw = NULL`, []byte{}),
		setRecord("RawNotARecord", `hashes = NULL, raw = ?`, []byte("garbage\n")),
		setRecord("RawOfAnotherModule", `hashes = NULL, raw = ?`, other),
		setRecord("RawCanonical", `hashes = NULL, raw = ?`, record(5, "v1.0.0").Data),
		// Not found by a lookup for the version it should have.
		{name: "VersionWithSpace", query: `UPDATE records SET version = ? WHERE ` + logRow + ` AND id = 5`,
			args: []any{"v1.0.0 x"}, table: "records", row: "id 5", id: 5, fail: recordReads[1:]},
		{name: "NegativeID", query: `UPDATE records SET id = -5 WHERE ` + logRow + ` AND id = 5`,
			table: "records", row: "id -5", id: 5, fail: []string{readLookup, readRecordIDs, readGroupIDs}},
		{name: "DuplicateID", query: `INSERT INTO records (log_id, id, key, path, version, hashes, raw)
			SELECT log_id, 6, key, path, version, hashes, raw FROM records WHERE ` + logRow + ` AND id = 7`,
			table: "records", row: "id 6", id: 6, fail: []string{readRecords, readRecord, readRecordIDs, readLeafTile, readTiles}},
		{name: "TileWidthZero", query: `UPDATE tiles SET width = 0 WHERE ` + logRow + ` AND level = 1 AND idx = 0`,
			table: "tiles", row: "level 1 idx 0", id: 5, fail: tileReads},
		{name: "TileShorterThanWidth", query: `UPDATE tiles SET hashes = ? WHERE ` + logRow + ` AND level = 1 AND idx = 0`,
			args: []any{[]byte{1, 2, 3}}, table: "tiles", row: "level 1 idx 0", id: 5, fail: tileReads},
		{name: "NoteDoesNotParse", query: `UPDATE heads SET note = ? WHERE ` + logRow + ` AND size = 300`,
			args: []any{[]byte("not a signed note")}, table: "heads", row: "size 300", id: 5, fail: headReads},
		{name: "NoteOfAnotherTree", query: `UPDATE heads SET note = ? WHERE ` + logRow + ` AND size = 300`,
			args: []any{head(299).Note}, table: "heads", row: "size 300", id: 5, fail: headReads},
		{name: "HeadShortHash", query: `UPDATE heads SET hash = ? WHERE ` + logRow + ` AND size = 300`,
			args: []any{[]byte{1, 2, 3}}, table: "heads", row: "size 300", id: 5, fail: headReads},
	}
}

// RunHostile corrupts one row of a store at a time behind its back, as a
// hand with SQL (or a hostile bundle) would, and checks that every read path
// that meets the row fails with a *store.CorruptError naming the log, the
// table and the row, that no read panics, and that the store gives back
// every connection it took and goes on answering for the rows that are
// intact. open must return a new, empty store each call.
func RunHostile(t *testing.T, open func(t *testing.T) Hostile) {
	for _, hr := range hostileRows() {
		t.Run(hr.name, func(t *testing.T) {
			ctx := context.Background()
			h := open(t)
			s := h.Store
			t.Cleanup(s.Close)
			if err := s.AddHead(ctx, logName, head(300)); err != nil {
				t.Fatal(err)
			}
			upper := store.Tile{Tile: tlog.Tile{H: 8, L: 1, N: 0, W: 1}, Data: tileData(1, "upper")}
			recs := records(0, 300)
			if err := s.Commit(ctx, logName, store.Batch{Records: recs, Tiles: []store.Tile{upper}, Synced: 300, Serve: 300}); err != nil {
				t.Fatal(err)
			}
			n, err := h.Exec(ctx, hr.query, append(slices.Clip(hr.args), logName)...)
			if err != nil {
				t.Skipf("the schema refuses the row: %v", err)
			}
			if n != 1 {
				t.Fatalf("%s changed %d rows, want 1", hr.query, n)
			}
			leaf := tlog.Tile{H: 8, L: 0, N: 0, W: 256}
			reads := map[string]func() error{
				readLookup: func() error {
					_, err := s.Lookup(ctx, logName, recs[hr.id].Path, recs[hr.id].Version, 300)
					return err
				},
				readRecords: func() error { _, err := s.ReadRecords(ctx, logName, 0, 300); return err },
				readRecord: func() error {
					_, err := s.ReadRecords(ctx, logName, hr.id, 1)
					return err
				},
				readRecordIDs: func() error {
					for after := int64(-1); ; {
						ids, err := s.RecordIDs(ctx, logName, after, 100)
						if err != nil || len(ids) == 0 {
							return err
						}
						after = ids[len(ids)-1]
					}
				},
				readGroupIDs: func() error {
					g, ok := s.(store.RecordGrouper)
					if !ok {
						return errors.New("the store groups no record ids")
					}
					_, err := g.GroupRecordIDs(ctx, logName, math.MinInt64, math.MaxInt64, 8)
					return err
				},
				readLeafTile:  func() error { _, err := s.ReadTiles(ctx, logName, []tlog.Tile{leaf}); return err },
				readUpperTile: func() error { _, err := s.ReadTiles(ctx, logName, []tlog.Tile{upper.Tile}); return err },
				readTiles: func() error {
					_, err := s.ReadTiles(ctx, logName, []tlog.Tile{leaf, upper.Tile})
					return err
				},
				readSomeTiles: func() error {
					_, err := s.ReadSomeTiles(ctx, logName, []tlog.Tile{leaf, upper.Tile})
					return err
				},
				readHeads:       func() error { _, err := s.Heads(ctx, logName); return err },
				readHeadsAround: func() error { _, err := s.HeadsAround(ctx, logName, 1); return err },
				readAroundMany:  func() error { _, err := s.HeadsAroundMany(ctx, logName, []int64{1, 400}); return err },
				readLatestHead:  func() error { _, err := s.LatestHead(ctx, logName); return err },
				readServedHead:  func() error { _, err := s.ServedHead(ctx, logName); return err },
			}
			for _, name := range []string{readLookup, readRecords, readRecord, readRecordIDs, readGroupIDs, readLeafTile,
				readUpperTile, readTiles, readSomeTiles, readHeads, readHeadsAround, readAroundMany, readLatestHead, readServedHead} {
				err := noPanic(t, name, reads[name])
				if h.Idle != nil {
					if ierr := h.Idle(ctx); ierr != nil {
						t.Fatalf("after %s: %v", name, ierr)
					}
				}
				if !slices.Contains(hr.fail, name) {
					continue
				}
				var ce *store.CorruptError
				switch {
				case err == nil:
					t.Errorf("%s: no error over a corrupt row", name)
				case !errors.Is(err, store.ErrCorrupt) || !errors.As(err, &ce):
					t.Errorf("%s: err = %v, want a store.CorruptError", name, err)
				case ce.Log != logName || ce.Table != hr.table || ce.Row != hr.row:
					t.Errorf("%s: error names log %q, table %q, row %q; want %q, %q, %q", name, ce.Log, ce.Table, ce.Row, logName, hr.table, hr.row)
				default:
					for _, want := range []string{logName, hr.table, hr.row} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s: message %q does not name %q", name, err, want)
						}
					}
				}
			}
			// The rows that are intact are still served.
			intact := recs[200]
			if r, err := s.Lookup(ctx, logName, intact.Path, intact.Version, 300); err != nil || r.ID != 200 {
				t.Errorf("lookup of an intact record after the corrupt reads: %+v, %v", r, err)
			}
			if h.Idle != nil {
				if err := h.Idle(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// noPanic runs f, turning a panic into a test error.
func noPanic(t *testing.T, name string, f func() error) (err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s panicked: %v", name, p)
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f()
}
