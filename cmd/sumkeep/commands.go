package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/robfig/cron/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
	skSync "github.com/sumkeep/sumkeep/sync"
)

// openStore opens the store --db names and brings its schema up to date.
func (e *env) openStore(ctx context.Context) (store.Store, error) {
	return e.openStoreAt(ctx, e.db)
}

// openStoreAt opens a store: Postgres for a postgres:// URL, else the
// SQLite file at that path (created if missing).
func (e *env) openStoreAt(ctx context.Context, db string) (store.Store, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		s, err := postgres.Open(ctx, db)
		if err != nil {
			return nil, envError{err}
		}
		return s, nil
	}
	s, err := sqlite.Open(ctx, db)
	if err != nil {
		return nil, envError{err}
	}
	return s, nil
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
	case skSync.ModeAuto, skSync.ModeFull, skSync.ModeLazy:
		return nil
	}
	return usageError{fmt.Sprintf("--mode %q: want auto, full or lazy", mode)}
}

const modeUsage = "auto, full or lazy: full copies every record and tile (the upstream must serve data tiles); lazy keeps what is asked for (fetched on demand or by seed) provable under the newest head; auto picks full where the upstream serves data tiles"

func (e *env) newSyncer(ctx context.Context, st store.Store, concurrency, batch int, mode string) (*skSync.Syncer, error) {
	name, err := e.logName()
	if err != nil {
		return nil, err
	}
	upstream := e.upstream
	if upstream == "" {
		goproxy := e.goProxy(ctx)
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		upstream, err = skSync.Discover(dctx, name, goproxy, nil)
		cancel()
		if err != nil {
			return nil, envError{err}
		}
	}
	return skSync.New(skSync.Config{
		Mode:        mode,
		Store:       st,
		Client:      skSync.NewClient(upstream, nil),
		Key:         e.key,
		Concurrency: concurrency,
		BatchTiles:  batch,
		Logger:      e.logger,
		Replica:     e.replica,
	})
}

// goProxy is the GOPROXY the go command would use: the environment's, or
// else what `go env GOPROXY` reports (its default, or one set with go env
// -w). Without a go command, the checksum database is reached directly.
func (e *env) goProxy(ctx context.Context) string {
	if v, ok := e.getenv("GOPROXY"); ok && v != "" {
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOPROXY").Output()
	if err != nil {
		e.logger.Info("GOPROXY is not set and the go command cannot say its default; reaching the checksum database directly", "err", err)
		return "direct"
	}
	return strings.TrimSpace(string(out))
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
	mode := fs.String("mode", skSync.ModeAuto, modeUsage)
	concurrency := fs.Int("concurrency", 32, "upstream requests in flight")
	batch := fs.Int("batch", 64, "data tiles (of 256 records) per transaction")
	tf := e.trillianFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *once == (*schedule != "") {
		return usageError{"give exactly one of --once and --schedule"}
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
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	_, closeReplica, err := e.openReplica(tf, st, name)
	if err != nil {
		return err
	}
	defer closeReplica()
	if pg, ok := st.(*postgres.Store); ok && pg.OnThisMachine() {
		e.leaveCoreToDatabase()
	}
	s, err := e.newSyncer(ctx, st, *concurrency, *batch, *mode)
	if err != nil {
		return err
	}
	if *once {
		res, err := s.Once(ctx)
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
	return runScheduled(ctx, e, *schedule, s)
}

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

// runScheduled syncs on a cron schedule until ctx ends. A run that is still
// going when the next is due makes that one skip.
func runScheduled(ctx context.Context, e *env, spec string, s *skSync.Syncer) error {
	c := cron.New()
	var running atomic.Bool
	job := func() {
		if !running.CompareAndSwap(false, true) {
			e.logger.Info("previous sync still running; skipping this one")
			return
		}
		defer running.Store(false)
		res, err := s.Once(ctx)
		if errors.Is(err, store.ErrLocked) {
			e.logger.Info("another process is syncing this log; skipping", "log", s.Log())
			return
		}
		if err != nil {
			e.logger.Error("sync failed", "log", s.Log(), "err", err)
			return
		}
		e.logger.Info("sync done", "log", res.Log, "served", res.Served.Size, "records", res.Records)
	}
	if _, err := c.AddFunc(spec, job); err != nil {
		return usageError{fmt.Sprintf("schedule %q: %v", spec, err)}
	}
	c.Start()
	go job() // do not wait for the first tick
	<-ctx.Done()
	<-c.Stop().Done()
	return nil
}

func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := e.flags("serve")
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	schedule := fs.String("sync-schedule", "", "also sync on this cron schedule (e.g. '@every 5m')")
	cacheRecords := fs.Int("cache-records", server.DefaultCacheRecords, "records kept in memory for lookups (~300 bytes each); 0 disables the cache")
	cacheTiles := fs.Int("cache-tiles", server.DefaultCacheTiles, "full hash tiles kept in memory (8 KiB each); 0 disables the cache")
	mode := fs.String("mode", skSync.ModeAuto, modeUsage+"; in lazy mode a lookup the store lacks is fetched from the upstream, verified and kept")
	tf := e.trillianFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
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
		if _, err := cron.ParseStandard(*schedule); err != nil {
			return usageError{fmt.Sprintf("--sync-schedule %q: %v", *schedule, err)}
		}
	}
	name, err := e.logName()
	if err != nil {
		return err
	}
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	_, closeReplica, err := e.openReplica(tf, st, name)
	if err != nil {
		return err
	}
	defer closeReplica()
	// The upstream may be out of reach (an air-gapped site serving what it
	// imported): then serve what the store holds, with no fetch-through.
	var syncer *skSync.Syncer
	var fetch map[string]server.Fetcher
	if s, err := e.newSyncer(ctx, st, 32, 64, *mode); err != nil {
		var ee envError
		if !errors.As(err, &ee) || *schedule != "" {
			return err
		}
		e.logger.Warn("no upstream: serving what the store holds, without fetching on demand", "err", err)
	} else {
		syncer = s
		if *mode != skSync.ModeFull {
			fetch = map[string]server.Fetcher{name: s}
		}
	}
	gin.SetMode(gin.ReleaseMode) // gin's mode is process-wide; the command owns the process
	srv := server.New(server.Config{Store: st, Log: name, Logger: e.logger, CacheRecords: records, CacheTiles: tiles, Fetch: fetch})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return envError{fmt.Errorf("--listen: %w", err)}
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Run(ctx)
	if *schedule != "" {
		go runScheduled(ctx, e, *schedule, syncer)
	}
	url := "http://" + ln.Addr().String()
	e.logger.Info("serving", "log", name, "url", url)
	fmt.Fprintf(e.stdout, "sumkeep is serving %s at %s\nPoint the go command at it with:\n\n\tgo env -w GOSUMDB=\"%s %s\"\n\n", name, url, e.key, url)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	return hs.Shutdown(shutdown)
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
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	logs, err := st.Logs(ctx)
	if err != nil {
		return err
	}
	if len(logs) == 0 {
		fmt.Fprintln(e.stdout, "the store holds no log yet: run 'sumkeep sync --once'")
		return nil
	}
	bad := false
	for _, log := range logs {
		fmt.Fprintf(e.stdout, "%s\n", log)
		if h, err := st.ServedHead(ctx, log); err == nil {
			fmt.Fprintf(e.stdout, "  served head:  %d (first seen %s)\n", h.Size, h.FirstSeen.Format(time.RFC3339))
		} else if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(e.stdout, "  served head:  none yet\n")
		} else {
			return err
		}
		if h, err := st.LatestHead(ctx, log); err == nil {
			fmt.Fprintf(e.stdout, "  newest head:  %d\n", h.Size)
		}
		if n, err := st.Synced(ctx, log); err == nil && n > 0 {
			fmt.Fprintf(e.stdout, "  records:      %d copied in full sync\n", n)
		} else if err == nil {
			// Filled on demand: count what is there.
			count := 0
			for after := int64(-1); ; {
				ids, err := st.RecordIDs(ctx, log, after, 10000)
				if err != nil || len(ids) == 0 {
					break
				}
				count += len(ids)
				after = ids[len(ids)-1]
			}
			fmt.Fprintf(e.stdout, "  records:      %d stored on demand (lazy mode)\n", count)
		}
		if name, err := e.logName(); err == nil && name == log {
			differs, err := replicaStatus(ctx, e, tf, st, log)
			if err != nil {
				return err
			}
			bad = bad || differs
		}
		es, err := st.Evidence(ctx, log)
		if err != nil {
			return err
		}
		for _, ev := range es {
			bad = true
			fmt.Fprintf(e.stdout, "  EVIDENCE %s at %s: %s\n", ev.Kind, ev.CreatedAt.Format(time.RFC3339), ev.Message)
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
