package main

import (
	"time"

	"github.com/sumkeep/sumkeep/store"
)

// defaultSyncStoreTimeout is how long the store may take to answer a probe
// during a sync before the sync is stopped (it resumes on the next run).
// Generous: a probe waits for a connection of a pool that a full sync keeps
// busy.
const defaultSyncStoreTimeout = time.Minute

// openTimeout bounds opening the store (connecting and migrating).
const openTimeout = 30 * time.Second

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
