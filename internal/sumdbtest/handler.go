package sumdbtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// A FaultKind selects how an Upstream misbehaves.
type FaultKind int

const (
	// FaultNone: the Upstream is honest.
	FaultNone FaultKind = iota

	// FaultFlipTileByte: hash tiles at level Fault.L with index Fault.N
	// (every index if N < 0), of any width, are served with the byte at
	// offset Fault.Offset (modulo the tile length) inverted.
	FaultFlipTileByte

	// FaultAlterRecord: record Fault.ID is served with one hash character
	// changed, in data tiles and in lookups, while hash tiles stay honest,
	// so the record no longer matches its leaf hash.
	FaultAlterRecord

	// FaultBadSignature: /latest and lookups carry a head whose signature
	// line names the real key (same name and key hash) but whose signature
	// was made by another key, so verification fails
	// (note.InvalidSignatureError).
	FaultBadSignature

	// FaultUnknownKey: /latest and lookups carry a head signed by another
	// key with the same name, so it has no signature by a known key
	// (note.UnverifiedNoteError).
	FaultUnknownKey

	// FaultFork: every request is answered by Fault.Fork (see
	// Upstream.Fork), a different history signed with the same key, so the
	// heads seen before and after are not consistent.
	FaultFork

	// FaultWrongLookup: /lookup answers with the correct id line but the
	// text of another record (the next one).
	FaultWrongLookup

	// FaultRefuseDataTiles: data tiles (/tile/H/data/...) answer 404, as a
	// module proxy's /sumdb/ endpoint may. Not a lie, a mode.
	FaultRefuseDataTiles

	// FaultStaleHead: /latest and lookups carry the honest head of the
	// first Fault.N records (or of all, if fewer), as a caching proxy
	// serving an old head does. Not a lie, a mode.
	FaultStaleHead

	// FaultServerError: requests whose path starts with Fault.Prefix (all
	// requests if it is empty) answer 503 Service Unavailable.
	FaultServerError

	// FaultCachedHeads: each lookup carries a head of its own, the honest
	// head of a tree between the record's id+1 and the current size
	// (fixed per record), as a caching proxy that kept every answer from
	// the day it was first asked serves them; /latest stays current. Not a
	// lie, a mode.
	FaultCachedHeads

	// FaultHTMLPage: requests whose path starts with Fault.Prefix (all
	// requests if it is empty) answer 200 with an HTML login page, as a
	// captive portal or a proxy's error page in the path does.
	FaultHTMLPage

	// FaultMalformed: requests whose path starts with Fault.Prefix (all
	// requests if it is empty) answer 200 with a JSON error, as a broken
	// proxy does.
	FaultMalformed
)

var faultNames = [...]string{
	FaultNone:            "none",
	FaultFlipTileByte:    "flip-tile-byte",
	FaultAlterRecord:     "alter-record",
	FaultBadSignature:    "bad-signature",
	FaultUnknownKey:      "unknown-key",
	FaultFork:            "fork",
	FaultWrongLookup:     "wrong-lookup",
	FaultRefuseDataTiles: "refuse-data-tiles",
	FaultStaleHead:       "stale-head",
	FaultServerError:     "server-error",
	FaultCachedHeads:     "cached-heads",
	FaultHTMLPage:        "html-page",
	FaultMalformed:       "malformed",
}

// String returns the fault's name, e.g. "flip-tile-byte".
func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultNames) {
		return faultNames[k]
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// A Fault describes a misbehaviour; the fields other than Kind are used by
// the kinds whose documentation names them. The zero Fault is FaultNone.
type Fault struct {
	Kind   FaultKind
	L      int       // FaultFlipTileByte: tile level (0 holds the leaf hashes)
	N      int64     // FaultFlipTileByte: tile index, < 0 for all; FaultStaleHead: tree size
	Offset int       // FaultFlipTileByte: byte to invert, modulo the tile length
	ID     int64     // FaultAlterRecord: record id
	Fork   *Upstream // FaultFork: the history to present instead
	Prefix string    // FaultServerError, FaultHTMLPage, FaultMalformed: URL path prefix, e.g. "/tile/"
}

// SetFault replaces the current fault with f (Fault{} clears it). Requests
// already being served keep the fault they started with. It panics if f is
// FaultFork without a Fork.
func (u *Upstream) SetFault(f Fault) {
	if f.Kind == FaultFork && f.Fork == nil {
		panic("sumdbtest: FaultFork without Fork")
	}
	u.fmu.Lock()
	u.fault = f
	u.fmu.Unlock()
}

// CurrentFault returns the fault set by SetFault.
func (u *Upstream) CurrentFault() Fault {
	u.fmu.Lock()
	defer u.fmu.Unlock()
	return u.fault
}

// OnRequest sets a hook called at the start of each request, after it is
// counted (see Requests) and before it is answered; nil removes it. The hook
// runs on the request's goroutine, so it may block to delay the answer.
func (u *Upstream) OnRequest(hook func(r *http.Request)) {
	u.fmu.Lock()
	u.hook = hook
	u.fmu.Unlock()
}

// SetLatency makes u answer each request after d, or when its client
// leaves (an OnRequest hook: it replaces any other).
func (u *Upstream) SetLatency(d time.Duration) {
	u.OnRequest(func(r *http.Request) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
	})
}

// Requests returns how many requests whose protocol path (with any
// /sumdb/<name> prefix removed) starts with prefix the Upstream has received,
// e.g. Requests("/tile/8/data/") or Requests("/lookup/"); Requests("") counts
// all of them.
func (u *Upstream) Requests(prefix string) int64 {
	u.fmu.Lock()
	defer u.fmu.Unlock()
	var n int64
	for path, c := range u.counts {
		if strings.HasPrefix(path, prefix) {
			n += c
		}
	}
	return n
}

// ResetRequests sets all request counts to zero.
func (u *Upstream) ResetRequests() {
	u.fmu.Lock()
	clear(u.counts)
	u.fmu.Unlock()
}

// requestState is the per-request data the ServerOps see through the
// request context.
type requestState struct {
	fault  Fault
	lookup bool
	id     int64 // the record a lookup found
}

type stateKey struct{}

// faultFor returns the fault of the request ctx belongs to, or the current
// fault when ctx does not come from Handler.
func (u *Upstream) faultFor(ctx context.Context) Fault {
	if st, ok := ctx.Value(stateKey{}).(*requestState); ok {
		return st.fault
	}
	return u.CurrentFault()
}

// isLookup reports whether ctx belongs to a /lookup request.
func isLookup(ctx context.Context) bool {
	st, ok := ctx.Value(stateKey{}).(*requestState)
	return ok && st.lookup
}

// Handler returns the HTTP handler of the checksum database protocol:
// /latest, /lookup/M@V, /tile/8/L/N[.p/W] and /tile/8/data/N[.p/W], answered
// by golang.org/x/mod/sumdb.Server with the current fault applied. The same
// paths are also served under /sumdb/<name>/, where /sumdb/<name>/supported
// answers 200, as a module proxy does. Tiles of any height other than 8 are
// not found, as on sum.golang.org.
func (u *Upstream) Handler() http.Handler {
	return http.HandlerFunc(u.serveHTTP)
}

func (u *Upstream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	rest, proxyForm := strings.CutPrefix(path, "/sumdb/"+u.name+"/")
	if proxyForm {
		path = "/" + rest
	}

	u.fmu.Lock()
	u.counts[path]++
	hook, f := u.hook, u.fault
	u.fmu.Unlock()
	if hook != nil {
		hook(r)
	}

	if proxyForm && path == "/supported" {
		w.WriteHeader(http.StatusOK)
		return
	}
	target := u
	switch f.Kind {
	case FaultFork:
		target, f = f.Fork, Fault{}
	case FaultServerError:
		if strings.HasPrefix(path, f.Prefix) {
			http.Error(w, "service unavailable (sumdbtest fault)", http.StatusServiceUnavailable)
			return
		}
	case FaultHTMLPage:
		if strings.HasPrefix(path, f.Prefix) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<!doctype html><title>Sign in</title><p>Sign in to the guest network (sumdbtest fault)</p>\n")
			return
		}
	case FaultMalformed:
		if strings.HasPrefix(path, f.Prefix) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"error": "upstream request timed out (sumdbtest fault)"}`+"\n")
			return
		}
	}
	if strings.HasPrefix(path, "/tile/") {
		t, err := tlog.ParseTilePath(path[1:])
		if err == nil && (t.H != 8 || t.L == -1 && f.Kind == FaultRefuseDataTiles) {
			http.NotFound(w, r)
			return
		}
	}

	st := &requestState{fault: f, lookup: strings.HasPrefix(path, "/lookup/")}
	r2 := r.Clone(context.WithValue(r.Context(), stateKey{}, st))
	r2.URL.Path, r2.URL.RawPath = path, ""
	target.server.ServeHTTP(w, r2)
}

// Start starts an HTTP server for Handler on 127.0.0.1 and returns its URL
// (like "http://127.0.0.1:34567"). If the Upstream is already started it just
// returns the URL. After Close, Start serves again on the same address when
// that is still free, so clients see the upstream come back at its old URL.
func (u *Upstream) Start() string {
	u.fmu.Lock()
	defer u.fmu.Unlock()
	if u.srv != nil {
		return u.srv.URL
	}
	srv := httptest.NewUnstartedServer(u.Handler())
	if u.addr != "" {
		if l, err := net.Listen("tcp", u.addr); err == nil {
			srv.Listener.Close()
			srv.Listener = l
		}
	}
	srv.Start()
	u.srv = srv
	u.addr = srv.Listener.Addr().String()
	return srv.URL
}

// URL returns the URL of the running server, or "" if it is not started.
func (u *Upstream) URL() string {
	u.fmu.Lock()
	defer u.fmu.Unlock()
	if u.srv == nil {
		return ""
	}
	return u.srv.URL
}

// Close stops the server started by Start: it drops all connections, also
// those of requests in flight, and waits for their handlers to return (so a
// hook that blocks forever makes Close hang). Connections to its address are
// then refused. Close does nothing if the
// server is not running.
func (u *Upstream) Close() {
	u.fmu.Lock()
	srv := u.srv
	u.srv = nil
	u.fmu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}
