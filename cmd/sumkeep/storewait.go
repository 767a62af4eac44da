package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
)

// defaultSyncStoreTimeout is how long the store may take to answer a probe
// during a sync before the sync is stopped (it resumes on the next run).
// Generous: a probe waits for a connection of a pool that a full sync keeps
// busy.
const defaultSyncStoreTimeout = time.Minute

// openTimeout bounds opening the store (connecting and migrating).
const openTimeout = 30 * time.Second

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
