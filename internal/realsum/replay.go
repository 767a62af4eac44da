package realsum

import (
	"net/http"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// Kinds of requests a Replay counts.
const (
	KindLatest    = "latest"    // /latest
	KindLookup    = "lookup"    // /lookup/M@V
	KindTile      = "tile"      // /tile/8/L/N[.p/W], hash tiles
	KindData      = "data"      // /tile/8/data/..., refused
	KindSupported = "supported" // /sumdb/sum.golang.org/supported
	KindOther     = "other"     // anything else (404)
)

// DataTileRefusal is the body of the 403 answer a module proxy's /sumdb/
// endpoint gives for data tiles, replayed exactly.
const DataTileRefusal = "Go module path not permitted"

// Replay is a replaying upstream: an http.Handler that answers the checksum
// database protocol from the recording, at the root and under
// /sumdb/sum.golang.org/ (the proxy form, where /supported answers 200):
//
//   - /latest: T's signed note (Head), even if /latest recorded a smaller tree;
//   - /lookup/M@V: the recorded answer byte-exactly (a record, or the
//     recorded not-found status and body); 404 with a text body if M@V was
//     not looked up when recording;
//   - /tile/8/L/N[.p/W]: sliced from the recorded tile when it is at least
//     that wide (so a full tile only if recorded full), else 404;
//   - /tile/8/data/...: 403 DataTileRefusal, like a module proxy.
//
// It counts requests by kind and can be told to lie (FlipTileByte).
// Content types are those of golang.org/x/mod/sumdb.Server. It is safe for
// concurrent use.
type Replay struct {
	f *fixture

	mu     sync.Mutex
	counts map[string]int64
	flips  map[[2]int64]int // (L, N) -> offset of the byte to invert
}

// Handler returns a new replaying upstream. It panics if the embedded
// fixture cannot be parsed.
func Handler() *Replay {
	return &Replay{f: mustGet(), counts: map[string]int64{}, flips: map[[2]int64]int{}}
}

// Requests returns how many requests of a kind (KindLookup, ...) were
// answered; "" counts all of them.
func (rp *Replay) Requests(kind string) int64 {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if kind == "" {
		var n int64
		for _, c := range rp.counts {
			n += c
		}
		return n
	}
	return rp.counts[kind]
}

// ResetRequests sets all request counts to zero.
func (rp *Replay) ResetRequests() {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	clear(rp.counts)
}

// FlipTileByte makes the replay lie: hash tile (l, n) is served, at any
// width, with the byte at offset (modulo the served length) inverted.
func (rp *Replay) FlipTileByte(l int, n int64, offset int) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.flips[[2]int64{int64(l), n}] = offset
}

// Honest undoes every FlipTileByte.
func (rp *Replay) Honest() {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	clear(rp.flips)
}

func (rp *Replay) count(kind string) {
	rp.mu.Lock()
	rp.counts[kind]++
	rp.mu.Unlock()
}

const proxyPrefix = "/sumdb/" + Name

// ServeHTTP implements http.Handler.
func (rp *Replay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if rest, ok := strings.CutPrefix(p, proxyPrefix); ok && strings.HasPrefix(rest, "/") {
		p = rest
		if p == "/supported" {
			rp.count(KindSupported)
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	switch {
	case p == "/latest":
		rp.count(KindLatest)
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write(rp.f.head.Note)

	case strings.HasPrefix(p, "/lookup/"):
		rp.count(KindLookup)
		key := strings.TrimPrefix(p, "/lookup/")
		a, ok := rp.f.lookups[key]
		if !ok {
			http.Error(w, "not found: "+key+" was not looked up when recording", http.StatusNotFound)
			return
		}
		if a.status == http.StatusOK {
			w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		} else {
			w.Header()["Content-Type"] = nil // as recorded: no content type
		}
		w.WriteHeader(a.status)
		w.Write(a.body)

	case strings.HasPrefix(p, "/tile/8/data/"):
		rp.count(KindData)
		w.Header()["Content-Type"] = nil
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(DataTileRefusal))

	case strings.HasPrefix(p, "/tile/"):
		rp.count(KindTile)
		t, err := tlog.ParseTilePath(p[1:])
		if err != nil {
			http.Error(w, "invalid tile syntax", http.StatusBadRequest)
			return
		}
		data := rp.f.tile(t)
		if data == nil {
			http.Error(w, "not found: tile "+t.Path()+" was not recorded", http.StatusNotFound)
			return
		}
		rp.mu.Lock()
		off, flip := rp.flips[[2]int64{int64(t.L), t.N}]
		rp.mu.Unlock()
		if flip {
			data[(off%len(data)+len(data))%len(data)] ^= 0xff // data is a copy
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)

	default:
		rp.count(KindOther)
		http.NotFound(w, r)
	}
}
