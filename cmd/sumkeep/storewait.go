package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

// defaultSyncStoreTimeout is how long the store may take to answer a probe
// during a sync before the sync is stopped (it resumes on the next run).
// Generous: a probe waits for a connection of a pool that a full sync keeps
// busy.
const defaultSyncStoreTimeout = time.Minute

// openTimeout bounds opening the store (connecting and migrating).
const openTimeout = 30 * time.Second

// openStoreWaiting opens the store for serve. A Postgres database that does
// not answer (down, restarting, unreachable) does not stop serve: it starts
// anyway, answers 503 from a store that reports itself unavailable, and
// migrates the schema when the database is back. Other failures (a bad
// URL, a refused login, a schema newer than this sumkeep) are environment
// errors, as before.
//
// It returns the store to serve from, the store itself for the syncer
// (which must not be given a wrapper: it looks for the Postgres store's
// staged commits), and a function reporting whether the store is ready.
func (e *env) openStoreWaiting(ctx context.Context) (serve, raw store.Store, ready func() bool, err error) {
	always := func() bool { return true }
	if !isPostgres(e.db) {
		st, err := e.openStore(ctx)
		return st, st, always, err
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	st, err := e.openStore(octx)
	cancel()
	if err == nil {
		return st, st, always, nil
	}
	if !store.Unavailable(err) || ctx.Err() != nil {
		return nil, nil, nil, err
	}
	pg, cerr := postgres.Connect(ctx, e.db)
	if cerr != nil {
		return nil, nil, nil, envError{cerr}
	}
	e.logger.Warn("the database does not answer: serving 503 until it does, then migrating its schema", "err", err)
	g := &storeGate{Store: pg}
	go g.wait(ctx, e, pg)
	return g, pg, g.ready.Load, nil
}

// wait migrates the schema as soon as the database answers, then opens the
// gate.
func (g *storeGate) wait(ctx context.Context, e *env, pg *postgres.Store) {
	delay := time.Second
	for {
		mctx, cancel := context.WithTimeout(ctx, openTimeout)
		err := pg.Migrate(mctx)
		cancel()
		if err == nil {
			g.ready.Store(true)
			e.logger.Info("the database answers and its schema is up to date: serving")
			return
		}
		if ctx.Err() != nil {
			return
		}
		if store.Unavailable(err) {
			e.logger.Info("still waiting for the database", "err", err, "retry in", delay)
		} else {
			e.logger.Error("migrating the database failed; retrying", "err", err, "retry in", delay)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// storeGate is a store that reports itself unavailable until ready is set
// (the database answered and its schema was migrated).
type storeGate struct {
	store.Store
	ready atomic.Bool
}

var errWaiting = fmt.Errorf("%w: waiting for the database to answer and its schema to be migrated", store.ErrUnavailable)

func (g *storeGate) check() error {
	if !g.ready.Load() {
		return errWaiting
	}
	return nil
}

func (g *storeGate) AddHead(ctx context.Context, log string, h store.Head) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.Store.AddHead(ctx, log, h)
}

func (g *storeGate) LatestHead(ctx context.Context, log string) (store.Head, error) {
	if err := g.check(); err != nil {
		return store.Head{}, err
	}
	return g.Store.LatestHead(ctx, log)
}

func (g *storeGate) ServedHead(ctx context.Context, log string) (store.Head, error) {
	if err := g.check(); err != nil {
		return store.Head{}, err
	}
	return g.Store.ServedHead(ctx, log)
}

func (g *storeGate) Heads(ctx context.Context, log string) ([]store.Head, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.Heads(ctx, log)
}

func (g *storeGate) Synced(ctx context.Context, log string) (int64, error) {
	if err := g.check(); err != nil {
		return 0, err
	}
	return g.Store.Synced(ctx, log)
}

func (g *storeGate) Commit(ctx context.Context, log string, b store.Batch) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.Store.Commit(ctx, log, b)
}

func (g *storeGate) State(ctx context.Context, log string) (store.State, error) {
	if err := g.check(); err != nil {
		return store.State{}, err
	}
	return g.Store.State(ctx, log)
}

func (g *storeGate) RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.RecordIDs(ctx, log, after, limit)
}

func (g *storeGate) Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error) {
	if err := g.check(); err != nil {
		return store.Record{}, err
	}
	return g.Store.Lookup(ctx, log, path, version, maxID)
}

func (g *storeGate) ReadRecords(ctx context.Context, log string, start, n int64) ([]store.Record, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.ReadRecords(ctx, log, start, n)
}

func (g *storeGate) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.ReadTiles(ctx, log, tiles)
}

func (g *storeGate) AddEvidence(ctx context.Context, log string, ev store.Evidence) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.Store.AddEvidence(ctx, log, ev)
}

func (g *storeGate) Evidence(ctx context.Context, log string) ([]store.Evidence, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.Evidence(ctx, log)
}

func (g *storeGate) Logs(ctx context.Context) ([]string, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.Logs(ctx)
}

func (g *storeGate) LockSync(ctx context.Context, log string) (func(), error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.LockSync(ctx, log)
}

// watchStore returns a context that ends when ctx does or when the store
// stops answering: every quarter of timeout (at least every second) it asks
// the store for its logs, with that deadline. Its cause then says so. A
// sync run under it fails with a clear error instead of waiting forever on
// a database that accepts connections but answers nothing; the next run
// resumes where it stopped. The returned function stops the watch.
func watchStore(ctx context.Context, st store.Store, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(max(timeout/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, done := context.WithTimeout(ctx, timeout)
			_, err := st.Logs(pctx)
			done()
			if err != nil && ctx.Err() == nil && store.Unavailable(err) {
				cancel(fmt.Errorf("the store did not answer within %v: %w", timeout, err))
				return
			}
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// syncOnce runs one sync under watchStore. When the watch stopped it, the
// error says that the store stopped answering.
func syncOnce(ctx context.Context, s *mirror.Syncer, st store.Store, timeout time.Duration) (mirror.Result, error) {
	wctx, stop := watchStore(ctx, st, timeout)
	defer stop()
	res, err := s.Once(wctx)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		err = fmt.Errorf("sync %s stopped: %w (the next run resumes where this one stopped)", s.Log(), context.Cause(wctx))
	}
	return res, err
}

// closeWithin closes st, giving up after d: a database that stopped
// answering must not keep a stopping process from exiting.
func closeWithin(st store.Store, d time.Duration, e *env) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Close()
	}()
	select {
	case <-done:
	case <-time.After(d):
		e.logger.Warn("the store did not close in time; exiting without waiting for it", "waited", d)
	}
}
