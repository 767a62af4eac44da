// Package storetest is the conformance suite every store.Store
// implementation runs, so that the backends behave alike.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Run runs the suite. open must return a new, empty store each call. A
// store with a capability (store.Stager, store.Sizer, store.RecordCounter) runs that capability's cases too.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	type testCase struct {
		name string
		f    func(*testing.T, store.Store)
	}
	probe := open(t)
	_, staging := probe.(store.Stager)
	var capabilities []testCase
	for _, c := range sizeCases(probe) {
		capabilities = append(capabilities, testCase(c))
	}
	probe.Close()
	if staging {
		capabilities = append(capabilities,
			testCase{"StagedInOrder", testStagedInOrder},
			testCase{"StagedServesAndExpects", testStagedServes})
	}
	for _, tc := range append([]testCase{
		{"Heads", testHeads},
		{"CommitAndRead", testCommitAndRead},
		{"RawRecords", testRawRecords},
		{"Tiles", testTiles},
		{"ManyTiles", testManyTiles},
		{"LeafTilesFromRecords", testLeafTiles},
		{"SomeTiles", testSomeTiles},
		{"DuplicateRejectsBatch", testDuplicate},
		{"DuplicateDeepInLargeBatch", testDuplicateLarge},
		{"RecordNamingAnotherModule", testOtherModule},
		{"ConcurrentCommits", ConcurrentCommits},
		{"OverlapWithStoredRecords", testOverlap},
		{"ServeNeverGoesBack", testServe},
		{"ScatteredRecords", testScattered},
		{"GroupHeadSizes", testGroupHeads},
		{"ExpectedState", testExpect},
		{"Evidence", testEvidence},
		{"Lock", testLock},
		{"LogsAreSeparate", testLogsSeparate},
		{"ClosedStoreFails", testClosed},
	}, capabilities...) {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(s.Close)
			tc.f(t, s)
		})
	}
}

const logName = "sumdb.test"

func hashOf(s string) tlog.Hash { return tlog.Hash(sha256.Sum256([]byte(s))) }

func head(n int64) store.Head {
	h := hashOf(fmt.Sprint("root", n))
	return store.Head{Size: n, Hash: h, Note: []byte(fmt.Sprintf("go.sum database tree\n%d\n%s\n\n— test sig\n", n, h))}
}

// record returns a canonical record for module i at version v.
func record(i int, v string) store.Record {
	p := fmt.Sprintf("example.com/m%d", i)
	h1 := sha256.Sum256([]byte(p + v))
	h2 := sha256.Sum256([]byte(p + v + "/go.mod"))
	data := fmt.Sprintf("%s %s h1:%s\n%s %s/go.mod h1:%s\n", p, v, base64.StdEncoding.EncodeToString(h1[:]),
		p, v, base64.StdEncoding.EncodeToString(h2[:]))
	return store.Record{Path: p, Version: v, Data: []byte(data)}
}

func records(start, n int) []store.Record {
	var rs []store.Record
	for i := start; i < start+n; i++ {
		r := record(i, "v1.0.0")
		r.ID = int64(i)
		rs = append(rs, r)
	}
	return rs
}

func tileData(w int, seed string) []byte {
	var b []byte
	for i := 0; i < w; i++ {
		h := hashOf(fmt.Sprint(seed, i))
		b = append(b, h[:]...)
	}
	return b
}

func mustNotFound(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func testHeads(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.LatestHead(ctx, logName)
	mustNotFound(t, err, "LatestHead of empty store")
	_, err = s.ServedHead(ctx, logName)
	mustNotFound(t, err, "ServedHead of empty store")
	if a, err := s.HeadsAround(ctx, logName, 10); err != nil || a != (store.Around{}) {
		t.Fatalf("HeadsAround of empty store = %+v, %v", a, err)
	}
	for _, n := range []int64{10, 5, 20} {
		if err := s.AddHead(ctx, logName, head(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddHead(ctx, logName, head(10)); err != nil {
		t.Fatalf("re-adding the same head: %v", err)
	}
	bad := head(10)
	bad.Hash = hashOf("other")
	if err := s.AddHead(ctx, logName, bad); err == nil {
		t.Fatal("adding a head of a stored size with another hash succeeded")
	}
	latest, err := s.LatestHead(ctx, logName)
	if err != nil || latest.Size != 20 || latest.Hash != head(20).Hash || !bytes.Equal(latest.Note, head(20).Note) {
		t.Fatalf("LatestHead = %+v, %v", latest, err)
	}
	if latest.FirstSeen.IsZero() {
		t.Error("FirstSeen not set")
	}
	hs, err := s.Heads(ctx, logName)
	if err != nil || len(hs) != 3 || hs[0].Size != 5 || hs[1].Size != 10 || hs[2].Size != 20 {
		t.Fatalf("Heads = %v, %v", hs, err)
	}
	size := func(h *store.Head) int64 {
		if h == nil {
			return -1
		}
		return h.Size
	}
	for _, c := range []struct{ n, pred, at, succ int64 }{
		{10, 5, 10, 20}, {7, 5, -1, 10}, {3, -1, -1, 5}, {5, -1, 5, 10}, {20, 10, 20, -1}, {25, 20, -1, -1},
	} {
		a, err := s.HeadsAround(ctx, logName, c.n)
		if err != nil {
			t.Fatalf("HeadsAround %d: %v", c.n, err)
		}
		if size(a.Pred) != c.pred || size(a.At) != c.at || size(a.Succ) != c.succ || size(a.Latest) != 20 {
			t.Errorf("HeadsAround %d = pred %d at %d succ %d latest %d, want %d %d %d 20",
				c.n, size(a.Pred), size(a.At), size(a.Succ), size(a.Latest), c.pred, c.at, c.succ)
		}
		if a.At != nil && (a.At.Hash != head(c.n).Hash || !bytes.Equal(a.At.Note, head(c.n).Note)) {
			t.Errorf("HeadsAround %d: At = %+v, want the stored head", c.n, a.At)
		}
	}
	// Many sizes at once: each as HeadsAround gives it, in order,
	// repeats included.
	around := []int64{25, 3, 10, 7, 20, 5, 10}
	many, err := s.HeadsAroundMany(ctx, logName, around)
	if err != nil || len(many) != len(around) {
		t.Fatalf("HeadsAroundMany %v = %d results, %v", around, len(many), err)
	}
	for i, n := range around {
		one, err := s.HeadsAround(ctx, logName, n)
		if err != nil {
			t.Fatal(err)
		}
		a := many[i]
		if size(a.Pred) != size(one.Pred) || size(a.At) != size(one.At) || size(a.Succ) != size(one.Succ) || size(a.Latest) != size(one.Latest) {
			t.Errorf("HeadsAroundMany, size %d = pred %d at %d succ %d latest %d; HeadsAround gives %d %d %d %d",
				n, size(a.Pred), size(a.At), size(a.Succ), size(a.Latest), size(one.Pred), size(one.At), size(one.Succ), size(one.Latest))
		}
	}
	if many, err := s.HeadsAroundMany(ctx, logName, nil); err != nil || len(many) != 0 {
		t.Errorf("HeadsAroundMany of no sizes = %v, %v", many, err)
	}
	if many, err := s.HeadsAroundMany(ctx, "sumdb.other", []int64{1, 2}); err != nil || len(many) != 2 || many[0] != (store.Around{}) {
		t.Errorf("HeadsAroundMany of a log not stored = %v, %v", many, err)
	}

	_, err = s.ServedHead(ctx, logName)
	mustNotFound(t, err, "ServedHead before any is served")

	// Several heads in one call: all of them or none.
	conflict := head(30)
	conflict.Hash = hashOf("other")
	if err := s.AddHead(ctx, logName, head(25), head(30), conflict, head(10)); err == nil {
		t.Fatal("adding heads, two of one size with different hashes, succeeded")
	}
	if err := s.AddHead(ctx, logName, head(25), head(10), bad); err == nil {
		t.Fatal("adding heads, one of a stored size with another hash, succeeded")
	}
	if hs, err := s.Heads(ctx, logName); err != nil || len(hs) != 3 {
		t.Fatalf("after failed AddHead of several: Heads = %v, %v; want the 3 stored before", hs, err)
	}
	if err := s.AddHead(ctx, logName, head(40), head(25), head(10), head(30), head(25)); err != nil {
		t.Fatalf("adding several heads: %v", err)
	}
	hs, err = s.Heads(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, h := range hs {
		if h.Hash != head(h.Size).Hash || !bytes.Equal(h.Note, head(h.Size).Note) {
			t.Errorf("head %d stored as %+v", h.Size, h)
		}
		sizes = append(sizes, h.Size)
	}
	if want := []int64{5, 10, 20, 25, 30, 40}; !slices.Equal(sizes, want) {
		t.Errorf("heads stored: %v, want %v", sizes, want)
	}
	if err := s.AddHead(ctx, logName); err != nil {
		t.Errorf("adding no head: %v", err)
	}
}

func testCommitAndRead(t *testing.T, s store.Store) {
	ctx := context.Background()
	if n, err := s.Synced(ctx, logName); err != nil || n != 0 {
		t.Fatalf("Synced of empty store = %d, %v", n, err)
	}
	if err := s.AddHead(ctx, logName, head(300)); err != nil {
		t.Fatal(err)
	}
	tile := store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: 0, W: 256}, Data: tileData(256, "t0")}
	if err := s.Commit(ctx, logName, store.Batch{Records: records(0, 256), Tiles: []store.Tile{tile}, Synced: 256, Resumable: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: records(256, 44), Synced: 300, Serve: 300}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Synced(ctx, logName); err != nil || n != 300 {
		t.Fatalf("Synced = %d, %v", n, err)
	}
	served, err := s.ServedHead(ctx, logName)
	if err != nil || served.Size != 300 || !bytes.Equal(served.Note, head(300).Note) {
		t.Fatalf("ServedHead = %+v, %v", served, err)
	}
	want := record(123, "v1.0.0")
	r, err := s.Lookup(ctx, logName, want.Path, want.Version, 300)
	if err != nil || r.ID != 123 || !bytes.Equal(r.Data, want.Data) || r.Path != want.Path || r.Version != want.Version {
		t.Fatalf("Lookup = %+v, %v", r, err)
	}
	_, err = s.Lookup(ctx, logName, want.Path, want.Version, 123)
	mustNotFound(t, err, "Lookup of a record at maxID")
	_, err = s.Lookup(ctx, logName, want.Path, "v1.0.1", 300)
	mustNotFound(t, err, "Lookup of an unknown version")
	_, err = s.Lookup(ctx, "no.such.log", want.Path, want.Version, 300)
	mustNotFound(t, err, "Lookup in an unknown log")

	rs, err := s.ReadRecords(ctx, logName, 250, 50)
	if err != nil || len(rs) != 50 {
		t.Fatalf("ReadRecords = %d records, %v", len(rs), err)
	}
	for i, r := range rs {
		w := records(250+i, 1)[0]
		if r.ID != w.ID || !bytes.Equal(r.Data, w.Data) || r.Path != w.Path || r.Version != w.Version {
			t.Fatalf("ReadRecords[%d] = %+v, want %+v", i, r, w)
		}
	}
	_, err = s.ReadRecords(ctx, logName, 290, 11)
	mustNotFound(t, err, "ReadRecords past the end")

	// Record ids must ascend.
	bad := records(400, 3)
	bad[2].ID = 401
	if err := s.Commit(ctx, logName, store.Batch{Records: bad, Synced: -1}); err == nil {
		t.Fatal("Commit of records whose ids do not ascend succeeded")
	}
	bad = records(400, 1)
	bad[0].ID = -1
	if err := s.Commit(ctx, logName, store.Batch{Records: bad, Synced: -1}); err == nil {
		t.Fatal("Commit of a record with a negative id succeeded")
	}
	// A record must name the path and version its bytes name.
	bad = records(400, 1)
	bad[0].Path = "example.com/other"
	if err := s.Commit(ctx, logName, store.Batch{Records: bad, Synced: -1}); err == nil {
		t.Fatal("Commit of a record with the wrong path succeeded")
	}
}

func testRawRecords(t *testing.T, s store.Store) {
	ctx := context.Background()
	canon := record(1, "v1.2.3").Data
	raws := [][]byte{
		append(bytes.TrimSuffix(canon, []byte("\n")), " \n"...), // trailing white space
		[]byte("example.com/m2 v1.0.0 h1:AAAA\nexample.com/m2 v1.0.0/go.mod h1:BBBB\n"),
		[]byte("not a go.sum line\n"),
		canon,
	}
	var rs []store.Record
	for i, d := range raws {
		p, v := store.RecordModule(d)
		rs = append(rs, store.Record{ID: int64(i), Path: p, Version: v, Data: d})
	}
	rs[3] = record(3, "v0.0.0-20240101000000-abcdef123456")
	rs[3].ID = 3
	if err := s.Commit(ctx, logName, store.Batch{Records: rs, Synced: 4}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadRecords(ctx, logName, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if !bytes.Equal(got[i].Data, rs[i].Data) {
			t.Errorf("record %d: got %q, want %q", i, got[i].Data, rs[i].Data)
		}
	}
	r, err := s.Lookup(ctx, logName, "example.com/m2", "v1.0.0", 10)
	if err != nil || !bytes.Equal(r.Data, raws[1]) {
		t.Fatalf("Lookup of raw record = %q, %v", r.Data, err)
	}
}

func testTiles(t *testing.T, s store.Store) {
	ctx := context.Background()
	narrow := store.Tile{Tile: tlog.Tile{H: 8, L: 1, N: 3, W: 10}, Data: tileData(10, "x")}
	if err := s.Commit(ctx, logName, store.Batch{Tiles: []store.Tile{narrow}, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	read := func(w int) ([]byte, error) {
		d, err := s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 1, N: 3, W: w}})
		if err != nil {
			return nil, err
		}
		return d[0], nil
	}
	if d, err := read(10); err != nil || !bytes.Equal(d, narrow.Data) {
		t.Fatalf("ReadTiles(W=10) = %d bytes, %v", len(d), err)
	}
	if d, err := read(4); err != nil || !bytes.Equal(d, narrow.Data[:4*32]) {
		t.Fatalf("ReadTiles(W=4) = %d bytes, %v", len(d), err)
	}
	_, err := read(11)
	mustNotFound(t, err, "ReadTiles wider than stored")

	wide := store.Tile{Tile: tlog.Tile{H: 8, L: 1, N: 3, W: 256}, Data: tileData(256, "x")}
	other := store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: 3, W: 256}, Data: tileData(256, "level0")}
	if err := s.Commit(ctx, logName, store.Batch{Tiles: []store.Tile{wide, other}, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	// A narrower tile never replaces a wider one.
	if err := s.Commit(ctx, logName, store.Batch{Tiles: []store.Tile{narrow}, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	d, err := s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 0, N: 3, W: 256}, {H: 8, L: 1, N: 3, W: 256}, {H: 8, L: 1, N: 3, W: 7}})
	if err != nil || !bytes.Equal(d[0], other.Data) || !bytes.Equal(d[1], wide.Data) || !bytes.Equal(d[2], wide.Data[:7*32]) {
		t.Fatalf("ReadTiles after widening: %v", err)
	}
	_, err = s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 1, N: 3, W: 1}, {H: 8, L: 2, N: 0, W: 1}})
	mustNotFound(t, err, "ReadTiles with one missing tile")

	bad := store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: 9, W: 2}, Data: tileData(3, "y")}
	if err := s.Commit(ctx, logName, store.Batch{Tiles: []store.Tile{bad}, Synced: -1}); err == nil {
		t.Fatal("Commit of a tile with the wrong data length succeeded")
	}
}

// testManyTiles: a batch of many tiles (as a seed's group of records
// fetched on demand carries) adds the new ones, widens those stored
// narrower, leaves those stored wider, and of one tile given twice keeps
// the widest.
func testManyTiles(t *testing.T, s store.Store) {
	ctx := context.Background()
	tile := func(n int64, w int) store.Tile {
		return store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: n, W: w}, Data: tileData(w, fmt.Sprint("tile", n))}
	}
	var first []store.Tile
	for n := range int64(40) {
		w := 256
		if n%2 == 0 {
			w = 10
		}
		first = append(first, tile(n, w))
	}
	first = append(first, store.Tile{Tile: tlog.Tile{H: 8, L: 1, N: 0, W: 40}, Data: tileData(40, "up")})
	if err := s.Commit(ctx, logName, store.Batch{Tiles: first, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	want := make(map[int64]store.Tile)
	for _, tl := range first[:40] {
		want[tl.Tile.N] = tl
	}
	var second []store.Tile
	for n := range int64(60) {
		switch {
		case n < 20: // wider than stored (even n), or as wide (odd n)
			second = append(second, tile(n, 256))
			want[n] = tile(n, 256)
		case n < 40: // narrower than stored, or as narrow: no change
			second = append(second, tile(n, 5))
		case n == 50: // given twice: the widest is kept
			second = append(second, tile(n, 100), tile(n, 256), tile(n, 3))
			want[n] = tile(n, 256)
		default:
			second = append(second, tile(n, 200))
			want[n] = tile(n, 200)
		}
	}
	if err := s.Commit(ctx, logName, store.Batch{Tiles: second, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	var ask []tlog.Tile
	for n := range int64(60) {
		ask = append(ask, want[n].Tile)
	}
	ask = append(ask, tlog.Tile{H: 8, L: 1, N: 0, W: 40})
	got, err := s.ReadTiles(ctx, logName, ask)
	if err != nil {
		t.Fatal(err)
	}
	for n := range int64(60) {
		if !bytes.Equal(got[n], want[n].Data) {
			t.Errorf("tile 0/%d: got %d bytes, want the %d-wide tile's %d", n, len(got[n]), want[n].Tile.W, len(want[n].Data))
		}
	}
	if !bytes.Equal(got[60], tileData(40, "up")) {
		t.Errorf("tile 1/0: not as stored")
	}
	for _, n := range []int64{0, 20, 50} {
		_, err := s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 0, N: n, W: want[n].Tile.W + 1}})
		mustNotFound(t, err, fmt.Sprintf("ReadTiles of 0/%d wider than stored", n))
	}
}

// testLeafTiles: a level-0 tile that is not stored is rebuilt from the
// records under it, if they are all stored; a stored one is read as stored.
func testLeafTiles(t *testing.T, s store.Store) {
	ctx := context.Background()
	recs := records(0, 300)
	if err := s.Commit(ctx, logName, store.Batch{Records: recs, Synced: 300}); err != nil {
		t.Fatal(err)
	}
	leaves := func(rs []store.Record) []byte {
		var b []byte
		for _, r := range rs {
			h := tlog.RecordHash(r.Data)
			b = append(b, h[:]...)
		}
		return b
	}
	stored := store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: 2, W: 4}, Data: tileData(4, "stored")}
	scattered := append(records(768, 1), records(770, 1)...)
	if err := s.Commit(ctx, logName, store.Batch{Records: scattered, Tiles: []store.Tile{stored}, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	full, part := tlog.Tile{H: 8, L: 0, N: 0, W: 256}, tlog.Tile{H: 8, L: 0, N: 1, W: 44}
	for _, ts := range [][]tlog.Tile{{full}, {part}, {full, part, stored.Tile}} {
		d, err := s.ReadTiles(ctx, logName, ts)
		if err != nil {
			t.Fatalf("ReadTiles(%v): %v", ts, err)
		}
		for i, tl := range ts {
			want := stored.Data
			if tl != stored.Tile {
				want = leaves(recs[tl.N*256 : tl.N*256+int64(tl.W)])
			}
			if !bytes.Equal(d[i], want) {
				t.Fatalf("ReadTiles(%v): tile %s is not the leaf hashes of its records", ts, tl.Path())
			}
		}
	}
	if d, err := s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 0, N: 0, W: 3}}); err != nil || !bytes.Equal(d[0], leaves(recs[:3])) {
		t.Fatalf("ReadTiles of a narrower rebuilt tile: %v", err)
	}
	_, err := s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 0, N: 1, W: 45}})
	mustNotFound(t, err, "ReadTiles of a level-0 tile wider than its stored records")
	_, err = s.ReadTiles(ctx, logName, []tlog.Tile{full, {H: 8, L: 0, N: 3, W: 3}})
	mustNotFound(t, err, "ReadTiles of a level-0 tile over a gap in the records")
	_, err = s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 1, N: 0, W: 1}})
	mustNotFound(t, err, "ReadTiles of a level-1 tile not stored")
}

// testSomeTiles: ReadSomeTiles answers, for each tile of a list, what
// ReadTiles answers for that tile alone, and nil where ReadTiles would not
// find it, whatever else the list holds.
func testSomeTiles(t *testing.T, s store.Store) {
	ctx := context.Background()
	some, err := s.ReadSomeTiles(ctx, logName, []tlog.Tile{{H: 8, L: 1, N: 0, W: 1}, {H: 8, L: 0, N: 0, W: 1}})
	if err != nil || len(some) != 2 || some[0] != nil || some[1] != nil {
		t.Fatalf("ReadSomeTiles of a log the store does not hold = %d tiles, %v; want 2 nil", len(some), err)
	}
	recs := records(0, 300)
	if err := s.Commit(ctx, logName, store.Batch{Records: recs, Synced: 300}); err != nil {
		t.Fatal(err)
	}
	scattered := append(records(768, 1), records(770, 1)...)
	stored := []store.Tile{
		{Tile: tlog.Tile{H: 8, L: 1, N: 3, W: 10}, Data: tileData(10, "x")},
		{Tile: tlog.Tile{H: 8, L: 0, N: 2, W: 4}, Data: tileData(4, "stored")},
		{Tile: tlog.Tile{H: 8, L: 2, N: 0, W: 256}, Data: tileData(256, "top")},
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: scattered, Tiles: stored, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	tiles := []tlog.Tile{
		{H: 8, L: 1, N: 3, W: 4},    // sliced from a stored tile
		{H: 8, L: 1, N: 3, W: 11},   // wider than stored
		{H: 8, L: 0, N: 0, W: 256},  // rebuilt from its records
		{H: 8, L: 0, N: 3, W: 3},    // over a gap in the records
		{H: 8, L: 0, N: 2, W: 4},    // stored, over records not stored
		{H: 8, L: 0, N: 2, W: 5},    // wider than stored, records not stored
		{H: 8, L: 7, N: 0, W: 1},    // not stored
		{H: 8, L: -1, N: 0, W: 256}, // a data tile: never stored
		{H: 2, L: 1, N: 3, W: 4},    // another height
		{H: 8, L: 0, N: 1, W: 44},   // rebuilt, partial
		{H: 8, L: 0, N: 1, W: 45},   // wider than its records
		{H: 8, L: 2, N: 0, W: 256},  // stored
		{H: 8, L: 0, N: 0, W: 256},  // asked twice
		{H: 8, L: 0, N: 3, W: 1},    // its one record stored, above the full-sync cursor: not rebuilt
	}
	some, err = s.ReadSomeTiles(ctx, logName, tiles)
	if err != nil {
		t.Fatalf("ReadSomeTiles: %v", err)
	}
	if len(some) != len(tiles) {
		t.Fatalf("ReadSomeTiles returned %d tiles for %d", len(some), len(tiles))
	}
	held := 0
	for i, tl := range tiles {
		one, err := s.ReadTiles(ctx, logName, []tlog.Tile{tl})
		if errors.Is(err, store.ErrNotFound) {
			if some[i] != nil {
				t.Errorf("ReadSomeTiles: tile %d (%s, L=%d W=%d) = %d bytes; ReadTiles does not find it", i, tl.Path(), tl.L, tl.W, len(some[i]))
			}
			continue
		}
		if err != nil {
			t.Fatalf("ReadTiles(%s): %v", tl.Path(), err)
		}
		held++
		if !bytes.Equal(some[i], one[0]) {
			t.Errorf("ReadSomeTiles: tile %d (%s, L=%d W=%d) = %d bytes, ReadTiles %d bytes, or they differ", i, tl.Path(), tl.L, tl.W, len(some[i]), len(one[0]))
		}
	}
	// Above the full-sync cursor, level-0 tiles are read as stored, never
	// rebuilt from records (those stored on demand come with theirs).
	if held != 6 {
		t.Errorf("ReadTiles found %d of the tiles, want 6 (the suite's own check)", held)
	}
	if some, err := s.ReadSomeTiles(ctx, logName, nil); err != nil || len(some) != 0 {
		t.Fatalf("ReadSomeTiles of no tiles = %d, %v", len(some), err)
	}
}

func testDuplicate(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Commit(ctx, logName, store.Batch{Records: records(0, 10), Synced: 10}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, b store.Batch, wantID, wantOther int64) {
		t.Helper()
		err := s.Commit(ctx, logName, b)
		var de *store.DuplicateError
		if !errors.As(err, &de) || !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("%s: err = %v, want a DuplicateError", name, err)
		}
		if de.ID != wantID || de.OtherID != wantOther || de.Path != "example.com/m4" {
			t.Errorf("%s: %+v", name, de)
		}
		if n, _ := s.Synced(ctx, logName); n != 10 {
			t.Errorf("%s: cursor moved to %d", name, n)
		}
		_, err = s.ReadRecords(ctx, logName, 10, 1)
		mustNotFound(t, err, name+": a record of the rejected batch")
		_, err = s.ReadTiles(ctx, logName, []tlog.Tile{{H: 8, L: 0, N: 0, W: 12}})
		mustNotFound(t, err, name+": a tile of the rejected batch")
	}
	tile := []store.Tile{{Tile: tlog.Tile{H: 8, L: 0, N: 0, W: 12}, Data: tileData(12, "d")}}
	// Against a stored record, with another hash.
	b := records(10, 2)
	dup := record(4, "v1.0.0")
	dup.Data = bytes.Replace(dup.Data, []byte(" h1:"), []byte(" h1:A"), 1)
	dup.Data = bytes.Replace(dup.Data, []byte("=\n"), []byte("\n"), 1) // same length, other hash
	dup.ID = 11
	b[1] = dup
	check("against stored", store.Batch{Records: b, Tiles: tile, Synced: 12}, 11, 4)
	// Within one batch.
	b = records(10, 2)
	b[0] = record(4, "v1.0.0")
	b[0].ID = 10
	b[1] = record(4, "v1.0.0")
	b[1].ID = 11
	check("within batch", store.Batch{Records: b, Tiles: tile, Synced: 12}, 11, 10)
}

// testDuplicateLarge hides a duplicate of a stored record deep in a batch
// larger than any chunk a store checks at once.
func testDuplicateLarge(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Commit(ctx, logName, store.Batch{Records: records(0, 10), Synced: 10}); err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	b := records(10, n)
	for _, at := range []int{n - 1, 9_000} {
		b := slices.Clone(b)
		id := b[at].ID
		b[at] = record(7, "v1.0.0")
		b[at].ID = id
		err := s.Commit(ctx, logName, store.Batch{Records: b, Synced: 10 + n})
		var de *store.DuplicateError
		if !errors.As(err, &de) || de.ID != id || de.OtherID != 7 {
			t.Fatalf("duplicate at %d: err = %v, want a DuplicateError for %d and 7", at, err, id)
		}
		if c, _ := s.Synced(ctx, logName); c != 10 {
			t.Fatalf("cursor moved to %d", c)
		}
		_, err = s.ReadRecords(ctx, logName, 10, 1)
		mustNotFound(t, err, "a record of the rejected batch")
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: b, Synced: 10 + n}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadRecords(ctx, logName, 10+n-1, 1)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, b[n-1].Data) {
		t.Fatalf("last record: %v, %v", got, err)
	}
}

// testOtherModule commits a record whose bytes name another module than
// the one it is filed under: the batch is rejected whole.
func testOtherModule(t *testing.T, s store.Store) {
	ctx := context.Background()
	b := records(0, 300)
	b[200].Path = "example.com/m9999"
	err := s.Commit(ctx, logName, store.Batch{Records: b, Synced: 300})
	if err == nil || !strings.Contains(err.Error(), "record 200 names example.com/m200@v1.0.0, not example.com/m9999@v1.0.0") {
		t.Fatalf("err = %v, want record 200 named as another module", err)
	}
	if n, _ := s.Synced(ctx, logName); n != 0 {
		t.Errorf("cursor moved to %d", n)
	}
	_, err = s.ReadRecords(ctx, logName, 0, 1)
	mustNotFound(t, err, "a record of the rejected batch")
}

// ConcurrentCommits commits from many goroutines at once, as lazy fetches
// do: every commit ends (none waits forever for a connection or a lock),
// and of two commits of one module@version under different ids exactly one
// is stored. Stores with small connection pools run it too.
func ConcurrentCommits(t *testing.T, s store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 24
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := record(100+i, "v1.0.0")
			r.ID = int64(1000 + i*7)
			if i >= n-2 { // the last two: one module@version, two ids
				r = record(99, "v1.0.0")
				r.ID = int64(5000 + i)
			}
			tiles := []store.Tile{{Tile: tlog.Tile{H: 8, L: 1, N: int64(i), W: 1}, Data: tileData(1, fmt.Sprint(i))}}
			errs[i] = s.Commit(ctx, logName, store.Batch{Records: []store.Record{r}, Tiles: tiles, Synced: -1})
		})
	}
	wg.Wait()
	for i, err := range errs[:n-2] {
		if err != nil {
			t.Errorf("commit %d: %v", i, err)
		}
	}
	var stored int
	for _, err := range errs[n-2:] {
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, store.ErrDuplicate):
			t.Errorf("commit of the shared module@version: %v", err)
		}
	}
	if stored != 1 {
		t.Errorf("a module@version committed concurrently under two ids was stored %d times, want once", stored)
	}
	for i := range n - 2 {
		got, err := s.ReadRecords(ctx, logName, int64(1000+i*7), 1)
		if want := record(100+i, "v1.0.0").Data; err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, want) {
			t.Errorf("record %d: %v, %v", 1000+i*7, got, err)
		}
	}
}

func testOverlap(t *testing.T, s store.Store) {
	ctx := context.Background()
	// A record fetched on its own (as lazy mode does) ...
	if err := s.Commit(ctx, logName, store.Batch{Records: records(5, 1), Synced: -1}); err != nil {
		t.Fatal(err)
	}
	// ... is accepted again, unchanged, by a full sync of its range.
	if err := s.Commit(ctx, logName, store.Batch{Records: records(0, 10), Synced: 10}); err != nil {
		t.Fatal(err)
	}
	rs, err := s.ReadRecords(ctx, logName, 0, 10)
	if err != nil || len(rs) != 10 {
		t.Fatalf("ReadRecords = %d, %v", len(rs), err)
	}
	// Other bytes for a stored id are refused.
	b := records(10, 1)
	b[0] = record(99, "v1.0.0")
	b[0].ID = 3
	if err := s.Commit(ctx, logName, store.Batch{Records: b, Synced: -1}); err == nil {
		t.Fatal("Commit of other bytes for a stored id succeeded")
	}
}

func testServe(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Commit(ctx, logName, store.Batch{Synced: -1, Serve: 7}); err == nil {
		t.Fatal("serving a head that is not stored succeeded")
	}
	for _, n := range []int64{7, 9} {
		if err := s.AddHead(ctx, logName, head(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, logName, store.Batch{Synced: -1, Serve: 9}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: records(0, 1), Synced: 1, Serve: 7}); err == nil {
		t.Fatal("serving an older head succeeded")
	}
	if n, _ := s.Synced(ctx, logName); n != 0 {
		t.Fatalf("failed batch moved the cursor to %d", n)
	}
	if h, err := s.ServedHead(ctx, logName); err != nil || h.Size != 9 {
		t.Fatalf("ServedHead = %d, %v", h.Size, err)
	}
}

func testEvidence(t *testing.T, s store.Store) {
	ctx := context.Background()
	if es, err := s.Evidence(ctx, logName); err != nil || len(es) != 0 {
		t.Fatalf("Evidence of empty store = %v, %v", es, err)
	}
	e1 := store.Evidence{Kind: store.EvidenceFork, Message: "heads 5 and 9 disagree", NoteA: head(5).Note, NoteB: head(9).Note}
	e2 := store.Evidence{Kind: store.EvidenceBadRecord, Message: "record 3", Data: []byte("x\n")}
	for _, e := range []store.Evidence{e1, e2} {
		if err := s.AddEvidence(ctx, logName, e); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.Evidence(ctx, logName)
	if err != nil || len(es) != 2 {
		t.Fatalf("Evidence = %v, %v", es, err)
	}
	if es[0].Kind != e1.Kind || es[0].Message != e1.Message || !bytes.Equal(es[0].NoteA, e1.NoteA) || !bytes.Equal(es[0].NoteB, e1.NoteB) || es[0].CreatedAt.IsZero() {
		t.Errorf("evidence 0 = %+v", es[0])
	}
	if es[1].Kind != e2.Kind || !bytes.Equal(es[1].Data, e2.Data) || es[1].Count != 1 {
		t.Errorf("evidence 1 = %+v", es[1])
	}

	// Evidence with an object is kept once per kind, source and object:
	// seen again, it counts, and keeps the bytes seen first.
	sig := store.Evidence{Kind: store.EvidenceBadSig, Message: "bad signature", Source: "https://a.example", Object: "signed tree head", NoteA: []byte("note 1")}
	for i := range 5 {
		e := sig
		e.NoteA = []byte(fmt.Sprint("note ", i+1))
		if err := s.AddEvidence(ctx, logName, e); err != nil {
			t.Fatal(err)
		}
	}
	other := sig
	other.Source = "https://b.example"
	if err := s.AddEvidence(ctx, logName, other); err != nil {
		t.Fatal(err)
	}
	es, err = s.Evidence(ctx, logName)
	if err != nil || len(es) != 4 {
		t.Fatalf("after 5 + 1 bad signatures from two sources: %d evidence, %v; want 4", len(es), err)
	}
	a, b := es[2], es[3]
	if a.Source != sig.Source || a.Object != sig.Object || a.Count != 5 || string(a.NoteA) != "note 1" ||
		a.LastSeen.Before(a.CreatedAt) || a.Kind != store.EvidenceBadSig || a.Message != sig.Message {
		t.Errorf("evidence seen five times = %+v", a)
	}
	if b.Source != other.Source || b.Count != 1 {
		t.Errorf("evidence of another source = %+v", b)
	}
}

func testLock(t *testing.T, s store.Store) {
	ctx := context.Background()
	unlock, err := s.LockSync(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LockSync(ctx, logName); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second LockSync: err = %v, want ErrLocked", err)
	}
	other, err := s.LockSync(ctx, "other.log")
	if err != nil {
		t.Fatalf("lock of another log: %v", err)
	}
	other()
	unlock()
	unlock2, err := s.LockSync(ctx, logName)
	if err != nil {
		t.Fatalf("LockSync after unlock: %v", err)
	}
	unlock2()
}

func testLogsSeparate(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Commit(ctx, "a.log", store.Batch{Records: records(0, 3), Synced: 3}); err != nil {
		t.Fatal(err)
	}
	// The same module@version in another log is no duplicate.
	if err := s.Commit(ctx, "b.log", store.Batch{Records: records(0, 2), Synced: 2}); err != nil {
		t.Fatal(err)
	}
	logs, err := s.Logs(ctx)
	if err != nil || len(logs) != 2 || logs[0] != "a.log" || logs[1] != "b.log" {
		t.Fatalf("Logs = %v, %v", logs, err)
	}
	if n, _ := s.Synced(ctx, "b.log"); n != 2 {
		t.Fatalf("Synced(b.log) = %d", n)
	}
	_, err = s.ReadRecords(ctx, "b.log", 2, 1)
	mustNotFound(t, err, "record 2 of b.log")
}

func testClosed(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := record(1, "v1.0.0")
	r.ID = 0
	if err := s.Commit(ctx, logName, store.Batch{Records: []store.Record{r}, Synced: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, logName, r.Path, r.Version, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	done := make(chan error, 1)
	go func() {
		_, err := s.Lookup(ctx, logName, r.Path, r.Version, 1)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Lookup on a closed store succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lookup on a closed store hangs")
	}
	go func() {
		_, err := s.ReadSomeTiles(ctx, logName, []tlog.Tile{{H: 8, L: 0, N: 0, W: 1}})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ReadSomeTiles on a closed store succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadSomeTiles on a closed store hangs")
	}
}

// testScattered writes records with scattered ids, as on-demand fetches do.
// testGroupHeadSizes: a store that groups heads returns the smallest size
// of each group of (size-1) >> shift, within the range asked.
func testGroupHeads(t *testing.T, s store.Store) {
	g, ok := s.(store.HeadGrouper)
	if !ok {
		t.Skip("the store does not group heads")
	}
	ctx := context.Background()
	for _, n := range []int64{1, 256, 257, 300, 65536, 65537, 70000} {
		if err := s.AddHead(ctx, logName, head(n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		lo, hi int64
		shift  uint
		want   string
	}{
		{1, math.MaxInt64, 8, "[1 257 65536 65537 70000]"},
		{1, math.MaxInt64, 16, "[1 65537]"},
		{257, 65537, 8, "[257 65536]"},
		{300, math.MaxInt64, 0, "[300 65536 65537 70000]"},
		{70001, math.MaxInt64, 8, "[]"},
	} {
		got, err := g.GroupHeadSizes(ctx, logName, c.lo, c.hi, c.shift)
		if err != nil || fmt.Sprint(got) != c.want {
			t.Errorf("GroupHeadSizes(%d, %d, %d) = %v, %v; want %s", c.lo, c.hi, c.shift, got, err, c.want)
		}
	}
	if got, err := g.GroupHeadSizes(ctx, "no.such.log", 1, 10, 8); err != nil || len(got) != 0 {
		t.Errorf("GroupHeadSizes of an unknown log = %v, %v", got, err)
	}
}

func testScattered(t *testing.T, s store.Store) {
	ctx := context.Background()
	ids := []int64{3, 700, 701, 90000, 1 << 40}
	var b []store.Record
	for _, id := range ids {
		r := record(int(id%100000), "v1.0.0")
		r.ID = id
		b = append(b, r)
	}
	if err := s.Commit(ctx, logName, store.Batch{Records: b[1:4], Synced: -1}); err != nil {
		t.Fatal(err)
	}
	// Overlapping a stored record with the same bytes is fine, and the
	// cursor stays where it was.
	if err := s.Commit(ctx, logName, store.Batch{Records: []store.Record{b[0], b[2], b[4]}, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Synced(ctx, logName); err != nil || n != 0 {
		t.Fatalf("Synced = %d, %v", n, err)
	}
	for _, r := range b {
		got, err := s.Lookup(ctx, logName, r.Path, r.Version, 1<<41)
		if err != nil || got.ID != r.ID || !bytes.Equal(got.Data, r.Data) {
			t.Fatalf("Lookup %s = %+v, %v", r.Path, got, err)
		}
		rs, err := s.ReadRecords(ctx, logName, r.ID, 1)
		if err != nil || len(rs) != 1 || !bytes.Equal(rs[0].Data, r.Data) {
			t.Fatalf("ReadRecords(%d, 1) = %v, %v", r.ID, rs, err)
		}
	}
	_, err := s.ReadRecords(ctx, logName, 700, 3)
	mustNotFound(t, err, "ReadRecords over a gap")

	var all []int64
	for after := int64(-1); ; {
		got, err := s.RecordIDs(ctx, logName, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		if len(got) > 2 {
			t.Fatalf("RecordIDs(limit 2) = %v", got)
		}
		all = append(all, got...)
		after = got[len(got)-1]
	}
	if fmt.Sprint(all) != fmt.Sprint(ids) {
		t.Fatalf("RecordIDs walked %v, want %v", all, ids)
	}
	if got, err := s.RecordIDs(ctx, "no.such.log", -1, 10); err != nil || len(got) != 0 {
		t.Fatalf("RecordIDs of an unknown log = %v, %v", got, err)
	}
	if g, ok := s.(store.RecordGrouper); ok {
		for _, c := range []struct {
			lo, hi int64
			shift  uint
			want   string
		}{
			{math.MinInt64, math.MaxInt64, 8, "[{3 3} {700 701} {90000 90000} {1099511627776 1099511627776}]"},
			{math.MinInt64, math.MaxInt64, 16, "[{3 701} {90000 90000} {1099511627776 1099511627776}]"},
			{0, 701, 8, "[{3 3} {700 700}]"},
			{701, 1 << 40, 0, "[{701 701} {90000 90000}]"},
			{100000, 1 << 40, 8, "[]"},
		} {
			got, err := g.GroupRecordIDs(ctx, logName, c.lo, c.hi, c.shift)
			if err != nil || fmt.Sprint(got) != c.want && !(c.want == "[]" && len(got) == 0) {
				t.Errorf("GroupRecordIDs(%d, %d, %d) = %v, %v; want %s", c.lo, c.hi, c.shift, got, err, c.want)
			}
		}
		if got, err := g.GroupRecordIDs(ctx, "no.such.log", 0, 10, 8); err != nil || len(got) != 0 {
			t.Errorf("GroupRecordIDs of an unknown log = %v, %v", got, err)
		}
	}
	// Other bytes under a stored id fail the whole batch.
	other := record(5, "v9.0.0")
	other.ID = 701
	fresh := record(6, "v1.0.0")
	fresh.ID = 702
	if err := s.Commit(ctx, logName, store.Batch{Records: []store.Record{other, fresh}, Synced: -1}); err == nil {
		t.Fatal("Commit of other bytes under a stored id succeeded")
	}
	_, err = s.Lookup(ctx, logName, fresh.Path, fresh.Version, 1<<41)
	mustNotFound(t, err, "a record of the rejected batch")
}

// testExpect checks that Batch.Expect guards a commit.
func testExpect(t *testing.T, s store.Store) {
	ctx := context.Background()
	st, err := s.State(ctx, logName)
	if err != nil || st != (store.State{}) {
		t.Fatalf("State of an empty store = %+v, %v", st, err)
	}
	for _, n := range []int64{10, 20} {
		if err := s.AddHead(ctx, logName, head(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, logName, store.Batch{Synced: -1, Serve: 10, Expect: &store.State{Served: 0, Generation: 0}}); err != nil {
		t.Fatal(err)
	}
	st1, err := s.State(ctx, logName)
	if err != nil || st1.Served != 10 || st1.Generation <= st.Generation {
		t.Fatalf("State after serving = %+v, %v", st1, err)
	}
	// A tile-only commit changes nothing a writer checks.
	tile := store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: 0, W: 2}, Data: tileData(2, "e")}
	if err := s.Commit(ctx, logName, store.Batch{Tiles: []store.Tile{tile}, Synced: -1, Expect: &st1}); err != nil {
		t.Fatal(err)
	}
	if st2, _ := s.State(ctx, logName); st2 != st1 {
		t.Fatalf("State after a tile-only commit = %+v, want %+v", st2, st1)
	}
	// A record commit moves the generation: a writer expecting the old
	// one conflicts; one checking only the served head does not.
	r := records(3, 1)
	if err := s.Commit(ctx, logName, store.Batch{Records: r, Synced: -1, Expect: &store.State{Served: 10, Generation: -1}}); err != nil {
		t.Fatal(err)
	}
	wide := store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: 0, W: 4}, Data: tileData(4, "e")}
	err = s.Commit(ctx, logName, store.Batch{Tiles: []store.Tile{wide}, Synced: -1, Serve: 20, Expect: &st1})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Commit expecting an old generation: err = %v, want ErrConflict", err)
	}
	if h, _ := s.ServedHead(ctx, logName); h.Size != 10 {
		t.Fatalf("a conflicting batch served head %d", h.Size)
	}
	if d, err := s.ReadTiles(ctx, logName, []tlog.Tile{wide.Tile}); err == nil {
		t.Fatalf("a conflicting batch stored its tile (%d bytes)", len(d[0]))
	}
	// Serving another head conflicts with a writer expecting the old one.
	st3, _ := s.State(ctx, logName)
	if err := s.Commit(ctx, logName, store.Batch{Synced: -1, Serve: 20, Expect: &st3}); err != nil {
		t.Fatal(err)
	}
	r = records(4, 1)
	err = s.Commit(ctx, logName, store.Batch{Records: r, Synced: -1, Expect: &store.State{Served: 10, Generation: -1}})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Commit expecting an old served head: err = %v, want ErrConflict", err)
	}
	_, err = s.Lookup(ctx, logName, r[0].Path, r[0].Version, 100)
	mustNotFound(t, err, "the record of a conflicting batch")
}

// testStagedInOrder: staged batches commit in order; a batch staged after a
// failing one is not committed, and the cursor stays after the last good
// batch.
func testStagedInOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	st := s.(store.Stager)
	w1 := st.StageCommit(ctx, logName, store.Batch{Records: records(0, 100), Synced: 100, Resumable: true}, nil)
	bad := records(100, 100)
	bad[10] = record(5, "v1.0.0") // the module@version of record 5 again
	bad[10].ID = 110
	w2 := st.StageCommit(ctx, logName, store.Batch{Records: bad, Synced: 200, Resumable: true}, w1)
	w3 := st.StageCommit(ctx, logName, store.Batch{Records: records(200, 100), Synced: 300, Resumable: true}, w2)
	if err := w1(); err != nil {
		t.Fatal(err)
	}
	var de *store.DuplicateError
	if err := w2(); !errors.As(err, &de) || de.ID != 110 || de.OtherID != 5 {
		t.Fatalf("second batch: err = %v, want a DuplicateError for 110 and 5", err)
	}
	if err := w3(); !errors.Is(err, store.ErrEarlierFailed) {
		t.Fatalf("third batch: err = %v, want ErrEarlierFailed", err)
	}
	if n, err := s.Synced(ctx, logName); err != nil || n != 100 {
		t.Fatalf("Synced = %d, %v; want 100", n, err)
	}
	for _, id := range []int64{100, 200} {
		_, err := s.ReadRecords(ctx, logName, id, 1)
		mustNotFound(t, err, fmt.Sprintf("record %d of a batch that failed or followed one", id))
	}
	got, err := s.ReadRecords(ctx, logName, 0, 100)
	if err != nil || len(got) != 100 || !bytes.Equal(got[99].Data, records(99, 1)[0].Data) {
		t.Fatalf("the first batch's records: %d, %v", len(got), err)
	}
}

// testStagedServes: a staged batch that serves a head commits after the
// batches before it, and one that expects a state that no longer holds
// fails with ErrConflict, storing nothing.
func testStagedServes(t *testing.T, s store.Store) {
	ctx := context.Background()
	st := s.(store.Stager)
	if err := s.AddHead(ctx, logName, head(300)); err != nil {
		t.Fatal(err)
	}
	var wait func() error
	for i := range 3 {
		b := store.Batch{Records: records(i*100, 100), Synced: int64(i+1) * 100, Resumable: i < 2}
		if i == 2 {
			b.Serve = 300
			b.Tiles = []store.Tile{{Tile: tlog.Tile{H: 8, L: 1, N: 0, W: 1}, Data: tileData(1, "up")}}
		}
		wait = st.StageCommit(ctx, logName, b, wait)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if h, err := s.ServedHead(ctx, logName); err != nil || h.Size != 300 {
		t.Fatalf("served head = %d, %v; want 300", h.Size, err)
	}
	if n, err := s.Synced(ctx, logName); err != nil || n != 300 {
		t.Fatalf("Synced = %d, %v; want 300", n, err)
	}
	r, err := s.Lookup(ctx, logName, "example.com/m150", "v1.0.0", 300)
	if err != nil || r.ID != 150 {
		t.Fatalf("Lookup = %d, %v", r.ID, err)
	}

	stale := store.State{Served: 0, Generation: -1}
	err = st.StageCommit(ctx, logName, store.Batch{Records: records(300, 10), Synced: -1, Expect: &stale}, nil)()
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a staged batch expecting a stale state: err = %v, want ErrConflict", err)
	}
	_, err = s.ReadRecords(ctx, logName, 300, 1)
	mustNotFound(t, err, "a record of the conflicting batch")
}
