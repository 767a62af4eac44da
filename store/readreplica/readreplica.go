// Package readreplica composes a store.Reader from a read replica of a store
// (a Postgres hot standby) and the store itself, the primary, which every
// write goes to: reads go to the replica, and to the primary only where the
// replica cannot answer (yet).
//
// # Consistency
//
// A streaming replica holds a past state of the primary: every transaction
// the primary committed up to some point, in commit order, and nothing of
// a transaction it has not replayed. Since the mirror commits a served head
// in the same transaction as everything below it (store.Batch), whatever
// served head the replica shows, the replica holds every record and tile
// that head needs, or (for records fetched on demand later, in lazy mode)
// the primary does: the primary only adds records and widens tiles.
// Reads under any head either side ever served are therefore answered by
// asking the replica and, where it answers store.ErrNotFound, the primary.
//
// The served head is the replica's, so that what is served comes from the
// replica; it moves when the replica has replayed a newer one. Two
// exceptions take the primary's:
//
//   - a record just written on the primary (a lookup fetched through, in
//     lazy mode) may need a head the replica does not have yet: Pin, which
//     Fetcher calls after every successful fetch, makes the primary's
//     served head the least one served until the replica has it, so the
//     record is answered at once (from the primary) and its proof's tiles
//     are readable (from the primary);
//   - a replica that has lagged behind the primary's served head for more
//     than Options.MaxLag (replication broken, or far behind) stops holding
//     the served head back: the primary's is served, and logged.
//
// The server never serves a head older than one it served (it keeps the
// newest), so once it answered under the primary's head it keeps it even
// when the replica reports an older one; everything under it is still
// readable through the fallback.
//
// # A replica that is down
//
// A replica that does not answer (store.Unavailable, or no answer within
// Options.ReplicaTimeout) is left alone for Options.Retry, during which
// every read goes to the primary; then one read tries it again. A replica
// that fails otherwise (a query cancelled by a recovery conflict, a schema
// it has not replayed yet) has that read answered by the primary. Every such
// fall-back is logged, rate-limited (internal/lograte).
package readreplica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/lograte"
	"github.com/sumkeep/sumkeep/store"
)

// Defaults of Options.
const (
	DefaultMaxLag         = time.Minute
	DefaultRetry          = 5 * time.Second
	DefaultReplicaTimeout = 2 * time.Second
)

// Options configures a Reader. The zero value is usable.
type Options struct {
	// Logger receives fall-backs and recoveries; records of level Warn
	// and above are rate-limited. nil discards them.
	Logger *slog.Logger
	// MaxLag is how long the replica may lack a head the primary serves
	// before the primary's head is served (default DefaultMaxLag).
	MaxLag time.Duration
	// Retry is how long a replica that did not answer is left alone
	// (default DefaultRetry).
	Retry time.Duration
	// ReplicaTimeout bounds every call to the replica, so that a hung
	// replica leaves time to ask the primary within the caller's deadline
	// (default DefaultReplicaTimeout).
	ReplicaTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Reader reads from a replica first and from the primary where the
// replica cannot answer. It is safe for concurrent use. It closes neither.
type Reader struct {
	replica, primary store.Reader
	opts             Options
	logger           *slog.Logger

	downUntil atomic.Int64 // unix nanoseconds: the replica is not asked before
	probing   atomic.Bool  // one read is trying a replica that was down
	down      atomic.Bool  // the replica is considered down (to log the recovery once)

	mu   sync.Mutex
	logs map[string]*logState
}

type logState struct {
	// floor, when not nil, is a primary head that must be served until
	// the replica has one as large (set by Pin).
	floor *store.Head
	// behind is the size of the oldest primary head seen that the replica
	// lacks, and since when it has been seen; 0 when the replica is level.
	behind      int64
	behindSince time.Time
}

// New returns a Reader over replica and primary.
func New(replica, primary store.Reader, opts Options) *Reader {
	if opts.MaxLag <= 0 {
		opts.MaxLag = DefaultMaxLag
	}
	if opts.Retry <= 0 {
		opts.Retry = DefaultRetry
	}
	if opts.ReplicaTimeout <= 0 {
		opts.ReplicaTimeout = DefaultReplicaTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reader{replica: replica, primary: primary, opts: opts, logs: make(map[string]*logState)}
	if opts.Logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	} else {
		r.logger = slog.New(lograte.New(opts.Logger.Handler(), lograte.Options{Now: opts.Now}))
	}
	return r
}

var _ store.Reader = (*Reader)(nil)

// useReplica reports whether a read may go to the replica now, and whether
// it is the one read that tries a replica that was down.
func (r *Reader) useReplica() (ok, probe bool) {
	if r.opts.Now().UnixNano() >= r.downUntil.Load() {
		if !r.down.Load() {
			return true, false
		}
		if r.probing.CompareAndSwap(false, true) {
			return true, true
		}
	}
	return false, false
}

// fromReplica runs call against the replica with the replica's deadline.
// It reports whether the result stands: false when the replica did not
// answer or failed, and the primary must be asked instead. A not-found
// answer stands here; the caller decides whether the primary may know
// better.
func (r *Reader) fromReplica(ctx context.Context, what string, call func(ctx context.Context) error) (err error, stands bool) {
	ok, probe := r.useReplica()
	if !ok {
		return nil, false
	}
	if probe {
		defer r.probing.Store(false)
	}
	rctx, cancel := context.WithTimeout(ctx, r.opts.ReplicaTimeout)
	err = call(rctx)
	cancel()
	switch {
	case err == nil || errors.Is(err, store.ErrNotFound):
		if r.down.Swap(false) {
			r.logger.Info("the read replica answers again: reading from it")
		}
		return err, true
	case ctx.Err() != nil:
		// The caller's own deadline or cancellation: not the replica's fault.
		return err, true
	case store.Unavailable(err):
		r.downUntil.Store(r.opts.Now().Add(r.opts.Retry).UnixNano())
		r.down.Store(true)
		r.logger.Warn("the read replica does not answer: reading from the primary", "while", what, "retry in", r.opts.Retry, "err", err)
	default:
		r.logger.Warn("the read replica failed: reading from the primary", "while", what, "err", err)
	}
	return err, false
}

// Logs lists the replica's logs and those with a pinned head; the
// primary's when the replica cannot answer.
func (r *Reader) Logs(ctx context.Context) ([]string, error) {
	var names []string
	err, stands := r.fromReplica(ctx, "listing logs", func(ctx context.Context) (err error) {
		names, err = r.replica.Logs(ctx)
		return err
	})
	if !stands {
		return r.primary.Logs(ctx)
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, st := range r.logs {
		if st.floor != nil && !contains(names, name) {
			names = append(names, name)
		}
	}
	return names, nil
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// ServedHead returns the replica's served head, or the primary's where the
// replica lacks a pinned head, has lagged for more than MaxLag, or cannot
// answer (see the package documentation).
func (r *Reader) ServedHead(ctx context.Context, log string) (store.Head, error) {
	var rh store.Head
	rerr, stands := r.fromReplica(ctx, "reading the served head", func(ctx context.Context) (err error) {
		rh, err = r.replica.ServedHead(ctx, log)
		return err
	})
	if !stands {
		return r.primary.ServedHead(ctx, log)
	}
	if rerr != nil && !errors.Is(rerr, store.ErrNotFound) {
		return store.Head{}, rerr
	}
	// The primary's head tells how far behind the replica is. A primary
	// that cannot answer (within ReplicaTimeout: this is advice only)
	// leaves the replica's head standing: reads then go on from the
	// replica alone.
	pctx, cancel := context.WithTimeout(ctx, r.opts.ReplicaTimeout)
	ph, perr := r.primary.ServedHead(pctx, log)
	cancel()
	have := int64(0)
	if rerr == nil {
		have = rh.Size
	}
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.logs[log]
	if st == nil {
		st = &logState{}
		r.logs[log] = st
	}
	if st.floor != nil && st.floor.Size <= have {
		st.floor = nil
	}
	if perr == nil && ph.Size > have {
		if st.behind == 0 || st.behind <= have {
			st.behind, st.behindSince = ph.Size, now
		}
	} else if perr == nil || st.behind <= have {
		st.behind = 0
	}
	switch {
	case perr == nil && st.behind != 0 && now.Sub(st.behindSince) > r.opts.MaxLag:
		r.logger.Warn("the read replica lags behind the primary: serving the primary's head", "log", log,
			"replica size", have, "primary size", ph.Size, "behind for", now.Sub(st.behindSince).Round(time.Second))
		return ph, nil
	case st.floor != nil:
		return *st.floor, nil
	}
	return rh, rerr
}

// Pin makes the primary's served head the least head served for log until
// the replica has one as large: a record just written to the primary is
// then answered, with the head that proves it.
func (r *Reader) Pin(ctx context.Context, log string) error {
	h, err := r.primary.ServedHead(ctx, log)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.logs[log]
	if st == nil {
		st = &logState{}
		r.logs[log] = st
	}
	if st.floor == nil || h.Size > st.floor.Size {
		st.floor = &h
	}
	return nil
}

// Lookup asks the replica, then the primary if the replica lacks the record.
func (r *Reader) Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error) {
	var rec store.Record
	err, stands := r.fromReplica(ctx, "lookup", func(ctx context.Context) (err error) {
		rec, err = r.replica.Lookup(ctx, log, path, version, maxID)
		return err
	})
	if stands && !errors.Is(err, store.ErrNotFound) {
		return rec, err
	}
	return r.primary.Lookup(ctx, log, path, version, maxID)
}

// ReadRecords asks the replica, then the primary if the replica lacks any.
func (r *Reader) ReadRecords(ctx context.Context, log string, start, n int64) ([]store.Record, error) {
	var recs []store.Record
	err, stands := r.fromReplica(ctx, "reading records", func(ctx context.Context) (err error) {
		recs, err = r.replica.ReadRecords(ctx, log, start, n)
		return err
	})
	if stands && !errors.Is(err, store.ErrNotFound) {
		return recs, err
	}
	return r.primary.ReadRecords(ctx, log, start, n)
}

// ReadTiles asks the replica, then the primary if the replica lacks any.
func (r *Reader) ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error) {
	var data [][]byte
	err, stands := r.fromReplica(ctx, "reading tiles", func(ctx context.Context) (err error) {
		data, err = r.replica.ReadTiles(ctx, log, tiles)
		return err
	})
	if stands && !errors.Is(err, store.ErrNotFound) {
		return data, err
	}
	return r.primary.ReadTiles(ctx, log, tiles)
}

// A Fetcher stores a record the store lacks (server.Fetcher has this
// method set).
type Fetcher interface {
	Fetch(ctx context.Context, path, version string) error
}

// Fetcher returns f pinning log's primary head after every successful
// fetch, so that the record fetched is answered from the primary until the
// replica has it.
func (r *Reader) Fetcher(log string, f Fetcher) Fetcher {
	return pinning{r: r, log: log, f: f}
}

type pinning struct {
	r   *Reader
	log string
	f   Fetcher
}

func (p pinning) Fetch(ctx context.Context, path, version string) error {
	if err := p.f.Fetch(ctx, path, version); err != nil {
		return err
	}
	if err := p.r.Pin(ctx, p.log); err != nil {
		p.r.logger.Warn("reading the primary's served head after a fetch", "log", p.log, "err", err)
	}
	return nil
}

// FetchTile is f's FetchTile where f has one (see server.TileFetcher), else
// store.ErrNotFound. A tile it stores is read from the primary while the
// replica lacks it (ReadTiles falls back), and the served head does not
// move, so nothing needs pinning.
func (p pinning) FetchTile(ctx context.Context, t tlog.Tile) error {
	tf, ok := p.f.(interface {
		FetchTile(ctx context.Context, t tlog.Tile) error
	})
	if !ok {
		return fmt.Errorf("tile %s: %w", t.Path(), store.ErrNotFound)
	}
	return tf.FetchTile(ctx, t)
}
