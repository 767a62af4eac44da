package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
)

func TestKeyFilter(t *testing.T) {
	var f keyFilter
	r := rand.New(rand.NewPCG(1, 2))
	const n = 3 << 20 // three layers
	keys := make([]int64, n)
	for i := range keys {
		keys[i] = r.Int64()
		f.add(keys[i])
	}
	for _, k := range keys {
		if !f.mayHold(k) {
			t.Fatalf("key %d was added but is not held", k)
		}
	}
	positives := 0
	const m = 1 << 20
	for range m {
		if f.mayHold(r.Int64()) {
			positives++
		}
	}
	if rate := float64(positives) / m; rate > 0.03 {
		t.Errorf("false positive rate %.3f, want about 0.01-0.02", rate)
	}

	// A chunk at once: every added key stays, in order, and few others.
	var chunk, added []int64
	for i := range 4096 {
		chunk = append(chunk, keys[i], r.Int64())
		added = append(added, keys[i])
	}
	kept := f.maybeHeld(chunk)
	if len(kept) > len(added)+len(added)/20 {
		t.Errorf("maybeHeld kept %d of %d keys, %d of them added", len(kept), len(chunk), len(added))
	}
	rest := added
	for _, k := range kept {
		if len(rest) > 0 && k == rest[0] {
			rest = rest[1:]
		}
	}
	if len(rest) > 0 {
		t.Errorf("maybeHeld dropped or reordered added keys: %d missing, first %d", len(rest), rest[0])
	}
}

func filterRecord(i int, id int64) store.Record {
	p, v := fmt.Sprintf("example.com/m%d", i), "v1.0.0"
	return store.Record{ID: id, Path: p, Version: v, Data: fmt.Appendf(nil, "%s %s h1:x\n%s %s/go.mod h1:y\n", p, v, p, v)}
}

// commitFiltered commits n records to log "log" (filterRecord(i, i) for
// i below n) as a full sync of them, and returns them.
func commitFiltered(t *testing.T, s *Store, n int) []store.Record {
	t.Helper()
	var recs []store.Record
	for i := range n {
		recs = append(recs, filterRecord(i, int64(i)))
	}
	if err := s.Commit(context.Background(), "log", store.Batch{Records: recs, Synced: int64(len(recs))}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestKeyFilterOtherWriter: a record stored by another process (another
// Store on the same database) is not in this one's filter, so the filter
// must not be trusted after it: a later batch duplicating it is rejected.
func TestKeyFilterOtherWriter(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDSN(t)
	a, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	batch := func(from, n int) []store.Record {
		var rs []store.Record
		for i := from; i < from+n; i++ {
			rs = append(rs, filterRecord(i, int64(i)))
		}
		return rs
	}
	if err := a.Commit(ctx, "log", store.Batch{Records: batch(0, 100), Synced: 100}); err != nil {
		t.Fatal(err)
	}
	if a.filters.m[1] == nil {
		t.Fatal("a sync from empty has no key filter")
	}
	// Another process fetches a record far ahead, on demand.
	if err := b.Commit(ctx, "log", store.Batch{Records: []store.Record{filterRecord(150, 5000)}, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	// The log then gives module 150 a second time, at id 150.
	err = a.Commit(ctx, "log", store.Batch{Records: batch(100, 100), Synced: 200})
	var de *store.DuplicateError
	if !errors.As(err, &de) || de.ID != 150 || de.OtherID != 5000 {
		t.Fatalf("err = %v, want a DuplicateError for 150 and 5000", err)
	}
	// Without the other writer, the filter is used and still catches a
	// duplicate of its own log's records.
	c := openTest(t)
	if err := c.Commit(ctx, "log", store.Batch{Records: batch(0, 100), Synced: 100}); err != nil {
		t.Fatal(err)
	}
	next := batch(100, 100)
	next[50] = filterRecord(7, 150)
	err = c.Commit(ctx, "log", store.Batch{Records: next, Synced: 200})
	if !errors.As(err, &de) || de.ID != 150 || de.OtherID != 7 {
		t.Fatalf("err = %v, want a DuplicateError for 150 and 7", err)
	}
}
