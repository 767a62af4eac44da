// Package server answers the Go checksum database protocol from a
// store.Store: one default log at the root (as sum.golang.org does) and every
// stored log in the module proxy form /sumdb/<name>/.
//
// # Protocol
//
// A checksum database serves (golang.org/x/mod/sumdb.Server is the reference
// for the exact bytes, and this package matches it byte for byte):
//
//   - GET /latest: the signed tree head note.
//   - GET /lookup/<path>@<version> (path and version escaped as in module
//     proxy URLs, "!x" for upper-case X): the record's id on a line of its
//     own, the record (two go.sum lines), a blank line, then the signed tree
//     head note the record is provable under.
//   - GET /tile/8/<L>/<N>[.p/<W>]: a hash tile: W (default 256) hashes of 32
//     bytes at tree level 8·L, starting at hash 256·N.
//   - GET /tile/8/data/<N>[.p/<W>]: a data tile: records 256·N through
//     256·N+W-1, each as its record bytes followed by a newline (that is, a
//     formatted record without its id line), concatenated.
//   - GET /sumdb/<name>/supported (proxy form only): 200 means "use this
//     proxy for the database and never fall back to it directly"; 404 and
//     410 mean "try the next proxy"; anything else makes the go command give
//     up on the database.
//
// The go command asks for /lookup and hash tiles only, never /latest or data
// tiles. It asks for the partial tile its cached tree head needs (.p/W) and
// falls back to the full tile. Mirrors and auditors (sumkeep sync among
// them) ask for /latest and data tiles.
//
// # What is served
//
// Everything is answered under the store's served head (store.ServedHead):
// the newest head for which every tile and record below it is stored. The
// served head of each log is cached in memory and re-read every
// Config.HeadRefresh; the cache never goes backwards. A lookup asks the store
// for a record with an id below the served size, so a record that the served
// head cannot prove is never returned, and a tile is served only when it lies
// inside the served tree. The signed note is the upstream's, byte for byte:
// the server never signs anything, and every client checks every answer
// against the upstream's key.
//
// # Status codes
//
//   - 200: found.
//   - 400: malformed lookup (no "@", bad escaping, invalid module path or
//     version) or tile path (tlog.ParseTilePath refuses it, or a tile height
//     other than 8).
//   - 404: no such log, no served head yet, a record or tile not stored, or a
//     tile or record outside the served tree.
//   - 500: the store failed (the error is logged, not shown).
//   - 503 with Retry-After: the store is unavailable (down, unreachable, or
//     it did not answer within Config.StoreTimeout: every store call made
//     for a request has that deadline), or no served head could be read yet.
//     The request was fine; ask again later.
//
// # Status
//
//   - GET /: the status page, plain HTML without any script: the GOSUMDB
//     and GOPROXY lines that point the go command here, each log's served
//     and newest heads and its syncing, the upstreams, and any evidence
//     of misbehaviour first. 503 when the store does not answer.
//   - GET /status.json: the same as JSON (see Status for the fields).
//
// # Health
//
//   - GET /healthz: 200 when the store answers within StoreTimeout, else 503.
//   - GET /readyz: 200 when the store answers and the root log has a served
//     head, in every mode, else 503 with Retry-After, within StoreTimeout:
//     a load balancer sends no traffic to a server that can only fail. It
//     turns 200 again by itself once the store answers.
//   - GET /livez: 200 while the process runs; it asks nothing of the store.
//
// Errors are logged through a rate limiter (internal/lograte): during an
// outage every request fails the same way, and one line per second for each
// kind of failure, with a count, says as much as one per request.
//
// # Caching
//
// Full tiles (W = 256, hash or data) never change:
// "Cache-Control: public, max-age=31536000, immutable". Partial tiles and
// lookups get "public, max-age=60" (a lookup's record never changes but the
// head that comes with it grows; clients accept an older head), /latest gets
// "public, max-age=10" because mirrors poll it to follow the log. Errors are
// sent with "Cache-Control: no-store" so that a record not yet mirrored is
// not remembered as missing.
//
// # Gin
//
// Handler returns a gin engine built with gin.New and a recovery middleware
// that logs through Config.Logger; with Config.RequestLog it also logs one
// line per request there (see requestlog.go). Gin's mode is
// process-wide (there is no per-engine mode): this package never calls
// gin.SetMode, so a command should call gin.SetMode(gin.ReleaseMode) (or set
// GIN_MODE=release) before New to silence gin's route listing on stdout.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/lograte"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// DefaultHeadRefresh is how often served heads are re-read when
// Config.HeadRefresh is zero.
const DefaultHeadRefresh = time.Second

// DefaultStoreTimeout is the deadline of every store call made for a
// request when Config.StoreTimeout is zero.
const DefaultStoreTimeout = 5 * time.Second

// Config configures a Server.
type Config struct {
	// Store is where everything served comes from: a store.Store, or a
	// read replica of one.
	Store store.Reader
	// Log is the name of the log served at the root, e.g. "sum.golang.org".
	// Empty serves no log at the root; /sumdb/<name>/ works regardless.
	Log string
	// Logger receives store errors and recovered panics; nil discards them.
	// Records of level Warn and above are rate-limited (one per second for
	// each message, with a count of those dropped).
	Logger *slog.Logger
	// StoreTimeout is the deadline of every store call made for a request;
	// a request whose store does not answer in time gets a 503. Zero means
	// DefaultStoreTimeout.
	StoreTimeout time.Duration
	// HeadRefresh is how often the served heads (and the list of logs) are
	// re-read from the store; zero means DefaultHeadRefresh.
	HeadRefresh time.Duration
	// CacheRecords bounds how many found records are kept in memory for
	// lookups (about 300 bytes each); zero means DefaultCacheRecords and a
	// negative value disables the cache.
	CacheRecords int
	// CacheTiles bounds how many full hash tiles (8 KiB each) are kept in
	// memory; zero means DefaultCacheTiles and a negative value disables
	// the cache. Full tiles never change, and a level-0 tile of a fully
	// synced log is rebuilt from 256 records on every store read.
	CacheTiles int
	// Fetch maps log names to fetchers for lazy mode: a lookup the store
	// cannot answer is fetched through them and then answered from the
	// store. Logs without one answer 404 for what the store lacks.
	Fetch map[string]Fetcher

	// Status page (/ and /status.json). None of these is needed: a server
	// without them shows what the store tells.

	// Key is the verifier key of the log served at the root, shown in the
	// GOSUMDB line of the status page.
	Key string
	// PublicURL is the URL clients reach this server at (behind a proxy
	// that terminates TLS, say), checked with CheckPublicURL. Empty: the
	// page builds it from each request (see Status.URL), and never from
	// X-Forwarded-* headers, which any client can send.
	PublicURL string
	// StatusStore is where the page reads the newest heads and the
	// evidence; nil uses Store when it has those methods (a store.Store
	// does). Give the primary here when Store is a read replica's reader
	// without them.
	StatusStore StatusReader
	// Upstreams measures the upstreams (their state and latency); nil
	// shows UpstreamURLs as "not measured".
	Upstreams upstream.HealthReporter
	// UpstreamURLs are the configured upstreams, shown when Upstreams is
	// nil.
	UpstreamURLs []string
	// Syncs is what an in-process sync schedule did; nil means another
	// process syncs (or none does), and the page says so.
	Syncs *SyncLog
	// StatusCache is how long the page's data is reused; zero means
	// DefaultStatusCache.
	StatusCache time.Duration

	// RequestLog logs one line per request through Logger (see
	// requestLog); RequestLogSample, in (0, 1], is the share of requests
	// logged (zero means all).
	RequestLog       bool
	RequestLogSample float64
	// Observer, if not nil, is told of every request and lookup answered
	// (package metrics implements it).
	Observer Observer
	// Metrics, if not nil, is served at GET /metrics (package metrics
	// makes one for Prometheus).
	Metrics http.Handler
}

// A Fetcher fetches a record the store lacks from the upstream, verifies it
// and stores it with the tiles that prove it under the served head, which it
// may advance (sumkeep's sync.Syncer in lazy mode). It returns an error
// wrapping store.ErrNotFound when the upstream's log has no such record, and
// another error when the upstream could not be asked; both make the lookup
// a 404. An error with a method ClientReason() string says why in the
// 404's body, which the go command shows ("server response: ...").
type Fetcher interface {
	Fetch(ctx context.Context, path, version string) error
}

// A TileFetcher is a Fetcher that can also fetch a hash tile of the served
// tree the store lacks, authenticate it against the served head and store
// it (mirror.Syncer in lazy mode). A go client that holds a head this
// mirror never stored (seen at the upstream directly, say) proves it under
// the served head with such tiles; without them it cannot use the mirror.
type TileFetcher interface {
	FetchTile(ctx context.Context, t tlog.Tile) error
}

// DefaultCacheRecords is the default size of the lookup cache (~30 MB).
const DefaultCacheRecords = 100_000

// DefaultCacheTiles is the default size of the tile cache (32 MiB).
const DefaultCacheTiles = 4096

// Server answers the checksum database protocol from a store. It is safe for
// concurrent use.
type Server struct {
	store        store.Reader // every call with the deadline storeTimeout
	log          string
	logger       *slog.Logger
	refresh      time.Duration
	storeTimeout time.Duration
	retryAfter   []string // Retry-After of 503 answers
	engine       *gin.Engine

	snap        atomic.Pointer[snapshot]
	refreshSem  chan struct{} // held while a refresh runs (a lock that can be waited for with a deadline)
	flightMu    sync.Mutex
	flight      chan struct{} // closed when the background refresh under way ends; nil: none
	refreshing  atomic.Bool   // flight != nil, read without the mutex on the hot path
	epoch       time.Time     // origin of lastAttempt (monotonic clock)
	lastAttempt atomic.Int64  // time.Since(epoch) at the start of the last refresh
	failing     atomic.Bool   // the last refresh failed (to log transitions only)
	bufs        sync.Pool     // *[]byte response buffers
	clens       []string      // see contentLength
	cache       *recordCache  // nil: no caching
	tiles       *recordCache  // full hash tiles; nil: no caching
	fetch       map[string]Fetcher

	key          string
	publicURL    string
	publicPath   string // publicURL's path, answered as the root too; "" for none
	upstreams    upstream.HealthReporter
	upstreamURLs []string
	syncs        *SyncLog
	statusStore  StatusReader // nil: the store cannot tell
	statusTTL    time.Duration
	status       statusCache
	logRequests  bool
	sample       sampler
	observer     Observer     // nil: none
	metrics      http.Handler // served at /metrics; nil: none
}

// snapshot is what the server knows about the logs at one time. It is
// immutable once published.
type snapshot struct {
	logs map[string]*logState
}

type logState struct {
	listed bool        // store.Logs names it: /sumdb/<name>/supported is 200
	head   *store.Head // the served head; nil until there is one
}

// New returns a server for cfg. It reads nothing yet: served heads are loaded
// by Refresh, by Run, or on the first request.
func New(cfg Config) *Server {
	s := &Server{
		log:          cfg.Log,
		refresh:      cfg.HeadRefresh,
		storeTimeout: cfg.StoreTimeout,
		refreshSem:   make(chan struct{}, 1),
		epoch:        time.Now(),
		cache:        newRecordCache(cmp.Or(cfg.CacheRecords, DefaultCacheRecords)),
		tiles:        newRecordCache(cmp.Or(cfg.CacheTiles, DefaultCacheTiles)),
		fetch:        cfg.Fetch,
		key:          cfg.Key,
		publicURL:    cfg.PublicURL,
		upstreams:    cfg.Upstreams,
		upstreamURLs: cfg.UpstreamURLs,
		syncs:        cfg.Syncs,
		statusTTL:    cmp.Or(cfg.StatusCache, DefaultStatusCache),
		logRequests:  cfg.RequestLog,
		observer:     cfg.Observer,
		metrics:      cfg.Metrics,
	}
	s.statusStore = cfg.StatusStore
	if s.statusStore == nil {
		s.statusStore, _ = cfg.Store.(StatusReader)
	}
	s.sample.rate = cfg.RequestLogSample
	if s.sample.rate <= 0 || s.sample.rate > 1 {
		s.sample.rate = 1
	}
	if cfg.Logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	} else {
		s.logger = slog.New(lograte.New(cfg.Logger.Handler(), lograte.Options{}))
	}
	if s.refresh <= 0 {
		s.refresh = DefaultHeadRefresh
	}
	if s.storeTimeout <= 0 {
		s.storeTimeout = DefaultStoreTimeout
	}
	bounded, _ := cfg.Store.(boundedLookuper)
	s.store = deadlineReader{r: cfg.Store, d: s.storeTimeout, bounded: bounded}
	s.retryAfter = []string{strconv.Itoa(max(1, int(s.storeTimeout.Round(time.Second)/time.Second)))}
	s.clens = contentLengths(smallAnswer)
	s.bufs.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	s.publicPath = publicPath(s.publicURL)
	s.engine = s.newEngine()
	return s
}

// Handler returns the HTTP handler serving the protocol. When
// Config.PublicURL has a path (https://host/sumkeep), it answers under that
// path as well as at the root: a reverse proxy that passes /sumkeep/lookup/…
// on unchanged works as well as one that strips the path.
func (s *Server) Handler() http.Handler {
	if s.publicPath == "" {
		return s.engine
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := underPublic(r.URL.Path, s.publicPath); ok {
			r2 := new(http.Request)
			*r2 = *r
			u := *r.URL
			u.Path, u.RawPath = rest, ""
			if u.Path == "" {
				u.Path = "/"
			}
			r2.URL = &u
			r = r2
		}
		s.engine.ServeHTTP(w, r)
	})
}

// underPublic returns what follows the public path in a request's path
// (or its RequestURI), and whether it is under it: at a segment boundary.
func underPublic(path, public string) (string, bool) {
	rest, ok := strings.CutPrefix(path, public)
	return rest, ok && (rest == "" || rest[0] == '/' || rest[0] == '?')
}

// publicPath returns the path of a public URL checked by CheckPublicURL
// ("" for none, else "/sumkeep" without a trailing slash).
func publicPath(public string) string {
	u, err := url.Parse(public)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// Run re-reads the served heads every Config.HeadRefresh until ctx is done.
// Running it is optional (a server also refreshes lazily when a request finds
// its heads older than that), but it keeps requests from ever waiting on a
// refresh.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	for {
		s.refreshAndLog(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh re-reads the list of logs and every served head now. A head
// smaller than the one already served is ignored: what is served never goes
// backwards. When reading some log's head fails, the others are still
// updated and the error is returned.
func (s *Server) Refresh(ctx context.Context) error {
	select {
	case s.refreshSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.refreshSem }()
	return s.refreshLocked(ctx)
}

func (s *Server) refreshLocked(ctx context.Context) error {
	s.lastAttempt.Store(int64(time.Since(s.epoch)))
	names, err := s.store.Logs(ctx)
	if err != nil {
		return err
	}
	old := s.snap.Load()
	next := &snapshot{logs: make(map[string]*logState, len(names)+1)}
	var errs []error
	fetch := func(name string, listed bool) {
		if _, ok := next.logs[name]; ok {
			return
		}
		st := &logState{listed: listed}
		if old != nil {
			if o := old.logs[name]; o != nil {
				st.head = o.head
			}
		}
		h, err := s.store.ServedHead(ctx, name)
		switch {
		case err == nil:
			if st.head == nil || h.Size > st.head.Size {
				st.head = &h
			}
		case errors.Is(err, store.ErrNotFound):
			// No served head yet: keep what was served before, if anything.
		default:
			errs = append(errs, err)
		}
		next.logs[name] = st
	}
	for _, name := range names {
		fetch(name, true)
	}
	if s.log != "" {
		fetch(s.log, false)
	}
	s.snap.Store(next)
	return errors.Join(errs...)
}

// refreshAndLog refreshes and logs failures when they start and when they
// end, not every time.
func (s *Server) refreshAndLog(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.refreshTimeout())
	defer cancel()
	err := s.Refresh(ctx)
	switch {
	case err != nil && !s.failing.Swap(true):
		s.logger.Error("reading served heads from the store", "err", err)
	case err == nil && s.failing.Swap(false):
		s.logger.Info("reading served heads from the store works again")
	}
}

func (s *Server) refreshTimeout() time.Duration {
	return max(10*time.Second, 5*s.refresh)
}

// current returns the snapshot to answer a request with. Requests never wait
// on a refresh longer than StoreTimeout: before the first load has
// succeeded, a request starts one in the background (or joins the one under
// way) and waits for it at most that long, then answers 503 if there is
// still nothing to serve; later ones never wait: when the snapshot is older
// than HeadRefresh, one background refresh is started and the current
// snapshot is used meanwhile.
func (s *Server) current(ctx context.Context) *snapshot {
	snap := s.snap.Load()
	if snap == nil {
		done := s.refreshInBackground(ctx)
		t := time.NewTimer(s.storeTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
		}
		return s.snap.Load() // nil if the store is down
	}
	s.refreshIfStale(ctx)
	return snap
}

// refreshIfStale starts a background refresh when the snapshot is older
// than HeadRefresh and none is under way.
func (s *Server) refreshIfStale(ctx context.Context) {
	if time.Since(s.epoch)-time.Duration(s.lastAttempt.Load()) >= s.refresh && !s.refreshing.Load() {
		s.refreshInBackground(ctx)
	}
}

// refreshInBackground starts a refresh unless one is under way and returns
// a channel closed when the one under way ends. A panic in it is logged,
// not fatal.
func (s *Server) refreshInBackground(ctx context.Context) <-chan struct{} {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.flight != nil {
		return s.flight
	}
	done := make(chan struct{})
	s.flight = done
	s.refreshing.Store(true)
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				s.logger.Error("panic reading served heads from the store", "panic", r, "stack", string(debug.Stack()))
			}
			s.flightMu.Lock()
			s.flight = nil
			s.refreshing.Store(false)
			s.flightMu.Unlock()
			close(done)
		}()
		s.refreshAndLog(ctx)
	}()
	return done
}

// deadlineReader gives every call a deadline: a database that stopped
// answering (a paused server, a dead network path) must cost a request
// StoreTimeout, not minutes. A call that runs out of time fails with an
// error wrapping store.ErrUnavailable.
type deadlineReader struct {
	r store.Reader
	d time.Duration
	// bounded is r's own bounded lookup, if it has one.
	bounded boundedLookuper
}

// boundedLookuper is a store that bounds a lookup's time itself, without
// a context made for the lookup: every store call costs a context and a
// timer, and for a lookup on the way to the database (the cache missed)
// they were a fifth of its allocations (postgres.Store.LookupWithin).
type boundedLookuper interface {
	// LookupWithin is Lookup, failing with an error wrapping
	// context.DeadlineExceeded if it has no answer within d.
	LookupWithin(ctx context.Context, d time.Duration, log, path, version string, maxID int64) (store.Record, error)
}

func (d deadlineReader) err(ctx context.Context, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer within %v: %w", store.ErrUnavailable, d.d, err)
	}
	return err
}

func (d deadlineReader) Logs(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.d)
	defer cancel()
	v, err := d.r.Logs(ctx)
	return v, d.err(ctx, err)
}

func (d deadlineReader) ServedHead(ctx context.Context, log string) (store.Head, error) {
	ctx, cancel := context.WithTimeout(ctx, d.d)
	defer cancel()
	v, err := d.r.ServedHead(ctx, log)
	return v, d.err(ctx, err)
}

func (d deadlineReader) Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error) {
	if d.bounded != nil {
		v, err := d.bounded.LookupWithin(ctx, d.d, log, path, version, maxID)
		if err != nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no answer within %v: %w", store.ErrUnavailable, d.d, err)
		}
		return v, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.d)
	defer cancel()
	v, err := d.r.Lookup(ctx, log, path, version, maxID)
	return v, d.err(ctx, err)
}

func (d deadlineReader) ReadRecords(ctx context.Context, log string, start, n int64) ([]store.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, d.d)
	defer cancel()
	v, err := d.r.ReadRecords(ctx, log, start, n)
	return v, d.err(ctx, err)
}

func (d deadlineReader) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.d)
	defer cancel()
	v, err := d.r.ReadTiles(ctx, log, tiles)
	return v, d.err(ctx, err)
}
