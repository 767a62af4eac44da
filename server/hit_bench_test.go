package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sumkeep/sumkeep/store/postgres"
)

// discardWriter is a ResponseWriter that keeps nothing but the status, with a
// fresh header map for every request, as net/http gives each.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(b)
	return len(b), nil
}

// benchLookups answers lookups of n records of a log, in a fixed order,
// with h: the handler's own cost, without a connection.
func benchLookups(b *testing.B, h http.Handler, paths []string) {
	reqs := make([]*http.Request, len(paths))
	for i, p := range paths {
		r, err := http.NewRequest("GET", p, nil)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = r
	}
	w := &discardWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		w.h, w.code, w.n = make(http.Header), 0, 0
		h.ServeHTTP(w, reqs[i%len(reqs)])
		if w.code != http.StatusOK {
			b.Fatalf("%s: %d", paths[i%len(paths)], w.code)
		}
	}
}

// BenchmarkLookupHit measures a lookup answered from the record cache, and
// BenchmarkLookupReference the same lookups answered by
// golang.org/x/mod/sumdb.Server from memory: a hit must cost no more.
func BenchmarkLookupHit(b *testing.B) {
	st, _ := openStore(b)
	l := newTestLog(b, "sum.example.test")
	l.grow(b, 1000)
	l.sync(b, st, 0, 1000, 1000, true)
	h := newServer(b, st, l.name).Handler()
	paths := make([]string, 1000)
	for i := range paths {
		paths[i] = lookupPath(b, l.mods[i])
		if w := do(h, "GET", paths[i]); w.Code != http.StatusOK {
			b.Fatalf("%s: %d", paths[i], w.Code)
		}
	}
	benchLookups(b, h, paths)
}

func BenchmarkLookupReference(b *testing.B) {
	l := newTestLog(b, "sum.example.test")
	l.grow(b, 1000)
	h := l.reference(b, 1000)
	paths := make([]string, 1000)
	for i := range paths {
		paths[i] = lookupPath(b, l.mods[i])
	}
	benchLookups(b, h, paths)
}

// BenchmarkLookupMiss measures a lookup that reaches the store (the record
// cache off), one at a time: the handler's own cost and the store round
// trip's, without a connection. pg-µs/op is the CPU time the database's
// backends spent per lookup (from /proc, so only with a local server).
// BenchmarkLookupMissParallel makes them from 64 goroutines at once, as
// the bench's connections do, so that lookups share batches.
func BenchmarkLookupMiss(b *testing.B) { benchLookupMiss(b, false) }

func BenchmarkLookupMissParallel(b *testing.B) { benchLookupMiss(b, true) }

func benchLookupMiss(b *testing.B, parallel bool) {
	st, _ := openStore(b)
	l := newTestLog(b, "sum.example.test")
	l.grow(b, 5000)
	l.sync(b, st, 0, 5000, 5000, true)
	s := New(Config{Store: st, Log: l.name, CacheRecords: -1})
	if err := s.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	paths := make([]string, 5000)
	for i := range paths {
		paths[i] = lookupPath(b, l.mods[(i*7)%len(l.mods)])
		if w := do(h, "GET", paths[i]); w.Code != http.StatusOK {
			b.Fatalf("%s: %d", paths[i], w.Code)
		}
	}
	pg0 := backendCPU(b, st)
	if !parallel {
		benchLookups(b, h, paths)
	} else {
		// The requests are shared: the handler only reads them.
		reqs := make([]*http.Request, len(paths))
		for i, p := range paths {
			reqs[i] = httptest.NewRequest("GET", p, nil)
		}
		b.ReportAllocs()
		b.SetParallelism(32)
		b.ResetTimer()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			w := &discardWriter{}
			for pb.Next() {
				i := int(next.Add(1)) % len(paths)
				w.h, w.code, w.n = make(http.Header), 0, 0
				h.ServeHTTP(w, reqs[i])
				if w.code != http.StatusOK {
					b.Errorf("%s: %d", paths[i], w.code)
					return
				}
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64((backendCPU(b, st)-pg0).Microseconds())/float64(b.N), "pg-µs/op")
}

// backendCPU returns the user and system CPU time of the database's
// backends (0 for those it cannot read).
func backendCPU(b *testing.B, st *postgres.Store) time.Duration {
	rows, err := st.Pool().Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	for _, pid := range pids {
		f, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(f, ')')
		fs := strings.Fields(string(f[i+1:]))
		if i < 0 || len(fs) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(fs[11], 10, 64)
		s, _ := strconv.ParseInt(fs[12], 10, 64)
		sum += time.Duration(u+s) * time.Second / 100 // USER_HZ
	}
	return sum
}
