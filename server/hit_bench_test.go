package server

import (
	"net/http"
	"testing"
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
