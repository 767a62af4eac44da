package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/buildinfo"
	"github.com/sumkeep/sumkeep/store"
)

// Header values. The slices are never modified (net/http and gin replace
// header values, they do not write into them).
var (
	hdrText      = []string{"text/plain; charset=UTF-8"}
	hdrBinary    = []string{"application/octet-stream"}
	hdrErrorText = []string{"text/plain; charset=utf-8"}
	hdrNoSniff   = []string{"nosniff"}
	hdrImmutable = []string{"public, max-age=31536000, immutable"}
	hdrShort     = []string{"public, max-age=60"}
	hdrLatest    = []string{"public, max-age=10"}
	hdrNoStore   = []string{"no-store"}
	hdrJSON      = []string{"application/json"}
)

const (
	tileWidth    = 1 << store.TileHeight
	maxPooledBuf = 256 << 10
)

func (s *Server) newEngine() *gin.Engine {
	e := gin.New()
	// Answer exactly the paths of the protocol: no redirects to other paths.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = false
	if s.logRequests {
		e.Use(s.requestLog)
	}
	if s.observer != nil {
		e.Use(s.observeRequest)
	}
	e.Use(s.recovery)
	e.NoRoute(func(c *gin.Context) { s.fail(c, http.StatusNotFound, "not found") })
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		e.Handle(m, "/latest", s.rootLatest)
		e.Handle(m, "/lookup/*mv", s.rootLookup)
		e.Handle(m, "/tile/*tile", s.rootTile)
		e.Handle(m, "/healthz", s.healthz)
		e.Handle(m, "/readyz", s.readyz)
		e.Handle(m, "/livez", s.livez)
		e.Handle(m, "/version", s.version)
		e.Handle(m, proxyPattern, s.proxy)
		e.Handle(m, "/", s.statusPage)
		e.Handle(m, "/status.json", s.statusJSON)
	}
	if s.metrics != nil {
		mountMetrics(e, s.metrics)
	}
	return e
}

// recovery turns a panic into a logged 500, like gin.Recovery but through
// the server's logger.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler {
			panic(r)
		}
		s.logger.ErrorContext(c.Request.Context(), "panic serving request",
			"path", c.Request.URL.Path, "panic", r, "stack", string(debug.Stack()))
		if !c.Writer.Written() {
			s.fail(c, http.StatusInternalServerError, "internal error")
		}
		c.Abort()
	}()
	c.Next()
}

// proxyPattern is the route of the proxy form.
const proxyPattern = "/sumdb/:name/*rest"

func (s *Server) rootLatest(c *gin.Context) { s.latest(c, s.log) }

func (s *Server) rootLookup(c *gin.Context) {
	s.lookup(c, s.log, strings.TrimPrefix(c.Param("mv"), "/"))
}

func (s *Server) rootTile(c *gin.Context) { s.tile(c, s.log, "tile"+c.Param("tile")) }

// proxy serves /sumdb/<name>/..., the form a module proxy offers.
func (s *Server) proxy(c *gin.Context) {
	name, rest := c.Param("name"), c.Param("rest")
	switch {
	case rest == "/supported":
		s.supported(c, name)
	case rest == "/latest":
		s.latest(c, name)
	case strings.HasPrefix(rest, "/lookup/"):
		s.lookup(c, name, rest[len("/lookup/"):])
	case strings.HasPrefix(rest, "/tile/"):
		s.tile(c, name, rest[1:])
	default:
		s.fail(c, http.StatusNotFound, "not found")
	}
}

// served returns the log's served head, or writes the error response and
// returns nil.
func (s *Server) served(c *gin.Context, log string) *store.Head {
	snap := s.current(c.Request.Context())
	if snap == nil {
		s.unavailable(c)
		return nil
	}
	if log == "" {
		s.fail(c, http.StatusNotFound, "not found")
		return nil
	}
	st := snap.logs[log]
	if st == nil || st.head == nil {
		s.fail(c, http.StatusNotFound, "not found")
		return nil
	}
	return st.head
}

func (s *Server) supported(c *gin.Context, log string) {
	snap := s.current(c.Request.Context())
	if snap == nil {
		s.unavailable(c)
		return
	}
	if st := snap.logs[log]; st == nil || !st.listed {
		s.fail(c, http.StatusNotFound, "not found")
		return
	}
	c.Writer.Header()["Content-Length"] = []string{"0"}
	c.Writer.WriteHeader(http.StatusOK)
	c.Writer.WriteHeaderNow()
}

func (s *Server) latest(c *gin.Context, log string) {
	head := s.served(c, log)
	if head == nil {
		return
	}
	s.write(c, hdrText, hdrLatest, head.Note)
}

// answerLookup answers a lookup and returns where the record came from
// (lookup tells the observer).
//
// A cache hit is answered before anything else: its entry was made from
// the same request bytes after every check below passed (see
// recordCache.getLookup), and holds the answer but for the tree head.
func (s *Server) answerLookup(c *gin.Context, log, mod string) (from lookupSource) {
	if head := s.servedHead(c, log); head != nil {
		if e, ok := s.cache.getLookup(log, mod); ok && e.id < head.Size {
			s.writeLookup(c, e.data, head.Note)
			return fromCache
		}
	}
	if !validModVer(mod) {
		s.fail(c, http.StatusBadRequest, "invalid module@version syntax")
		return
	}
	escPath, escVers, _ := strings.Cut(mod, "@")
	path, ok := unescapePath(escPath)
	if !ok {
		s.fail(c, http.StatusBadRequest, "invalid module path")
		return
	}
	vers, ok := unescapeVersion(escVers)
	if !ok {
		s.fail(c, http.StatusBadRequest, "invalid version")
		return
	}
	// module.Check without repeating the CheckPath UnescapePath did.
	if !semver.IsValid(vers) {
		s.fail(c, http.StatusBadRequest, "invalid version")
		return
	}
	if _, pathMajor, _ := module.SplitPathVersion(path); module.CheckPathMajor(vers, pathMajor) != nil {
		s.fail(c, http.StatusBadRequest, "invalid version for module path")
		return
	}

	ctx := c.Request.Context()
	fetcher := s.fetch[log]
	var head *store.Head
	if fetcher == nil {
		if head = s.served(c, log); head == nil {
			return
		}
	} else if snap := s.current(ctx); snap == nil {
		// The store does not answer: fetching into it would not either.
		s.unavailable(c)
		return
	} else if snap.logs[log] != nil {
		head = snap.logs[log].head // nil until the first fetch serves a head
	}
	var rec store.Record
	err := store.ErrNotFound
	if head != nil {
		rec, err = s.store.Lookup(ctx, log, path, vers, head.Size)
	}
	if errors.Is(err, store.ErrNotFound) && fetcher != nil {
		// Lazy mode: fetch it through, then answer from the store under the
		// head served now (the fetch may have advanced it).
		c.Set(fetchedKey, true)
		from = fromUpstream
		if ferr := fetcher.Fetch(ctx, path, vers); ferr != nil {
			if !errors.Is(ferr, store.ErrNotFound) {
				from = upstreamFailure
			}
			if _, ok := errors.AsType[storeFailure](ferr); ok && ctx.Err() == nil {
				// Fetched and verified, and lost: the operator must act
				// (a full disk, a database down), not the upstream.
				s.logger.ErrorContext(ctx, "storing a fetched record", "log", log, "module", path, "version", vers, "err", ferr)
			} else if !errors.Is(ferr, store.ErrNotFound) && ctx.Err() == nil {
				s.logger.WarnContext(ctx, "fetching from the upstream", "log", log, "module", path, "version", vers, "err", ferr)
			}
			// The go command prints the body of a 404 ("server response:
			// ..."): say why, not only that it is missing.
			msg := "not found"
			if r, ok := errors.AsType[clientReasoner](ferr); ok {
				msg += ": " + r.ClientReason()
			}
			s.fail(c, http.StatusNotFound, msg)
			return
		}
		// The record was proven under the store's served head, which is
		// the snapshot's or newer; tiles are prefix-stable, so it is
		// provable under the snapshot's head too if it lies inside it
		// (as for any record the store holds). Only a record the fetch
		// served a newer head for needs the snapshot refreshed: after a
		// group commit, the lookups it answered would otherwise take
		// turns refreshing it, each waiting for the others' reads.
		err = store.ErrNotFound
		if head != nil {
			rec, err = s.store.Lookup(ctx, log, path, vers, head.Size)
		}
		if errors.Is(err, store.ErrNotFound) {
			if rerr := s.Refresh(ctx); rerr != nil {
				s.logger.ErrorContext(ctx, "reading served heads from the store", "err", rerr)
			}
			if head = s.served(c, log); head == nil {
				return
			}
			rec, err = s.store.Lookup(ctx, log, path, vers, head.Size)
		}
	}
	if err != nil {
		s.storeError(ctx, c, err, "lookup", "log", log, "module", path, "version", vers)
		return
	}
	if rec.ID < 0 || rec.ID >= head.Size {
		// The store broke its contract; never serve what the head cannot prove.
		s.storeError(ctx, c, errors.New("store returned a record outside the served tree"),
			"lookup", "log", log, "module", path, "version", vers, "id", rec.ID, "size", head.Size)
		return
	}
	if !validRecordText(rec.Data) {
		s.storeError(ctx, c, errors.New("malformed record"), "lookup", "log", log, "id", rec.ID)
		return
	}
	// The answer but for the head: the id line, the record, a blank line.
	b := make([]byte, 0, 20+1+len(rec.Data)+1)
	b = strconv.AppendInt(b, rec.ID, 10)
	b = append(b, '\n')
	b = append(b, rec.Data...)
	b = append(b, '\n')
	s.cache.putLookup(log, mod, cachedRecord{id: rec.ID, data: b})
	s.writeLookup(c, b, head.Note)
	return
}

// servedHead returns the log's served head, or nil (writing nothing) when
// there is none yet. Unlike current, it never waits for the first read of
// the heads.
func (s *Server) servedHead(c *gin.Context, log string) *store.Head {
	snap := s.snap.Load()
	if snap == nil {
		return nil
	}
	s.refreshIfStale(c.Request.Context())
	if st := snap.logs[log]; st != nil {
		return st.head
	}
	return nil
}

// writeLookup sends a lookup's answer: its id line, record and blank line
// (rec), then the signed tree head note, as sumdb.Server does.
func (s *Server) writeLookup(c *gin.Context, rec, note []byte) {
	h := c.Writer.Header()
	h["Content-Type"] = hdrText
	h["Cache-Control"] = hdrShort
	h["Content-Length"] = s.contentLength(len(rec) + len(note))
	c.Writer.WriteHeader(http.StatusOK)
	c.Writer.Write(rec)
	c.Writer.Write(note)
}

func (s *Server) tile(c *gin.Context, log, p string) {
	t, err := tlog.ParseTilePath(p)
	if err != nil {
		s.fail(c, http.StatusBadRequest, "invalid tile syntax")
		return
	}
	if t.H != store.TileHeight {
		s.fail(c, http.StatusBadRequest, "unsupported tile height")
		return
	}
	head := s.served(c, log)
	if head == nil {
		return
	}
	if !inTree(t, head.Size) {
		s.fail(c, http.StatusNotFound, "not found")
		return
	}
	cache := hdrShort
	if t.W == tileWidth {
		cache = hdrImmutable
	}
	ctx := c.Request.Context()

	if t.L >= 0 {
		// Full tiles never change: they are cached as read.
		var key string
		if t.W == tileWidth {
			key = log + "\x00" + t.Path()
			if e, ok := s.tiles.get(key); ok {
				s.write(c, hdrBinary, cache, e.data)
				return
			}
		}
		data, err := s.store.ReadTiles(ctx, log, []tlog.Tile{t})
		if tf, ok := s.fetch[log].(TileFetcher); ok && errors.Is(err, store.ErrNotFound) {
			// Lazy mode: fetch it through, then answer from the store.
			c.Set(fetchedKey, true)
			if ferr := tf.FetchTile(ctx, t); ferr != nil {
				if !errors.Is(ferr, store.ErrNotFound) && ctx.Err() == nil {
					s.logger.WarnContext(ctx, "fetching a tile from the upstream", "log", log, "tile", p, "err", ferr)
				}
			} else {
				data, err = s.store.ReadTiles(ctx, log, []tlog.Tile{t})
			}
		}
		if err != nil {
			s.storeError(ctx, c, err, "reading tile", "log", log, "tile", p)
			return
		}
		if len(data) != 1 || len(data[0]) != t.W*tlog.HashSize {
			s.storeError(ctx, c, errors.New("store returned a tile of the wrong size"),
				"reading tile", "log", log, "tile", p)
			return
		}
		if t.W == tileWidth {
			s.tiles.put(key, cachedRecord{data: data[0]})
		}
		s.write(c, hdrBinary, cache, data[0])
		return
	}

	// A data tile: records without their id lines, each followed by a
	// newline (the blank line that ends a formatted record).
	start := t.N << store.TileHeight
	recs, err := s.store.ReadRecords(ctx, log, start, int64(t.W))
	if err != nil {
		s.storeError(ctx, c, err, "reading records", "log", log, "tile", p)
		return
	}
	if len(recs) != t.W {
		s.storeError(ctx, c, errors.New("store returned the wrong number of records"),
			"reading records", "log", log, "tile", p)
		return
	}
	bp := s.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	for i, r := range recs {
		if r.ID != start+int64(i) || !validRecordText(r.Data) {
			s.putBuf(bp, b)
			s.storeError(ctx, c, errors.New("store returned a malformed or misplaced record"),
				"reading records", "log", log, "tile", p, "id", start+int64(i))
			return
		}
		b = append(b, r.Data...)
		b = append(b, '\n')
	}
	s.write(c, hdrText, cache, b)
	s.putBuf(bp, b)
}

// inTree reports whether tile t lies inside a tree of n records: a tile at
// level L holds hashes at tree level 8·L, of which the tree has n>>(8·L), and
// a data tile holds records.
func inTree(t tlog.Tile, n int64) bool {
	if t.H != store.TileHeight || t.W < 1 || t.W > tileWidth || t.N < 0 || n <= 0 {
		return false
	}
	var shift uint
	if t.L > 0 {
		shift = uint(t.L) * store.TileHeight
	}
	var hashes int64 // hashes stored at the tile's level
	if shift < 63 {
		hashes = n >> shift
	}
	if t.N > hashes>>store.TileHeight {
		return false
	}
	return t.N<<store.TileHeight+int64(t.W) <= hashes
}

// healthz answers 200 when the store answers (within StoreTimeout).
func (s *Server) healthz(c *gin.Context) {
	ctx := c.Request.Context()
	if _, err := s.store.Logs(ctx); err != nil {
		s.logger.WarnContext(ctx, "health check: store does not answer", "err", err)
		s.unavailable(c)
		return
	}
	s.write(c, hdrErrorText, hdrNoStore, []byte("ok"))
}

// livez answers 200 while the process runs: it asks nothing of the store,
// so a store outage makes /readyz 503, not /livez.
func (s *Server) livez(c *gin.Context) {
	s.write(c, hdrErrorText, hdrNoStore, []byte("live"))
}

// version answers the build's version, commit and Go version as JSON.
func (s *Server) version(c *gin.Context) {
	body, err := json.Marshal(buildinfo.Read())
	if err != nil {
		s.fail(c, http.StatusInternalServerError, "internal error")
		return
	}
	s.write(c, hdrJSON, hdrNoStore, append(body, '\n'))
}

// readyz answers 200 when the server can answer the protocol: the store
// answers and the root log (or, without one, some log) has a served head,
// in every mode: a lazy server too serves nothing a go command can verify
// until it serves a head. The whole check has one StoreTimeout, so that a
// hung store makes it answer 503 in that time.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.storeTimeout)
	defer cancel()
	names, err := s.store.Logs(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "readiness check: store does not answer", "err", err)
		s.unavailable(c)
		return
	}
	logs := names
	if s.log != "" {
		logs = []string{s.log}
	}
	for _, log := range logs {
		_, err := s.store.ServedHead(ctx, log)
		switch {
		case err == nil:
			// Ready means the protocol is answered from that head: if the
			// heads requests are answered from do not hold it yet, read
			// them now, so that a lookup right after this 200 finds it.
			if snap := s.snap.Load(); snap == nil || snap.logs[log] == nil || snap.logs[log].head == nil {
				if err := s.Refresh(ctx); err != nil {
					s.logger.WarnContext(ctx, "readiness check: reading the served heads", "err", err)
					s.unavailable(c)
					return
				}
			}
			s.write(c, hdrErrorText, hdrNoStore, []byte("ready"))
			return
		case store.Unavailable(err):
			s.logger.WarnContext(ctx, "readiness check: store does not answer", "err", err)
			s.unavailable(c)
			return
		case !errors.Is(err, store.ErrNotFound):
			s.logger.ErrorContext(ctx, "readiness check: reading the served head", "log", log, "err", err)
			s.fail(c, http.StatusServiceUnavailable, "cannot read the served head")
			return
		}
	}
	c.Writer.Header()["Retry-After"] = s.retryAfter
	s.fail(c, http.StatusServiceUnavailable, "no served head yet: run a sync")
}

// write sends a 200 response with the given body.
func (s *Server) write(c *gin.Context, contentType, cache []string, body []byte) {
	h := c.Writer.Header()
	h["Content-Type"] = contentType
	h["Cache-Control"] = cache
	h["Content-Length"] = s.contentLength(len(body))
	c.Writer.WriteHeader(http.StatusOK)
	c.Writer.Write(body)
}

// smallAnswer bounds the answers whose Content-Length values are made
// once (contentLength): a lookup's answer is a few hundred bytes.
const smallAnswer = 4096

// contentLengths returns the Content-Length header values of 0 to n-1
// bytes, each a slice of one string, all of them in one backing array.
func contentLengths(n int) []string {
	ends := make([]int, n)
	var digits []byte
	for i := range ends {
		digits = strconv.AppendInt(digits, int64(i), 10)
		ends[i] = len(digits)
	}
	all, start := string(digits), 0
	vals := make([]string, n)
	for i, end := range ends {
		vals[i], start = all[start:end], end
	}
	return vals
}

// contentLength returns the Content-Length header value of n bytes. For
// a small answer it is made once, as a slice of one value whose capacity
// ends there (a header value is never written into, and an append copies);
// allocating it per answer cost a lookup two of its allocations.
func (s *Server) contentLength(n int) []string {
	if n >= 0 && n < len(s.clens) {
		return s.clens[n : n+1 : n+1]
	}
	return []string{strconv.Itoa(n)}
}

// clientReasoner is a Fetcher's error that can say why to a client: a
// sentence with no secrets (no upstream URL) and no hostile bytes.
type clientReasoner interface {
	error
	ClientReason() string
}

// storeFailure is a Fetcher's error that says the store, not the upstream,
// failed: what was fetched and verified could not be kept.
type storeFailure interface {
	error
	StoreFailed() bool
}

// fail sends an error response the way http.Error does, and uncacheable.
func (s *Server) fail(c *gin.Context, code int, msg string) {
	h := c.Writer.Header()
	h.Del("Content-Length")
	h["Content-Type"] = hdrErrorText
	h["X-Content-Type-Options"] = hdrNoSniff
	h["Cache-Control"] = hdrNoStore
	c.Writer.WriteHeader(code)
	c.Writer.WriteString(msg + "\n")
}

// unavailable answers 503: the store is down or too slow; ask again later.
func (s *Server) unavailable(c *gin.Context) {
	c.Writer.Header()["Retry-After"] = s.retryAfter
	s.fail(c, http.StatusServiceUnavailable, "store unavailable, try again later")
}

// storeError answers a store failure: 404 for not-found, 503 when the store
// is unavailable, otherwise a logged 500 that does not show the error.
func (s *Server) storeError(ctx context.Context, c *gin.Context, err error, what string, args ...any) {
	if errors.Is(err, store.ErrNotFound) {
		s.fail(c, http.StatusNotFound, "not found")
		return
	}
	if ctx.Err() != nil {
		// The client went away; nobody reads the answer.
		s.fail(c, http.StatusInternalServerError, "canceled")
		return
	}
	if store.Unavailable(err) {
		// One message for every request that finds the store down, so that
		// the log's rate limit counts them together.
		s.logger.WarnContext(ctx, "store unavailable", append(args, "while", what, "err", err)...)
		s.unavailable(c)
		return
	}
	s.logger.ErrorContext(ctx, "store: "+what, append(args, "err", err)...)
	s.fail(c, http.StatusInternalServerError, "internal error")
}

func (s *Server) putBuf(bp *[]byte, b []byte) {
	if cap(b) > maxPooledBuf {
		return
	}
	*bp = b[:0]
	s.bufs.Put(bp)
}

// unescapePath is module.UnescapePath, without copying a path that has no
// escapes (the common case).
func unescapePath(esc string) (string, bool) {
	if !unescaped(esc) {
		path, err := module.UnescapePath(esc)
		return path, err == nil
	}
	return esc, module.CheckPath(esc) == nil
}

// unescapeVersion is module.UnescapeVersion, without copying a version that
// has no escapes. For a single path element, module.CheckFilePath makes the
// same check UnescapeVersion does.
func unescapeVersion(esc string) (string, bool) {
	if !unescaped(esc) || strings.IndexByte(esc, '/') >= 0 {
		v, err := module.UnescapeVersion(esc)
		return v, err == nil
	}
	return esc, module.CheckFilePath(esc) == nil
}

// unescaped reports whether the escaped form s (of a module path or
// version) stands for itself: ASCII without "!" or upper case.
func unescaped(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b >= utf8.RuneSelf || b == '!' || 'A' <= b && b <= 'Z' {
			return false
		}
	}
	return true
}

// validModVer reports whether mod matches the syntax sumdb.Server accepts,
// ^[^@]+@v[0-9]+\.[0-9]+\.[0-9]+(-[^@]*)?(\+incompatible)?$, without a
// regular expression.
func validModVer(mod string) bool {
	at := strings.IndexByte(mod, '@')
	if at <= 0 {
		return false
	}
	v := mod[at+1:]
	if len(v) == 0 || v[0] != 'v' {
		return false
	}
	v = v[1:]
	for i := range 3 {
		n := 0
		for n < len(v) && '0' <= v[n] && v[n] <= '9' {
			n++
		}
		if n == 0 {
			return false
		}
		v = v[n:]
		if i < 2 {
			if len(v) == 0 || v[0] != '.' {
				return false
			}
			v = v[1:]
		}
	}
	switch {
	case v == "" || v == "+incompatible":
		return true
	case v[0] == '-':
		return strings.IndexByte(v, '@') < 0
	}
	return false
}

// validRecordText reports whether text is a well-formed record, as
// tlog.FormatRecord requires: no control characters but newlines, valid
// UTF-8, no blank line, ending in a newline.
func validRecordText(text []byte) bool {
	// Whole-slice passes (utf8.Valid and bytes.Index are vectorised over
	// ASCII) and one byte loop: decoding rune by rune took a lookup that
	// reached the store ~2,800 instructions for a 150-byte record.
	// Bytes of multi-byte UTF-8 sequences are all 0x80 or more, so only
	// ASCII bytes can be control characters.
	if len(text) == 0 || text[len(text)-1] != '\n' || !utf8.Valid(text) || bytes.Contains(text, blankLine) {
		return false
	}
	for _, c := range text {
		if c < 0x20 && c != '\n' {
			return false
		}
	}
	return true
}

var blankLine = []byte("\n\n")
