package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/sumdb/note"

	"github.com/sumkeep/sumkeep/internal/redact"
	"github.com/sumkeep/sumkeep/metrics"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/backend"
	"github.com/sumkeep/sumkeep/store/readreplica"
	"github.com/sumkeep/sumkeep/upstream"
)

// openStore opens the store --db names and brings its schema up to date.
func (e *env) openStore(ctx context.Context) (store.Store, error) {
	return e.openStoreAt(ctx, e.db)
}

// openStoreAt opens a store: Postgres for a postgres:// URL, else the
// SQLite file at that path (created if missing).
func (e *env) openStoreAt(ctx context.Context, db string) (store.Store, error) {
	st, err := backend.Open(ctx, db)
	if err != nil {
		return nil, dbError(db, err)
	}
	return st, nil
}

// openStoreReadOnly opens the existing store --db names for the commands
// that only read it (verify, status, export's source). It creates
// nothing: a store that is not there, or a database that is not a
// sumkeep store, is an environment error (exit 2) saying so.
func (e *env) openStoreReadOnly(ctx context.Context) (store.Store, error) {
	st, err := backend.OpenReadOnly(ctx, e.db)
	if err != nil {
		return nil, dbError(e.db, err)
	}
	return st, nil
}

// openStoreWaiting opens the store for serve (see backend.OpenWaiting).
func (e *env) openStoreWaiting(ctx context.Context) (serve, raw store.Store, ready func() bool, err error) {
	serve, raw, ready, err = backend.OpenWaiting(ctx, e.db, openTimeout, e.logger)
	if err != nil {
		return nil, nil, nil, dbError(e.db, err)
	}
	return serve, raw, ready, nil
}

// replicaOpenTimeout bounds the first attempt to reach a read replica; one
// that does not answer by then is used once it does.
const replicaOpenTimeout = 10 * time.Second

// openReadReplica opens the read replica --db-read names (see
// backend.OpenReplica), saying so when it does not answer yet.
func (e *env) openReadReplica(ctx context.Context, dsn string) (store.Store, error) {
	st, waiting, err := backend.OpenReplica(ctx, dsn, replicaOpenTimeout)
	switch {
	case errors.Is(err, backend.ErrReplicaDSN):
		return nil, usageError{"--db-read: " + err.Error()}
	case errors.Is(err, backend.ErrDSN):
		return nil, envError{fmt.Errorf("--db-read: %w", err)}
	case err != nil:
		return nil, envError{fmt.Errorf("--db-read %s: %w", redact.DSN(dsn), err)}
	}
	if waiting != nil {
		e.logger.Warn("the read replica does not answer yet: reading from the primary (--db) until it does",
			"replica", redact.DSN(dsn), "err", waiting)
	}
	return st, nil
}

// dbError says what is wrong with the store --db names, masking any
// password in it: a keyword=value string is a usage error, everything
// else an environment error (exit 2).
func dbError(db string, err error) error {
	switch {
	case errors.Is(err, backend.ErrKeyValueDSN):
		return usageError{err.Error()}
	case errors.Is(err, backend.ErrDSN):
		return envError{fmt.Errorf("--db: %w", err)}
	case errors.Is(err, fs.ErrNotExist):
		return envError{fmt.Errorf("--db %s: no sumkeep store there (sumkeep sync, seed or import make one): %w", redact.DSN(db), err)}
	case !backend.IsPostgres(db) && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ENOTDIR)):
		// A container's read-only root, a directory of another user's, a
		// file where a directory should be.
		return envError{fmt.Errorf("--db %s: the store cannot be made or written there: %w; give --db (or SUMKEEP_DB) a writable path, or a postgres:// URL", db, err)}
	case errors.Is(err, store.ErrNotStore) && backend.IsPostgres(db):
		return envError{fmt.Errorf("--db %s: %w; run sumkeep migrate to make it one", redact.DSN(db), err)}
	case errors.Is(err, store.ErrNotStore):
		return envError{fmt.Errorf("--db %s: %w; it is left as it is", redact.DSN(db), err)}
	case errors.Is(err, store.ErrSchemaVersion):
		return envError{fmt.Errorf("--db %s: %w", redact.DSN(db), err)}
	}
	return envError{err}
}

// logName is the name of the upstream log: the name in its key.
func (e *env) logName() (string, error) {
	v, err := note.NewVerifier(e.key)
	if err != nil {
		return "", envError{fmt.Errorf("--key %q: %v", e.key, err)}
	}
	return v.Name(), nil
}

// modeFlag checks a --mode value.
func modeFlag(mode string) error {
	switch mode {
	case mirror.ModeAuto, mirror.ModeFull, mirror.ModeLazy:
		return nil
	}
	return usageError{fmt.Sprintf("--mode %q: want auto, full or lazy", mode)}
}

const modeUsage = "auto, full or lazy: full copies every record and tile (the upstream must serve data tiles); lazy keeps what is asked for (fetched on demand or by seed) provable under the newest head; auto picks full where the upstream serves data tiles"

func (e *env) newSyncer(ctx context.Context, st store.Store, concurrency, batch int, mode string) (*mirror.Syncer, error) {
	name, err := e.logName()
	if err != nil {
		return nil, err
	}
	pool, err := e.newPool(ctx, name)
	if err != nil {
		return nil, err
	}
	return mirror.New(mirror.Config{
		Mode:        mode,
		Store:       st,
		Upstream:    pool,
		AbsentTTL:   e.absentTTL,
		Key:         e.key,
		Concurrency: concurrency,
		BatchTiles:  batch,
		Logger:      e.logger,
		Replica:     e.replica,
		Observer:    e.runObserver,
	})
}

// defaultMaxInFlight is --upstream-max-inflight's default.
const defaultMaxInFlight = 64

// fetchFlags binds the flags that bound fetching from upstreams (serve,
// sync) to e.
func (e *env) fetchFlags(fs *flag.FlagSet) {
	fs.IntVar(&e.maxInFlight, "upstream-max-inflight", defaultMaxInFlight, "at most this many requests in flight to each upstream (0: unbounded); fetch-through lookups beyond it wait, or give up with their clients")
	fs.DurationVar(&e.absentTTL, "absent-ttl", mirror.DefaultAbsentTTL, "remember for this long that the upstream answered 404 or 410 for a module@version, so that repeated lookups of it are answered without asking again (0: do not remember)")
}

// checkFetchFlags checks what fetchFlags bound.
func (e *env) checkFetchFlags() error {
	if e.maxInFlight < 0 {
		return usageError{"--upstream-max-inflight must not be negative"}
	}
	if e.absentTTL < 0 {
		return usageError{"--absent-ttl must not be negative"}
	}
	if e.absentTTL == 0 {
		e.absentTTL = -1 // mirror.Config: negative is "not at all"
	}
	return nil
}

func cmdMigrate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("migrate")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	st.Close()
	fmt.Fprintln(e.stdout, "schema is up to date")
	return nil
}

func cmdSync(ctx context.Context, e *env, args []string) error {
	fs := e.flags("sync")
	once := fs.Bool("once", false, "sync once and exit")
	schedule := fs.String("schedule", "", "keep running, syncing on this cron schedule (e.g. '@every 5m' or '*/10 * * * *')")
	mode := fs.String("mode", mirror.ModeAuto, modeUsage)
	concurrency := fs.Int("concurrency", 32, "upstream requests in flight")
	batch := fs.Int("batch", mirror.DefaultBatchTiles, "data tiles (of 256 records) per transaction")
	storeTimeout := fs.Duration("store-timeout", defaultSyncStoreTimeout, "stop a sync whose store does not answer a probe within this time (it resumes on the next run)")
	metricsListen := fs.String("metrics-listen", "", metricsListenUsage+" (with --schedule)")
	tf := e.trillianFlags(fs)
	e.poolFlags(fs)
	e.fetchFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := e.checkFetchFlags(); err != nil {
		return err
	}
	if *storeTimeout <= 0 {
		return usageError{"--store-timeout must be positive"}
	}
	if *once == (*schedule != "") {
		return usageError{"give exactly one of --once and --schedule"}
	}
	if *once && *metricsListen != "" {
		return usageError{"--metrics-listen needs --schedule: a single run ends before anything scrapes it"}
	}
	if err := modeFlag(*mode); err != nil {
		return err
	}
	if err := tf.check(*mode); err != nil {
		return err
	}
	name, err := e.logName()
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	st, err := e.openStore(octx)
	cancel()
	if err != nil {
		return err
	}
	defer closeWithin(st, shutdownTimeout, e)
	closeReplica, err := e.openReplica(tf, st, name)
	if err != nil {
		return err
	}
	defer closeReplica()
	if backend.OnThisMachine(st) {
		e.leaveCoreToDatabase()
	}
	if *metricsListen != "" {
		reg, err := e.processMetrics(st)
		if err != nil {
			return err
		}
		mctx, stop := context.WithCancel(ctx)
		defer stop()
		if err := serveMetrics(mctx, *metricsListen, metrics.Handler(reg), e.logger); err != nil {
			return err
		}
	}
	s, err := e.newSyncer(ctx, st, *concurrency, *batch, *mode)
	if err != nil {
		return err
	}
	if *once {
		res, err := s.OnceWatched(ctx, *storeTimeout)
		if err != nil {
			return err
		}
		how := ""
		if res.Mode != "" {
			how = " (" + res.Mode + " mode)"
		}
		fmt.Fprintf(e.stdout, "%s: serving head %d (was %d), %d records stored in %s%s\n",
			res.Log, res.Served.Size, res.Previous, res.Records, res.Elapsed.Round(time.Millisecond), how)
		return nil
	}
	if err := s.RunScheduled(ctx, mirror.Schedule{Spec: *schedule, StoreTimeout: *storeTimeout}); errors.Is(err, mirror.ErrSchedule) {
		return usageError{err.Error()}
	} else if err != nil {
		return err
	}
	return nil
}

// shutdownTimeout bounds stopping: finishing the requests under way, and
// closing the store.
const shutdownTimeout = 10 * time.Second

// leaveCoreToDatabase lowers GOMAXPROCS by one, to no less than one, unless
// the GOMAXPROCS environment variable sets it. A full sync keeps one
// Postgres backend busy with COPY from start to end, and the sync takes as
// long as that backend does: with a core for every goroutine of its own
// (fetching, hashing, encoding), the syncer would take the backend's core
// in bursts whenever the database runs on the same machine.
func (e *env) leaveCoreToDatabase() {
	if _, set := e.getenv("GOMAXPROCS"); set {
		return
	}
	if n := e.gomaxprocs(0); n > 1 {
		e.gomaxprocs(n - 1)
		e.logger.Info("leaving a core to the database on this machine (set GOMAXPROCS to choose)", "GOMAXPROCS", n-1)
	}
}

func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := e.flags("serve")
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	schedule := fs.String("sync-schedule", "", "also sync on this cron schedule (e.g. '@every 5m')")
	cacheRecords := fs.Int("cache-records", server.DefaultCacheRecords, "records kept in memory for lookups (~300 bytes each); 0 disables the cache")
	cacheTiles := fs.Int("cache-tiles", server.DefaultCacheTiles, "full hash tiles kept in memory (8 KiB each); 0 disables the cache")
	mode := fs.String("mode", mirror.ModeAuto, modeUsage+"; in lazy mode a lookup the store lacks is fetched from the upstream, verified and kept")
	storeTimeout := fs.Duration("store-timeout", server.DefaultStoreTimeout, "answer 503 to a request whose store does not answer within this time")
	publicURL := fs.String("public-url", "", "the URL clients reach this server at (e.g. behind a TLS proxy), shown on the status page; with a path (https://host/sumkeep) the protocol is answered under it as well as at the root; default: built from each request's Host")
	requestLog := fs.Bool("request-log", true, "log one line per request (method, path, status, bytes, duration, fetched through)")
	requestSample := fs.Float64("request-log-sample", 1, "share of requests logged, in (0, 1]; 5xx answers are always logged")
	metricsListen := fs.String("metrics-listen", "", metricsListenUsage+", instead of at /metrics on --listen")
	dbRead := fs.String("db-read", "", "read lookups, tiles and the served head from this Postgres hot standby of --db (a postgres:// URL); writes (fetch-through, --sync-schedule) go to --db, which also answers what the standby lacks or while it is down")
	tf := e.trillianFlags(fs)
	e.poolFlags(fs)
	e.fetchFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := e.checkFetchFlags(); err != nil {
		return err
	}
	if *storeTimeout <= 0 {
		return usageError{"--store-timeout must be positive"}
	}
	if !(*requestSample > 0 && *requestSample <= 1) {
		return usageError{fmt.Sprintf("--request-log-sample %v: want a share in (0, 1]", *requestSample)}
	}
	if *publicURL != "" {
		u, err := server.CheckPublicURL(*publicURL)
		if err != nil {
			return usageError{"--public-url " + err.Error()}
		}
		*publicURL = u
	}
	if *dbRead != "" && !backend.IsPostgres(*dbRead) {
		return usageError{"--db-read: " + backend.ErrReplicaDSN.Error()}
	}
	if err := modeFlag(*mode); err != nil {
		return err
	}
	if *schedule == "" && (tf.addr != "" || tf.tree != 0) {
		// Only the scheduled sync feeds the replica. The flags may come
		// from an environment shared with a syncer (SUMKEEP_TRILLIAN).
		e.logger.Info("--trillian is used by --sync-schedule only; this server does not sync")
		*tf = trillianFlags{}
	}
	if err := tf.check(*mode); err != nil {
		return err
	}
	records, err := cacheSize("--cache-records", *cacheRecords)
	if err != nil {
		return err
	}
	tiles, err := cacheSize("--cache-tiles", *cacheTiles)
	if err != nil {
		return err
	}
	if *schedule != "" {
		// Checked now: the scheduler runs in the background, where a bad
		// spec would leave a server that silently never syncs.
		if err := mirror.CheckSchedule(*schedule); err != nil {
			return usageError{"--sync-schedule: " + err.Error()}
		}
	}
	name, err := e.logName()
	if err != nil {
		return err
	}
	st, raw, ready, err := e.openStoreWaiting(ctx)
	if err != nil {
		return err
	}
	defer closeWithin(st, shutdownTimeout, e)
	closeReplica, err := e.openReplica(tf, st, name)
	if err != nil {
		return err
	}
	defer closeReplica()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Metrics read the store itself (raw), not the wrapper that answers
	// 503 while the database is away.
	reg, err := e.processMetrics(raw)
	if err != nil {
		return err
	}
	httpMetrics, err := metrics.NewHTTP(reg)
	if err != nil {
		return err
	}
	var metricsAt http.Handler // /metrics on --listen
	if *metricsListen != "" {
		if err := serveMetrics(ctx, *metricsListen, metrics.Handler(reg), e.logger); err != nil {
			return err
		}
	} else {
		metricsAt = metrics.Handler(reg)
	}
	// The upstream may be out of reach (an air-gapped site serving what it
	// imported): then serve what the store holds, with no fetch-through.
	var syncer *mirror.Syncer
	var fetch map[string]server.Fetcher
	if s, err := e.newSyncer(ctx, raw, 32, 64, *mode); err != nil {
		var ee envError
		if !errors.As(err, &ee) || *schedule != "" {
			return err
		}
		e.logger.Warn("no upstream: serving what the store holds, without fetching on demand", "err", err)
	} else {
		syncer = s
		if *mode != mirror.ModeFull {
			fetch = map[string]server.Fetcher{name: s}
			// Serve the upstreams' newest head from the start, not
			// whatever head the first lookup's answer carries.
			go func() {
				if err := s.Refresh(ctx); err != nil {
					e.logger.Warn("could not serve the upstreams' newest head at start", "err", err)
				}
			}()
		}
	}
	var reader store.Reader = st
	if *dbRead != "" {
		rep, err := e.openReadReplica(ctx, *dbRead)
		if err != nil {
			return err
		}
		defer closeWithin(rep, shutdownTimeout, e)
		rr := readreplica.New(rep, st, readreplica.Options{
			Logger:         e.logger.With("replica", redact.DSN(*dbRead)),
			ReplicaTimeout: *storeTimeout / 2, // leaves the primary time to answer within --store-timeout
		})
		reader = rr
		if f := fetch[name]; f != nil {
			// A record fetched through is in the primary only until the
			// standby replays it: answer it from there meanwhile.
			fetch[name] = rr.Fetcher(name, f)
		}
		e.logger.Info("reading from the read replica", "replica", redact.DSN(*dbRead))
	}
	gin.SetMode(gin.ReleaseMode) // gin's mode is process-wide; the command owns the process
	var syncs *server.SyncLog
	if *schedule != "" {
		syncs = server.NewSyncLog(*schedule)
	}
	var upstreams []string
	var health upstream.HealthReporter
	if syncer != nil {
		upstreams = []string{syncer.UpstreamURL()}
		health = &e.health
	}
	srv := server.New(server.Config{Store: reader, StatusStore: st, Log: name, Logger: e.logger, CacheRecords: records, CacheTiles: tiles, Fetch: fetch,
		StoreTimeout: *storeTimeout,
		Key:          e.key, PublicURL: *publicURL, UpstreamURLs: upstreams, Upstreams: health, Syncs: syncs,
		RequestLog: *requestLog, RequestLogSample: *requestSample,
		Observer: httpMetrics, Metrics: metricsAt})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return envError{fmt.Errorf("--listen: %w", err)}
	}
	hs := srv.HTTPServer(server.HTTPLimits{})
	go srv.Run(ctx)
	if *schedule != "" {
		go syncer.RunScheduled(ctx, mirror.Schedule{Spec: *schedule, StoreTimeout: defaultSyncStoreTimeout, Ready: ready,
			Observe: func(r mirror.Run) {
				if r.Ended.IsZero() {
					syncs.Started(r.Log)
					return
				}
				syncs.Finished(r.Log, r.Started, r.Ended, r.Result.Served.Size, r.Result.Records, r.Err)
			}})
	}
	url := "http://" + ln.Addr().String()
	e.logger.Info("serving", "log", name, "url", url)
	shown := url
	if *publicURL != "" {
		shown = *publicURL
	}
	fmt.Fprintf(e.stdout, "sumkeep is serving %s at %s\nPoint the go command at it with:\n\n\tgo env -w GOSUMDB=\"%s %s\"\n\nIts status page is %s/\n", name, url, e.key, shown, shown)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, done := context.WithTimeout(context.Background(), shutdownTimeout)
	defer done()
	if err := hs.Shutdown(shutdown); err != nil {
		// Requests still under way after shutdownTimeout are cut.
		hs.Close()
		return fmt.Errorf("requests still under way after %v were cut: %w", shutdownTimeout, err)
	}
	return nil
}

func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := e.flags("status")
	tf := e.trillianFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := tf.check(""); err != nil {
		return err
	}
	keyGiven := false
	fs.Visit(func(f *flag.Flag) { keyGiven = keyGiven || f.Name == "key" })
	if _, ok := e.getenv("SUMKEEP_KEY"); ok {
		keyGiven = true
	}
	if keyGiven {
		if _, err := e.logName(); err != nil {
			return err
		}
	}
	st, err := e.openStoreReadOnly(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	logs, err := st.Logs(ctx)
	if err != nil {
		return err
	}
	if len(logs) == 0 {
		fmt.Fprintln(e.stdout, "the store holds no log yet: fill it with 'sumkeep sync --once' (from the upstream), 'sumkeep seed go.sum' (what some builds need) or, air-gapped, 'sumkeep import BUNDLE'")
		if keyGiven {
			return e.checkKey(ctx, st, "the store (--db)", true)
		}
		return nil
	}
	// With a --key (or SUMKEEP_KEY) given, the store must hold its log,
	// served under a head that key signed: else the key is wrong (exit 2).
	if keyGiven {
		if err := e.checkKey(ctx, st, "the store (--db)", true); err != nil {
			return err
		}
	}
	bad := false
	for _, log := range logs {
		ls, err := mirror.Status(ctx, st, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", log)
		if ls.Served != nil {
			fmt.Fprintf(e.stdout, "  served head:  %d (first seen %s)\n", ls.Served.Size, ls.Served.FirstSeen.Format(time.RFC3339))
		} else {
			fmt.Fprintf(e.stdout, "  served head:  none yet\n")
		}
		if ls.Latest != nil {
			fmt.Fprintf(e.stdout, "  newest head:  %d\n", ls.Latest.Size)
		}
		fmt.Fprintf(e.stdout, "  records:      %s\n", recordsLine(ls))
		if name, err := e.logName(); err == nil && name == log {
			differs, err := replicaStatus(ctx, e, tf, st, log)
			if err != nil {
				return err
			}
			bad = bad || differs
		}
		for _, ev := range ls.Evidence {
			bad = true
			fmt.Fprintf(e.stdout, "  EVIDENCE %s\n", evidenceLine(ev))
		}
	}
	if name, err := e.logName(); err == nil {
		if err := e.printUpstreams(ctx, name); err != nil {
			return err
		}
	}
	if bad {
		return errors.New("the store holds evidence of upstream misbehaviour")
	}
	return nil
}

// cacheSize turns a cache flag (0 disables) into a server.Config size
// (negative disables, 0 means the default).
func cacheSize(flag string, n int) (int, error) {
	switch {
	case n < 0:
		return 0, usageError{flag + " must not be negative"}
	case n == 0:
		return -1, nil
	}
	return n, nil
}
