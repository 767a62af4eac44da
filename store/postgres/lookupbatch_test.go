package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/store"
)

// TestLookupBatch: a lookup worker's batch, of few keys (key = ANY) and of
// many (a join over the keys), answers each lookup as one query of its own
// would: the row of its log, path and version below its maxID with the
// smallest id, never another module's row that shares its key, and the
// same answer to a lookup asked twice in one batch.
func TestLookupBatch(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for _, log := range []string{"log", "other"} {
		var recs []store.Record
		for i := range 300 {
			recs = append(recs, filterRecord(i, int64(i)))
		}
		if err := s.Commit(ctx, log, store.Batch{Records: recs, Synced: int64(len(recs))}); err != nil {
			t.Fatal(err)
		}
	}
	logID, err := s.logID(ctx, s.pool, "log", false)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	// m10 takes m11's key (a collision: m11 must not answer a lookup of
	// m10, nor m10 one of m11); m20 has a second row of a smaller id,
	// m30 one of a larger id; in the other log, m40 is missing.
	exec(`UPDATE records SET key = (SELECT key FROM records WHERE log_id = $1 AND id = 11) WHERE log_id = $1 AND id = 10`, logID)
	exec(`INSERT INTO records (log_id, id, key, path, version, hashes, raw)
		SELECT log_id, 5, key, path, version, hashes, raw FROM records WHERE log_id = $1 AND id = 20`, logID)
	exec(`INSERT INTO records (log_id, id, key, path, version, hashes, raw)
		SELECT log_id, 250, key, path, version, hashes, raw FROM records WHERE log_id = $1 AND id = 30`, logID)
	exec(`DELETE FROM records WHERE log_id <> $1 AND id = 40`, logID)

	type ask struct {
		log   string
		i     int   // module m<i>
		maxID int64 // the lookup's
		want  int64 // the id found, or -1
	}
	asks := []ask{
		{"log", 10, 300, -1}, // its row has another key now
		{"log", 11, 300, 11},
		{"log", 20, 300, 5},
		{"log", 20, 5, -1}, // neither row is below 5
		{"log", 20, 6, 5},
		{"log", 30, 300, 30},
		{"log", 30, 30, -1},
		{"log", 40, 300, 40},
		{"other", 40, 300, -1},
		{"other", 41, 300, 41},
		{"log", 1000, 300, -1},
		{"log", 11, 300, 11}, // asked twice
	}
	for i := range 20 {
		asks = append(asks, ask{"other", 100 + i, 300, int64(100 + i)})
	}
	for _, n := range []int{1, 3, lookupFewMax, len(asks)} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			for lo := 0; lo < len(asks); lo += n {
				part := asks[lo:min(lo+n, len(asks))]
				w := &batchWorker{}
				for _, a := range part {
					id, err := s.logID(ctx, s.pool, a.log, false)
					if err != nil {
						t.Fatal(err)
					}
					r := filterRecord(a.i, 0)
					w.batch = append(w.batch, &lookupReq{ctx: ctx, log: a.log, logID: id, key: store.LookupKey(r.Path, r.Version),
						path: r.Path, version: r.Version, maxID: a.maxID, done: make(chan lookupRes, 1)})
				}
				reqs := append([]*lookupReq(nil), w.batch...)
				s.lookupBatch(w, time.Time{})
				for k, a := range part {
					r := reqs[k]
					got, err := lookupRecord(a.log, r.path, r.version, <-r.done)
					switch {
					case a.want < 0 && !errors.Is(err, store.ErrNotFound):
						t.Errorf("%s m%d below %d: %d, %v; want not found", a.log, a.i, a.maxID, got.ID, err)
					case a.want >= 0 && (err != nil || got.ID != a.want || !bytes.Equal(got.Data, filterRecord(a.i, 0).Data)):
						t.Errorf("%s m%d below %d: %d %q, %v; want %d", a.log, a.i, a.maxID, got.ID, got.Data, err, a.want)
					}
				}
			}
		})
	}
}

// TestLookupConcurrent: many lookups at once, some running their batch
// themselves and some queued for the workers, each get their own answer;
// lookups still under way when the store closes all return.
func TestLookupConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	commitFiltered(t, s, 500)
	const callers, each = 32, 100
	errs := make(chan error, callers)
	for c := range callers {
		go func() {
			for k := range each {
				i := (c*each + k*7) % 600 // 500.. are not stored
				r := filterRecord(i, 0)
				got, err := s.LookupWithin(ctx, time.Minute, "log", r.Path, r.Version, 400)
				switch {
				case i >= 400 && !errors.Is(err, store.ErrNotFound):
					errs <- fmt.Errorf("m%d: %d, %v; want not found", i, got.ID, err)
					return
				case i < 400 && (err != nil || got.ID != int64(i) || !bytes.Equal(got.Data, r.Data)):
					errs <- fmt.Errorf("m%d: %d %q, %v", i, got.ID, got.Data, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	done := make(chan struct{}, callers)
	for c := range callers {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := 0; ; k++ {
				r := filterRecord((c+k)%500, 0)
				if _, err := s.Lookup(ctx, "log", r.Path, r.Version, 500); err != nil {
					return // closed
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	s.Close()
	for range callers {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("a lookup still waits a minute after Close")
		}
	}
}

// TestLookupOverflow: while many lookups wait behind the query in flight
// (every one missing the cache), a second query takes a batch of them, and
// each lookup still gets its own answer. The records table is held locked
// until both queries wait on it.
func TestLookupOverflow(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	recs := commitFiltered(t, s, 300)
	lock, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `LOCK TABLE records IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const n = 100
	got := make([]store.Record, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = s.Lookup(ctx, "log", recs[i].Path, recs[i].Version, int64(len(recs)))
		})
	}
	// The lookup queries waiting on the lock, as the server sees them.
	waiting := func() int {
		var k int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query IN ($1, $2)`,
			lookupFewSQL, lookupManySQL).Scan(&k)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// A bound only for a failure (one query in flight never becomes two).
	for give := time.Now().Add(30 * time.Second); ; {
		k := waiting()
		if k >= 2 {
			break
		}
		if time.Now().After(give) {
			lock.Rollback(ctx)
			wg.Wait()
			t.Fatalf("%d lookups waiting, %d lookup queries in flight: want a second one for the queue", n, k)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i].ID != int64(i) || got[i].Path != recs[i].Path {
			t.Errorf("lookup of %s: id %d, %v; want id %d", recs[i].Path, got[i].ID, errs[i], i)
		}
	}
}

// TestLookupLinger: a lookup that arrives alone runs its query at once,
// and lookups arriving densely share queries (the first lingers for the
// others), each still getting its own answer.
func TestLookupLinger(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	recs := commitFiltered(t, s, 100)
	lookup := func(i int) error {
		got, err := s.Lookup(ctx, "log", recs[i].Path, recs[i].Version, int64(len(recs)))
		if err != nil || got.ID != int64(i) || !bytes.Equal(got.Data, recs[i].Data) {
			return fmt.Errorf("lookup of %s: id %d, %v; want id %d", recs[i].Path, got.ID, err, i)
		}
		return nil
	}

	// Alone: lookups a second apart never linger, here for an hour.
	b := &s.lookups
	b.lingerFor, b.dense = time.Hour, 100*time.Millisecond
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		done := make(chan error, 1)
		go func() { done <- lookup(i) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("lookup %d, the first in a second, still waits after a minute: it lingered", i)
		}
	}

	// Dense: lookups 10 ms apart, while the first lingers for 500 ms.
	// Without the linger each would have a query of its own (a query
	// takes a millisecond or so).
	b.lingerFor, b.dense = 500*time.Millisecond, time.Hour
	const n = 10
	before := b.queries.Load()
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- lookup(10 + i) }()
		time.Sleep(10 * time.Millisecond)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if q := b.queries.Load() - before; q > n/2 {
		t.Errorf("%d lookups arriving 10 ms apart took %d queries; want them to share a few", n, q)
	}
}
