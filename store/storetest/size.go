package storetest

import (
	"context"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// namedCase is a case of the suite.
type namedCase struct {
	name string
	f    func(*testing.T, store.Store)
}

// sizeCases returns the cases of the capabilities store.Sizer and
// store.RecordCounter that s has.
func sizeCases(s store.Store) []namedCase {
	var cs []namedCase
	if _, ok := s.(store.Sizer); ok {
		cs = append(cs, namedCase{"SizeGrows", testSizeGrows})
	}
	if _, ok := s.(store.RecordCounter); ok {
		cs = append(cs, namedCase{"CountRecords", testCountRecords})
	}
	return cs
}

// testSizeGrows checks that a store's size is positive and grows with what
// it holds.
func testSizeGrows(t *testing.T, s store.Store) {
	ctx := context.Background()
	sz := s.(store.Sizer)
	before, err := sz.SizeBytes(ctx)
	if err != nil {
		t.Fatalf("SizeBytes of an empty store: %v", err)
	}
	if before <= 0 {
		t.Fatalf("SizeBytes of an empty store = %d, want > 0 (its schema takes room)", before)
	}
	// About 1.5 MB of records and tiles: more than any page cache or free
	// space an empty store could have set aside.
	const n = 8192
	var tiles []store.Tile
	for i := range int64(16) {
		tiles = append(tiles, store.Tile{Tile: tlog.Tile{H: store.TileHeight, L: 1, N: i, W: 256}, Data: tileData(256, "size")})
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: records(0, n), Tiles: tiles, Synced: n}); err != nil {
		t.Fatal(err)
	}
	after, err := sz.SizeBytes(ctx)
	if err != nil {
		t.Fatalf("SizeBytes: %v", err)
	}
	if after <= before {
		t.Fatalf("SizeBytes = %d after storing %d records and %d tiles, %d before: want it to grow", after, n, len(tiles), before)
	}
}

// testCountRecords checks CountRecords against what was stored: a synced
// range, records fetched on demand above it, and another log.
func testCountRecords(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := s.(store.RecordCounter)
	if n, err := c.CountRecords(ctx, logName); err != nil || n != 0 {
		t.Fatalf("CountRecords of a log not held = %d, %v; want 0", n, err)
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: records(0, 300), Synced: 300}); err != nil {
		t.Fatal(err)
	}
	var scattered []store.Record
	for _, id := range []int64{1000, 5000, 1 << 40} {
		r := record(int(id%100000)+1, "v1.0.0")
		r.ID = id
		scattered = append(scattered, r)
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: scattered, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	other := records(0, 7)
	if err := s.Commit(ctx, "other.test", store.Batch{Records: other[2:], Synced: -1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		log  string
		want int64
	}{{logName, 303}, {"other.test", 5}, {"no.such.log", 0}} {
		if n, err := c.CountRecords(ctx, tc.log); err != nil || n != tc.want {
			t.Errorf("CountRecords(%s) = %d, %v; want %d", tc.log, n, err, tc.want)
		}
	}
}
