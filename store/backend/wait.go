package backend

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

// OpenWaiting opens the store dsn names for a server. A Postgres database
// that does not answer (down, restarting, unreachable) does not stop the
// server: it starts anyway, answers from a store that reports itself
// unavailable (store.ErrUnavailable), and migrates the schema when the
// database is back, logging what it waits for. Other failures (a bad URL, a
// refused login, a schema newer than this sumkeep) are returned. Each
// attempt to open is bounded by openTimeout.
//
// It returns the store to serve from, the store itself for the mirror
// (which must not be given a wrapper: it looks for a Postgres store's
// staged commits), and a function reporting whether the store is ready.
func OpenWaiting(ctx context.Context, dsn string, openTimeout time.Duration, logger *slog.Logger) (serve, raw store.Store, ready func() bool, err error) {
	always := func() bool { return true }
	if !IsPostgres(dsn) {
		st, err := Open(ctx, dsn)
		return st, st, always, err
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	st, err := Open(octx, dsn)
	cancel()
	if err == nil {
		return st, st, always, nil
	}
	if !store.Unavailable(err) || ctx.Err() != nil {
		return nil, nil, nil, err
	}
	pg, cerr := postgres.Connect(ctx, dsn)
	if cerr != nil {
		return nil, nil, nil, cerr
	}
	logger.Warn("the database does not answer: serving 503 until it does, then migrating its schema", "err", err)
	g := &storeGate{Store: pg}
	go g.wait(ctx, logger, pg, openTimeout)
	return g, pg, g.ready.Load, nil
}

// wait migrates the schema as soon as the database answers, then opens the
// gate.
func (g *storeGate) wait(ctx context.Context, logger *slog.Logger, pg *postgres.Store, openTimeout time.Duration) {
	delay := time.Second
	for {
		mctx, cancel := context.WithTimeout(ctx, openTimeout)
		err := pg.Migrate(mctx)
		cancel()
		if err == nil {
			g.ready.Store(true)
			logger.Info("the database answers and its schema is up to date: serving")
			return
		}
		if ctx.Err() != nil {
			return
		}
		if store.Unavailable(err) {
			logger.Info("still waiting for the database", "err", err, "retry in", delay)
		} else {
			logger.Error("migrating the database failed; retrying", "err", err, "retry in", delay)
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

func (g *storeGate) AddHead(ctx context.Context, log string, hs ...store.Head) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.Store.AddHead(ctx, log, hs...)
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

func (g *storeGate) HeadsAround(ctx context.Context, log string, size int64) (store.Around, error) {
	if err := g.check(); err != nil {
		return store.Around{}, err
	}
	return g.Store.HeadsAround(ctx, log, size)
}

func (g *storeGate) HeadsAroundMany(ctx context.Context, log string, sizes []int64) ([]store.Around, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.HeadsAroundMany(ctx, log, sizes)
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

func (g *storeGate) ReadSomeTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.ReadSomeTiles(ctx, log, tiles)
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
