package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

const (
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheShort     = "public, max-age=60"
	cacheLatest    = "public, max-age=10"
)

func wantCache(t testing.TB, w *httptest.ResponseRecorder, path, want string) {
	t.Helper()
	if got := w.Header().Get("Cache-Control"); got != want {
		t.Errorf("GET %s: Cache-Control %q, want %q", path, got, want)
	}
}

// checkTree compares everything a client can ask of the tree of size n,
// under prefix ("" for the root, "/sumdb/<name>" for the proxy form), with
// the reference server.
func checkTree(t *testing.T, ours http.Handler, l *testLog, n int64, prefix string) {
	checkLatestAndLookups(t, ours, l, n, prefix)
	checkTiles(t, ours, l, n, prefix, true)
}

func checkLatestAndLookups(t *testing.T, ours http.Handler, l *testLog, n int64, prefix string) {
	ref := l.reference(t, n)
	check := func(p string) *httptest.ResponseRecorder {
		t.Helper()
		return same(t, ours, ref, prefix+p, p)
	}

	if w := check("/latest"); w.Code != http.StatusOK {
		t.Fatalf("/latest: %d", w.Code)
	} else {
		wantCache(t, w, "/latest", cacheLatest)
		if !bytes.Equal(w.Body.Bytes(), l.note(t, n)) {
			t.Errorf("/latest is not the signed head of size %d", n)
		}
	}

	// Lookups: records inside the tree are found, the ones after are not.
	var ids []int64
	for id := int64(0); id < l.size() && id < n+20; id++ {
		if n <= 2000 || id < 20 || id%61 == 0 || id >= n-20 {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		p := lookupPath(t, l.mods[id])
		w := check(p)
		if want := id < n; (w.Code == http.StatusOK) != want {
			t.Errorf("%s (record %d of tree %d): status %d", p, id, n, w.Code)
		}
		if w.Code == http.StatusOK {
			wantCache(t, w, p, cacheShort)
			if !bytes.HasPrefix(w.Body.Bytes(), []byte(strconv.FormatInt(id, 10)+"\n")) {
				t.Errorf("%s: answer does not start with id %d", p, id)
			}
			// Again, from the record cache: the same bytes and headers.
			if again := check(p); again.Code != http.StatusOK || again.Header().Get("Content-Length") != w.Header().Get("Content-Length") {
				t.Errorf("%s again: status %d, Content-Length %q, first %q", p, again.Code, again.Header().Get("Content-Length"), w.Header().Get("Content-Length"))
			} else {
				wantCache(t, again, p, cacheShort)
			}
		}
	}

}

// checkTiles compares tiles, hash (L >= 0) and data (L = -1), at every width
// a client of the tree of size n may ask, and, if outside is set (ours serves
// the tree of size n, not a larger one), some outside that tree.
func checkTiles(t *testing.T, ours http.Handler, l *testLog, n int64, prefix string, outside bool) {
	ref := l.reference(t, n)
	check := func(p string) *httptest.ResponseRecorder {
		t.Helper()
		return same(t, ours, ref, prefix+p, p)
	}
	for L := -1; L <= 3; L++ {
		level := max(L, 0)
		hashes := n >> (store.TileHeight * level)
		full := hashes >> store.TileHeight
		rem := int(hashes % tileWidth)
		var tiles []tlog.Tile
		for N := int64(0); N < full; N++ {
			if L >= 1 || N < 3 || N%17 == 0 || N == full-1 {
				tiles = append(tiles, tlog.Tile{H: 8, L: L, N: N, W: tileWidth})
			}
			if N < 2 || N == full-1 {
				for _, w := range []int{1, 100, 255} {
					tiles = append(tiles, tlog.Tile{H: 8, L: L, N: N, W: w})
				}
			}
		}
		for _, w := range []int{rem, rem - 1, 1, rem + 1, tileWidth} {
			if w >= 1 && w <= tileWidth {
				tiles = append(tiles, tlog.Tile{H: 8, L: L, N: full, W: w})
			}
		}
		tiles = append(tiles, tlog.Tile{H: 8, L: L, N: full + 1, W: 1})
		for _, tile := range tiles {
			p := "/" + tile.Path()
			want := tile.N<<8+int64(tile.W) <= hashes
			if !want && !outside {
				continue
			}
			w := check(p)
			if (w.Code == http.StatusOK) != want {
				t.Errorf("%s (tree %d): status %d", p, n, w.Code)
			}
			if w.Code != http.StatusOK {
				continue
			}
			if tile.W == tileWidth {
				wantCache(t, w, p, cacheImmutable)
			} else {
				wantCache(t, w, p, cacheShort)
			}
			if L >= 0 && w.Body.Len() != tile.W*tlog.HashSize {
				t.Errorf("%s: %d bytes", p, w.Body.Len())
			}
		}
	}
}

// TestMatchesReference fills a Postgres store the way sync does and compares
// every answer with golang.org/x/mod/sumdb.Server over the same log: first
// with a small tree served, then with a larger tree stored but not served
// yet, then with the larger tree served (a full level-1 tile, partial tiles
// at levels 0, 1 and 2, and tiles narrower than stored, which the store
// slices).
func TestMatchesReference(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	l := newTestLog(t, "sum.example.test")
	const n1 = 1000
	const n2 = 1<<16 + 3*256 + 17
	l.grow(t, n2)
	l.sync(t, st, 0, n1, 300, true)
	s := newServer(t, st, l.name)
	h := s.Handler()

	t.Run("small", func(t *testing.T) { checkTree(t, h, l, n1, "") })

	l.sync(t, st, n1, n2, 20000, false)
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("stored-not-served", func(t *testing.T) {
		// Everything of the larger tree is stored, but only the served
		// tree is answered.
		checkTree(t, h, l, n1, "")
		for _, p := range []string{"/tile/8/0/003", "/tile/8/data/003", "/tile/8/0/004.p/1", lookupPath(t, l.mods[n1])} {
			if w := do(h, "GET", p); w.Code != http.StatusNotFound {
				t.Errorf("%s: %d, want 404 (outside the served tree)", p, w.Code)
			}
		}
	})

	if err := st.Commit(ctx, l.name, store.Batch{Synced: -1, Serve: n2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("large", func(t *testing.T) { checkTree(t, h, l, n2, "") })
	t.Run("large-proxy-form", func(t *testing.T) { checkTree(t, h, l, n2, "/sumdb/"+l.name) })
	t.Run("older-client", func(t *testing.T) {
		// A client whose cached head is the small tree asks for the
		// partial tiles of that tree: they are sliced from wider ones.
		checkTiles(t, h, l, n1, "", false)
	})
}

// TestErrors checks status codes of malformed and unknown requests, at the
// root and in the proxy form, and /sumdb/<name>/supported.
func TestErrors(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 600)
	l.sync(t, st, 0, 600, 600, true)
	other := newTestLog(t, "other.example.test")
	other.offset = 1_000_000
	other.grow(t, 300)
	other.sync(t, st, 0, 300, 300, true)
	empty := newTestLog(t, "empty.example.test")
	empty.offset = 2_000_000
	empty.grow(t, 10)
	if err := st.AddHead(ctx, empty.name, empty.head(t, 10)); err != nil {
		t.Fatal(err)
	}
	h := newServer(t, st, l.name).Handler()
	ref := l.reference(t, 600)

	present := lookupPath(t, l.mods[7])
	tests := []struct {
		path string
		code int
		ref  bool // the reference server gives the same status
	}{
		{"/latest", 200, true},
		{present, 200, true},
		{"/lookup/", 400, true},
		{"/lookup/example.com/m", 400, true},
		{"/lookup/@v1.0.0", 400, true},
		{"/lookup/example.com/m@", 400, true},
		{"/lookup/example.com/m@v1", 400, true},
		{"/lookup/example.com/m@1.0.0", 400, true},
		{"/lookup/example.com/m@v1.0.0+meta", 400, true},
		{"/lookup/example.com/m@v1.0.0@v1.0.0", 400, true},
		{"/lookup/example.com/M@v1.0.0", 400, false},        // upper case not escaped; the reference says 500
		{"/lookup/example.com/!!m@v1.0.0", 400, false},      // bad escaping; the reference says 500
		{"/lookup/example.com/m/v2@v1.0.0", 400, false},     // major version mismatch; the reference says 404
		{"/lookup/example.com/m@v2.0.0", 400, false},        // v2 without /v2; the reference says 404
		{"/lookup/-bad.com/m@v1.0.0", 400, false},           // invalid path; the reference says 500
		{"/lookup/example.com/absent@v1.0.0", 404, true},    // unknown module
		{"/lookup/example.com/mod5@v1.0.6-rc.1", 404, true}, // known module, unknown version
		{"/lookup/" + strings.TrimPrefix(lookupPath(t, other.mods[3]), "/lookup/"), 404, true},
		{"/tile/8/0/000", 200, true},
		{"/tile/8/0/002.p/88", 200, true},
		{"/tile/8/data/002.p/88", 200, true},
		{"/tile/8/1/000.p/2", 200, true},
		{"/tile/", 400, true},
		{"/tile/8", 400, true},
		{"/tile/8/0", 400, true},
		{"/tile/8/0/x", 400, true},
		{"/tile/8/0/0", 400, true},       // not the canonical form of N
		{"/tile/8/0/000.p/0", 400, true}, // width out of range
		{"/tile/8/0/000.p/256", 400, true},
		{"/tile/8/0/000.p/", 400, true},
		{"/tile/8/-1/000", 400, true},
		{"/tile/8/data/000.p/x", 400, true},
		{"/tile/4/0/000", 400, false}, // wrong height; the reference asks its ops
		{"/tile/31/0/000", 400, true}, // height out of range
		{"/tile/8/0/003", 404, true},  // not in the tree
		{"/tile/8/0/002", 404, true},  // only 88 wide in the tree
		{"/tile/8/0/002.p/89", 404, true},
		{"/tile/8/1/000.p/3", 404, true},
		{"/tile/8/1/000", 404, true},
		{"/tile/8/2/000.p/1", 404, true},
		{"/tile/8/9/000.p/1", 404, true},
		{"/tile/8/200/000.p/1", 404, true},
		{"/tile/8/data/002", 404, true},
		{"/tile/8/data/x999/x999/x999/x999/x999/x999/999", 400, true}, // N overflows int64
		{"/tile/8/0/x009/x223/x372/x036/x854/x775/807", 404, false},   // N = MaxInt64
		{"/latest/", 404, true},
		{"/lookup", 404, true},
		{"/", 200, false}, // the status page (the reference has none)
		{"/sumdb", 404, false},
		{"/sumdb/", 404, false},
		{"/healthz", 200, false},
	}
	for _, tt := range tests {
		w := do(h, "GET", tt.path)
		if w.Code != tt.code {
			t.Errorf("GET %s: %d %q, want %d", tt.path, w.Code, strings.TrimSpace(body(t, w)), tt.code)
		}
		if tt.code != 200 {
			wantCache(t, w, tt.path, "no-store")
		}
		if tt.ref {
			if r := do(ref, "GET", tt.path); r.Code != tt.code {
				t.Errorf("reference GET %s: %d, test expects the same as ours (%d)", tt.path, r.Code, tt.code)
			}
		}
		// The same in the proxy form.
		if strings.HasPrefix(tt.path, "/latest") || strings.HasPrefix(tt.path, "/lookup/") || strings.HasPrefix(tt.path, "/tile/") {
			p := "/sumdb/" + l.name + tt.path
			if w := do(h, "GET", p); w.Code != tt.code {
				t.Errorf("GET %s: %d, want %d", p, w.Code, tt.code)
			}
		}
	}

	// Other methods are not served.
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if w := do(h, m, "/latest"); w.Code != http.StatusNotFound {
			t.Errorf("%s /latest: %d, want 404", m, w.Code)
		}
	}

	// The proxy form of other logs.
	proxyTests := []struct {
		path string
		code int
	}{
		{"/sumdb/" + l.name + "/supported", 200},
		{"/sumdb/" + other.name + "/supported", 200},
		{"/sumdb/" + empty.name + "/supported", 200}, // stored, nothing served yet
		{"/sumdb/" + empty.name + "/latest", 404},
		{"/sumdb/" + empty.name + "/tile/8/0/000.p/1", 404},
		{"/sumdb/" + empty.name + lookupPath(t, empty.mods[0]), 404},
		{"/sumdb/unknown.example.test/supported", 404},
		{"/sumdb/unknown.example.test/latest", 404},
		{"/sumdb/unknown.example.test/tile/8/0/000.p/1", 404},
		{"/sumdb/unknown.example.test/tile/8/0/x", 400},
		{"/sumdb/unknown.example.test" + present, 404},
		{"/sumdb/unknown.example.test/lookup/bad", 400},
		{"/sumdb/" + l.name + "/", 404},
		{"/sumdb/" + l.name + "/supported/", 404},
		{"/sumdb/" + l.name + "/other", 404},
		{"/sumdb/" + l.name + "/healthz", 404},
		{"/sumdb/" + other.name + lookupPath(t, other.mods[3]), 200},
		{"/sumdb/" + other.name + present, 404}, // another log's record
	}
	for _, tt := range proxyTests {
		w := do(h, "GET", tt.path)
		if w.Code != tt.code {
			t.Errorf("GET %s: %d %q, want %d", tt.path, w.Code, strings.TrimSpace(body(t, w)), tt.code)
		}
		if strings.HasSuffix(tt.path, "/supported") && w.Code == 200 && w.Body.Len() != 0 {
			t.Errorf("GET %s: body %q, want empty", tt.path, w.Body.String())
		}
	}
	checkTree(t, h, other, 300, "/sumdb/"+other.name)

	// A server with no default log serves only the proxy form.
	h = newServer(t, st, "").Handler()
	for _, p := range []string{"/latest", present, "/tile/8/0/000"} {
		if w := do(h, "GET", p); w.Code != http.StatusNotFound {
			t.Errorf("no default log: GET %s: %d, want 404", p, w.Code)
		}
	}
	checkTree(t, h, l, 600, "/sumdb/"+l.name)
}

// TestHTTP checks the responses over a real connection: HEAD answers,
// Content-Length, and the headers the protocol depends on.
func TestHTTP(t *testing.T) {
	st, _ := openStore(t)
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 700)
	l.sync(t, st, 0, 700, 700, true)
	srv := httptest.NewServer(newServer(t, st, l.name).Handler())
	defer srv.Close()

	for _, p := range []string{"/latest", lookupPath(t, l.mods[5]), "/tile/8/0/001", "/tile/8/0/002.p/188",
		"/tile/8/data/000", "/tile/8/data/002.p/3", "/sumdb/" + l.name + "/supported"} {
		get, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(get.Body)
		get.Body.Close()
		if get.StatusCode != 200 {
			t.Errorf("GET %s: %s", p, get.Status)
			continue
		}
		if get.ContentLength != int64(len(b)) {
			t.Errorf("GET %s: Content-Length %d, body %d bytes", p, get.ContentLength, len(b))
		}
		head, err := http.Head(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		hb, _ := io.ReadAll(head.Body)
		head.Body.Close()
		if head.StatusCode != 200 || len(hb) != 0 || head.ContentLength != int64(len(b)) {
			t.Errorf("HEAD %s: %s, Content-Length %d, %d body bytes; want 200, %d, 0",
				p, head.Status, head.ContentLength, len(hb), len(b))
		}
		for _, k := range []string{"Content-Type", "Cache-Control"} {
			if head.Header.Get(k) != get.Header.Get(k) {
				t.Errorf("HEAD %s: %s %q, GET %q", p, k, head.Header.Get(k), get.Header.Get(k))
			}
		}
	}
	resp, err := http.Head(srv.URL + "/lookup/example.com/absent@v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("HEAD of an absent module: %s", resp.Status)
	}
}

// TestSumdbClient has the go command's checksum database client verify
// lookups (with their inclusion proofs from hash tiles) against the server,
// at the root and in the proxy form, and keep verifying as the served tree
// grows (consistency proofs from tiles of both trees).
func TestSumdbClient(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	l := newTestLog(t, "sum.example.test")
	const n1, n2 = 5000, 70000
	l.grow(t, n2)
	l.sync(t, st, 0, n1, n1, true)
	s := newServer(t, st, l.name)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	clients := map[*sumdbtest.ClientOps]*sumdb.Client{}
	for _, base := range []string{srv.URL, srv.URL + "/sumdb/" + l.name} {
		c, ops := sumdbtest.NewClient(base, l.vkey)
		clients[ops] = c
	}
	defer func() {
		for ops := range clients {
			if errs := ops.SecurityErrors(); len(errs) > 0 {
				t.Errorf("%s: security errors: %q", ops.Base(), errs)
			}
		}
	}()
	lookup := func(ops *sumdbtest.ClientOps, c *sumdb.Client, id int64) {
		t.Helper()
		m := l.mods[id]
		for _, vers := range []string{m.Version, m.Version + "/go.mod"} {
			lines, err := c.Lookup(m.Path, vers)
			if err != nil {
				t.Fatalf("%s: lookup %s@%s: %v", ops.Base(), m.Path, vers, err)
			}
			var want []string
			for _, line := range strings.Split(string(l.recs[id]), "\n") {
				if strings.HasPrefix(line, m.Path+" "+vers+" ") {
					want = append(want, line)
				}
			}
			if len(want) == 0 && vers == m.Version {
				t.Fatalf("record %d has no line for %s@%s", id, m.Path, vers)
			}
			if strings.Join(lines, "|") != strings.Join(want, "|") {
				t.Errorf("%s: lookup %s@%s: %q, want %q", ops.Base(), m.Path, vers, lines, want)
			}
		}
	}
	for ops, c := range clients {
		for _, id := range []int64{0, 1, 255, 256, 4095, n1 - 1} {
			lookup(ops, c, id)
		}
		// (A fresh client: a client remembers failed lookups.)
		if _, err := sumdb.NewClient(ops).Lookup(l.mods[n1].Path, l.mods[n1].Version); err == nil {
			t.Errorf("%s: lookup of a record outside the served tree succeeded", ops.Base())
		}
	}

	l.sync(t, st, n1, n2, 30000, true)
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for ops, c := range clients {
		// The client's latest head is the smaller tree: it proves the
		// new one consistent with it from tiles of both trees. A new
		// client starting from the cached head does the same.
		for _, c := range []*sumdb.Client{c, sumdb.NewClient(ops)} {
			for _, id := range []int64{3, n1, n1 + 1, 65535, 65536, n2 - 1} {
				lookup(ops, c, id)
			}
		}
		base := ops.Base()
		if got := string(ops.Latest(l.name)); got != string(l.note(t, n2)) {
			t.Errorf("%s: client's latest head is\n%s\nwant the head of size %d", base, got, n2)
		}
		var partial bool
		for _, p := range ops.Paths() {
			partial = partial || strings.Contains(p, ".p/")
		}
		if !partial {
			t.Errorf("%s: client never asked for a partial tile", base)
		}
	}
}

// TestRefresh checks that served heads are loaded on the first request,
// refreshed lazily and by Run, and that a store that stops answering leaves
// the last good head served.
func TestRefresh(t *testing.T) {
	st, dsn := openStore(t)
	ctx := context.Background()
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 900)
	l.sync(t, st, 0, 300, 300, true)

	// A second connection to the same database, closed later to make the
	// store fail.
	st2, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	lazy := New(Config{Store: st2, Log: l.name, HeadRefresh: 10 * time.Millisecond}).Handler()
	running := New(Config{Store: st, Log: l.name, HeadRefresh: 10 * time.Millisecond})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		running.Run(runCtx)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	// A server that is never refreshed after its first request.
	stale := New(Config{Store: st, Log: l.name, HeadRefresh: time.Hour}).Handler()

	for _, h := range []http.Handler{lazy, running.Handler(), stale} {
		if w := do(h, "GET", "/latest"); w.Code != 200 || w.Body.String() != string(l.note(t, 300)) {
			t.Fatalf("first /latest: %d %q", w.Code, w.Body.String())
		}
	}

	l.sync(t, st, 300, 600, 300, true)
	waitLatest := func(h http.Handler, n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			w := do(h, "GET", "/latest")
			if w.Code == 200 && w.Body.String() == string(l.note(t, n)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/latest is still %d %q, want the head of size %d", w.Code, w.Body.String(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitLatest(lazy, 600)
	waitLatest(running.Handler(), 600)
	if w := do(stale, "GET", lookupPath(t, l.mods[400])); w.Code != http.StatusNotFound {
		t.Errorf("a server still serving the tree of 300 answers a lookup of record 400: %d", w.Code)
	}
	if w := do(lazy, "GET", lookupPath(t, l.mods[400])); w.Code != http.StatusOK {
		t.Errorf("lookup of record 400 under the tree of 600: %d", w.Code)
	}

	if w := do(lazy, "GET", "/healthz"); w.Code != 200 || w.Body.String() != "ok" {
		t.Errorf("/healthz: %d %q", w.Code, w.Body.String())
	}
	st2.Close()
	// Wait (no fixed sleep) for a lazy refresh to find the store closed.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		w := do(lazy, "GET", "/healthz")
		if w.Code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz with the store closed: still %d after 10s, want 503", w.Code)
		}
	}
	for range 3 {
		if w := do(lazy, "GET", "/latest"); w.Code != 200 || w.Body.String() != string(l.note(t, 600)) {
			t.Errorf("/latest with the store closed: %d, want the last served head", w.Code)
		}
		time.Sleep(15 * time.Millisecond)
	}
	if w := do(lazy, "GET", lookupPath(t, l.mods[1])); w.Code != http.StatusInternalServerError {
		t.Errorf("lookup with the store closed: %d, want 500", w.Code)
	}
	failed := New(Config{Store: st2, Log: l.name})
	if err := failed.Refresh(ctx); err == nil {
		t.Errorf("Refresh with the store closed succeeded")
	}
	if w := do(failed.Handler(), "GET", "/latest"); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("/latest from a server that never read the store: %d (Retry-After %q), want 503 with Retry-After",
			w.Code, w.Header().Get("Retry-After"))
	}
}

// TestValidModVer checks the hand-written syntax check against the regular
// expression sumdb.Server uses.
func TestValidModVer(t *testing.T) {
	re := regexp.MustCompile(`^[^@]+@v[0-9]+\.[0-9]+\.[0-9]+(-[^@]*)?(\+incompatible)?$`)
	inputs := []string{"", "@", "a@", "@v1.0.0", "a@v1.0.0", "a@v1.0", "a@v1.0.0.0", "a@v1.0.0-", "a@v1.0.0-x@y",
		"a@v1.0.0+incompatible", "a@v1.0.0+incompatiblex", "a@v1.0.0-pre+incompatible", "a@v1.0.0+meta",
		"a@v01.2.3", "a@V1.0.0", "a@v1..0", "a@va.b.c", "a@v1.0.0\n", "a\n@v1.0.0-x\ny", "a@b@v1.0.0",
		"example.com/m@v0.0.0-20240102030405-abcdef123456", "a@v1.0.0-\xff", "\xff@v1.2.3", "a@v1.2.3 ", "a@v1.2.3-+incompatible"}
	for _, a := range []string{"", "x", "@", "a@"} {
		for _, v := range []string{"v1.2.3", "v1.2.3-rc.1", "v1.2.3+incompatible", "1.2.3", "v1.2.3x", "v1.2.3-@"} {
			inputs = append(inputs, a+v, a+"@"+v, "m/"+a+"@"+v)
		}
	}
	for _, in := range inputs {
		if got, want := validModVer(in), re.MatchString(in); got != want {
			t.Errorf("validModVer(%q) = %v, regexp says %v", in, got, want)
		}
	}
}

// TestUnescape checks the unescaping shortcuts against module.UnescapePath
// and module.UnescapeVersion.
func TestUnescape(t *testing.T) {
	inputs := []string{"", "a", "example.com/m", "example.com/M", "example.com/!m", "example.com/!!m", "example.com/m!",
		"github.com/!azure/go", "-x.com/m", "x.com/-m", "x.com//m", "x.com/m/", "/x.com", "x.com/m/v2", "x.com/m\xff",
		"x.com/m\x00", "x.com/con", "x.com/CON", "x.com/m@v", "gopkg.in/yaml.v2", "x.com/a b", "x.com/.m", "x.com/m.",
		"v1.0.0", "V1.0.0", "v1.0.0-!r!c", "v1.0.0-RC", "v1.0.0/x", "v1.0.0/", "/v1", "v1..0", "v1.0.0+incompatible",
		"v1.0.0-a.b", ".v1", "v1.", "con", "com1.x", "lpt9", "v1 0", "v1%20", "v1~1", "v1.0.0-\xff", "x.com/a\u00e9"}
	for _, in := range inputs {
		p, err := module.UnescapePath(in)
		if gp, ok := unescapePath(in); ok != (err == nil) || ok && gp != p {
			t.Errorf("unescapePath(%q) = %q, %v; module.UnescapePath gives %q, %v", in, gp, ok, p, err)
		}
		v, err := module.UnescapeVersion(in)
		if gv, ok := unescapeVersion(in); ok != (err == nil) || ok && gv != v {
			t.Errorf("unescapeVersion(%q) = %q, %v; module.UnescapeVersion gives %q, %v", in, gv, ok, v, err)
		}
	}
	for i := range 200 {
		m, _ := testRecord(i)
		ep, _ := module.EscapePath(m.Path)
		ev, _ := module.EscapeVersion(m.Version)
		if p, ok := unescapePath(ep); !ok || p != m.Path {
			t.Errorf("unescapePath(%q) = %q, %v", ep, p, ok)
		}
		if v, ok := unescapeVersion(ev); !ok || v != m.Version {
			t.Errorf("unescapeVersion(%q) = %q, %v", ev, v, ok)
		}
	}
}

// TestValidRecordText checks the record check against tlog.FormatRecord.
func TestValidRecordText(t *testing.T) {
	inputs := []string{"", "\n", "a", "a\n", "a\n\n", "a\nb\n", "a\n\nb\n", "a \n", "a\tb\n", "a\rb\n", "Ω\n",
		"\xff\n", "a\x00\n", "a\x7f\n", "\u2028\n", "a\nb", "\xef\xbf\xbd\n", "\xc0\x80\n", " \n",
		"\n\n", "a\n\n\n", "\na\n", "a\x1f\n", "a\x80\n", "a\u0085\n", "\xed\xa0\x80\n", "a\xe2\x82\n", "a\xf4\x90\x80\x80\n"}
	for i := range 300 {
		_, data := testRecord(i)
		inputs = append(inputs, string(data))
	}
	for _, in := range inputs {
		_, err := tlog.FormatRecord(1, []byte(in))
		if got, want := validRecordText([]byte(in)), err == nil; got != want {
			t.Errorf("validRecordText(%q) = %v, tlog.FormatRecord says %v", in, got, want)
		}
	}
}

// TestInTree checks the served-tree rule for tiles against the stored hash
// indexes tlog says a tree of each size holds.
func TestInTree(t *testing.T) {
	for _, n := range []int64{0, 1, 255, 256, 257, 65535, 65536, 65537, 1<<24 + 5, 72_000_000} {
		for L := -1; L <= 4; L++ {
			for _, N := range []int64{0, 1, 2, 255, 256, 257, 1000, 1 << 20} {
				for _, W := range []int{1, 2, 100, 255, 256} {
					tile := tlog.Tile{H: 8, L: L, N: N, W: W}
					level := max(L, 0)
					last := tlog.StoredHashIndex(level*8, N<<8+int64(W)-1)
					want := last < tlog.StoredHashCount(n)
					if got := inTree(tile, n); got != want {
						t.Errorf("inTree(%s, %d) = %v, want %v", tile.Path(), n, got, want)
					}
				}
			}
		}
	}
	if inTree(tlog.Tile{H: 4, L: 0, N: 0, W: 1}, 100) {
		t.Errorf("a tile of height 4 is in the tree")
	}
}

// BenchmarkLookup measures the lookup path, store round trip included.
func BenchmarkLookup(b *testing.B) {
	st, _ := openStore(b)
	l := newTestLog(b, "sum.example.test")
	l.grow(b, 5000)
	l.sync(b, st, 0, 5000, 5000, true)
	h := newServer(b, st, l.name).Handler()
	paths := make([]string, 5000)
	for i := range paths {
		paths[i] = lookupPath(b, l.mods[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			w := do(h, "GET", paths[i%len(paths)])
			if w.Code != 200 {
				b.Errorf("%s: %d", paths[i%len(paths)], w.Code)
				return
			}
			i += 7
		}
	})
}

// TestRebuiltLevel0Tiles serves a store that holds no level-0 tiles, as a
// full sync leaves it: they are rebuilt from the records, byte for byte the
// reference's, with the cache on and off. Full tiles are cached as read: a
// record lost afterwards does not change what is served, while a server
// without the cache reads (and fails to rebuild) the tile again.
func TestRebuiltLevel0Tiles(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 1000)
	if err := st.AddHead(ctx, l.name, l.head(t, 1000)); err != nil {
		t.Fatal(err)
	}
	b := l.batch(t, 0, 1000)
	b.Tiles = slices.DeleteFunc(b.Tiles, func(t store.Tile) bool { return t.Tile.L == 0 })
	b.Serve = 1000
	if err := st.Commit(ctx, l.name, b); err != nil {
		t.Fatal(err)
	}
	for _, cacheTiles := range []int{-1, 0} {
		checkTiles(t, New(Config{Store: st, Log: l.name, CacheTiles: cacheTiles}).Handler(), l, 1000, "", true)
	}

	cached := New(Config{Store: st, Log: l.name}).Handler()
	uncached := New(Config{Store: st, Log: l.name, CacheTiles: -1}).Handler()
	const p = "/tile/8/0/001"
	first := do(cached, "GET", p)
	if first.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", p, first.Code)
	}
	if _, err := st.Pool().Exec(ctx, `DELETE FROM records WHERE id = 300`); err != nil {
		t.Fatal(err)
	}
	if w := do(cached, "GET", p); w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), first.Body.Bytes()) {
		t.Errorf("GET %s again: %d, %d bytes; want the cached tile", p, w.Code, w.Body.Len())
	}
	if w := do(uncached, "GET", p); w.Code == http.StatusOK {
		t.Errorf("GET %s without a cache, a record under it gone: 200", p)
	}
}
