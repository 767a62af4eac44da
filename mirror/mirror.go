// Package mirror copies a checksum database into a store, verifying every byte
// before it is stored.
//
// One run (Syncer.Once) does this:
//
//  1. Fetch the upstream's signed tree head (/latest) and verify its
//     signature with the configured key.
//  2. Link it to the newest stored head with a consistency proof computed
//     from hash tiles (authenticated against the larger tree's signed root,
//     as golang.org/x/mod/sumdb.Client does). Every stored head was linked the
//     same way when it was stored, so the new head is consistent with all of
//     them. Two heads that do not link are a fork: both signed notes are kept
//     as evidence and sync refuses to advance from then on.
//  3. In full mode, fetch the data tiles and level-0 hash tiles from the
//     stored cursor to the head's size, many requests in flight. Each batch
//     of hash tiles is authenticated against the signed root (through its
//     parent tiles), and every record is checked against its leaf hash. Only
//     then is the batch committed: records, tiles and cursor in one
//     transaction. A crash loses at most the batch in flight; the next run
//     resumes after the last committed one.
//  4. The last batch also stores the higher-level tiles of the new tree and
//     makes the head the served head, so the server moves to it atomically.
//
// Nothing the upstream sends is trusted before it is verified: a head with a
// bad signature, a tile that does not hash to the signed root and a record
// that does not match its leaf hash each stop the run with an error naming
// what was wrong, and nothing of the lie is stored but its evidence (kept
// once per upstream and object, counted: see store.Evidence).
//
// One file per role:
//
//   - mirror.go: the Syncer, its configuration and one run (Once), and the
//     Upstream it reads (package upstream's Client);
//   - writer.go: the per-log writer every other role writes through:
//     opening and linking heads, commits, evidence of lies;
//   - full.go: the full-sync pipeline;
//   - lazy.go: fetching a record on demand (Fetch) and moving the served
//     head while keeping every stored record provable (Advance);
//   - seed.go: fetching what a set of go.sum files needs;
//   - bundle.go: air-gap bundles (Export, Import);
//   - status.go: what a store holds of a log (Status);
//   - schedule.go: running on a cron schedule (RunScheduled);
//   - replica.go: the optional second log engine (package replica's
//     Trillian PREORDERED_LOG) that must agree before a head is served.
//   - upstreams.go: several untrusted upstreams (package upstream's Pool):
//     evidence naming the upstream that lied, its quarantine and the
//     retry from the others, every upstream's head linked (split views).
//
// Proofs are made with package proof, the one place where bytes from an
// upstream, a bundle or a store are authenticated.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

const tileWidth = 1 << store.TileHeight

// DefaultBatchTiles is how many data tiles a full sync commits in one
// batch by default: 65,536 records. Each batch costs both processes a
// fixed share (its transaction, its BRIN summary, its duplicate probes,
// the upper tiles its level-0 tiles are authenticated through), so larger
// batches take less CPU per record: against batches of 64 tiles, 256
// took 10% less CPU per million records (3.26 s against 3.63 s, the
// database's and the syncer's) and synced at 0.80 and 0.83 of a plain
// COPY instead of 0.75, for about 80 MB more heap at the peak. A stopped
// sync redoes at most the batches that had not committed.
const DefaultBatchTiles = 256

// Config configures a Syncer.
type Config struct {
	Store store.Store
	// Upstream is where the log is read from (an *upstream.Pool, or one
	// *upstream.Client); nil for a Syncer that only imports bundles and
	// verifies what is stored.
	Upstream Upstream
	// Key is the upstream's verifier key, e.g.
	// "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8".
	// The log's name is the key's name.
	Key string
	// Concurrency is how many tile requests are in flight (default 32).
	Concurrency int
	// BatchTiles is how many data tiles (of 256 records) go in one
	// transaction (default DefaultBatchTiles).
	BatchTiles int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// ProgressEvery is how often progress is logged (default 5s).
	ProgressEvery time.Duration
	// Mode is ModeAuto (the default), ModeFull or ModeLazy.
	Mode string
	// Replica, if not nil, is fed every committed batch of a full sync and
	// must agree with each head before it is served. It needs full mode.
	Replica Replica
	// Observer, if not nil, is told of every run's end (package metrics
	// implements it).
	Observer RunObserver
	// AbsentTTL is how long a module@version the upstream answered 404 or
	// 410 for is remembered (Fetch answers ErrNoRecord without asking
	// again): 0 means DefaultAbsentTTL, a negative value not at all.
	AbsentTTL time.Duration
}

// A RunObserver is told of every run of Once that started: not of one that
// found another process holding the log's sync lock (store.ErrLocked).
// SyncRun is called on the run's goroutine as it returns, with what Once
// returns (res.Elapsed is set whatever err is), and must be quick.
type RunObserver interface {
	SyncRun(res Result, err error)
}

// Sync modes.
const (
	// ModeFull copies every record and tile; the upstream must serve data
	// tiles.
	ModeFull = "full"
	// ModeLazy keeps what is fetched on demand (Fetch, seed) and, on each
	// run, moves the served head to the upstream's newest while keeping
	// every stored record provable.
	ModeLazy = "lazy"
	// ModeAuto is full where the upstream serves data tiles, else lazy.
	ModeAuto = "auto"
)

// Syncer copies one log into a store.
type Syncer struct {
	cfg      Config
	verifier note.Verifier
	log      string
	logger   *slog.Logger

	modeMu   sync.Mutex
	lastMode string // the mode auto chose, once per Syncer

	src tileSource // where tiles the store lacks come from: the upstream, or a bundle

	linkMu sync.Mutex // one link at a time in this process
	// commitMu makes on-demand commits take turns: they take turns on the
	// log's row in the store anyway, and waiting there each would hold a
	// connection of a pool they may all need.
	commitMu  sync.Mutex
	advanceMu sync.Mutex // one Advance at a time in this process
	committer committer  // on-demand commits, grouped

	fetches     flightGroup[string, struct{}]       // Fetch calls under way, by module@version
	tileFlights flightGroup[tlog.Tile, sourcedTile] // tile requests under way, shared by every reader
	absent      *absentCache                        // module@versions the upstream said it lacks

	notesMu    sync.Mutex
	notes      map[string]store.Head           // signed notes verified lately, by their bytes
	noteChecks flightGroup[string, openedNote] // signature checks under way, by the note's bytes
}

// New checks the configuration and returns a Syncer.
func New(cfg Config) (*Syncer, error) {
	if cfg.Store == nil {
		return nil, errors.New("sync: a store is required")
	}
	v, err := note.NewVerifier(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("sync: invalid upstream key %q: %w", cfg.Key, err)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.BatchTiles <= 0 {
		cfg.BatchTiles = DefaultBatchTiles
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeAuto
	case ModeAuto, ModeFull, ModeLazy:
	default:
		return nil, fmt.Errorf("sync: unknown mode %q (want auto, full or lazy)", cfg.Mode)
	}
	if cfg.Replica != nil && cfg.Mode == ModeLazy {
		return nil, fmt.Errorf("mirror: %w", errReplicaNeedsFull)
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ttl := cfg.AbsentTTL
	if ttl == 0 {
		ttl = DefaultAbsentTTL
	}
	s := &Syncer{cfg: cfg, verifier: v, log: v.Name(), logger: logger.With("log", v.Name()),
		absent: newAbsentCache(ttl)}
	if cfg.Upstream != nil {
		s.src = cfg.Upstream
	} else {
		s.src = noUpstream{}
	}
	return s, nil
}

// Log returns the name of the log being synced.
func (s *Syncer) Log() string { return s.log }

// UpstreamURL names the upstream the syncer reads from, as Upstream.URL
// gives it (credentials masked); "" when it has none.
func (s *Syncer) UpstreamURL() string {
	if s.cfg.Upstream == nil {
		return ""
	}
	return s.cfg.Upstream.URL()
}

// Result describes a finished run.
type Result struct {
	Log      string
	Served   store.Head // the head served after the run
	Previous int64      // size of the head served before the run (0: none)
	Records  int64      // records stored by this run
	Tiles    int64      // hash tiles stored or widened by this run
	Mode     string     // the mode the run used: ModeFull or ModeLazy
	Elapsed  time.Duration
}

// Upstream is where a Syncer reads the checksum database from: package
// upstream's Client, or anything else that speaks the protocol. Nothing it
// returns is trusted; URL names it in messages and evidence.
type Upstream interface {
	URL() string
	// Latest returns the signed tree head note.
	Latest(ctx context.Context) ([]byte, error)
	// Lookup returns the /lookup answer for path@version. Errors wrap
	// upstream.ErrNotServed or upstream.ErrRefused where the upstream
	// answered that it does not serve it.
	Lookup(ctx context.Context, path, version string) ([]byte, error)
	// Tile returns a hash tile (L >= 0) or a data tile (L == -1), possibly
	// longer than asked for (a full tile for a partial one).
	Tile(ctx context.Context, t tlog.Tile) ([]byte, error)
}

// tileSource supplies the tiles the store lacks. Nothing it returns is
// trusted: readers authenticate every tile against a signed root.
type tileSource interface {
	Tile(ctx context.Context, t tlog.Tile) ([]byte, error)
	URL() string // for messages
}

// errNoUpstream is what a Syncer made without an Upstream answers when it
// would need the upstream.
var errNoUpstream = errors.New("no upstream configured")

type noUpstream struct{}

func (noUpstream) Tile(_ context.Context, t tlog.Tile) ([]byte, error) {
	return nil, fmt.Errorf("tile %s: %w (%w)", t.Path(), store.ErrNotFound, errNoUpstream)
}
func (noUpstream) URL() string { return "(no upstream)" }

// Once runs one sync of the log to the upstreams' newest head (see
// onceAnywhere and once), and tells Config.Observer how it went.
func (s *Syncer) Once(ctx context.Context) (Result, error) {
	start := time.Now()
	res, err := s.onceAnywhere(ctx, start)
	res.Elapsed = time.Since(start)
	if s.cfg.Observer != nil && !errors.Is(err, store.ErrLocked) {
		s.cfg.Observer.SyncRun(res, err)
	}
	return res, err
}

// once runs one sync of the log to the upstreams' newest head.
func (s *Syncer) once(ctx context.Context, start time.Time) (Result, error) {
	res := Result{Log: s.log}
	if s.cfg.Upstream == nil {
		return res, fmt.Errorf("sync %s: %w", s.log, errNoUpstream)
	}
	unlock, err := s.cfg.Store.LockSync(ctx, s.log)
	if err != nil {
		return res, fmt.Errorf("sync %s: %w", s.log, err)
	}
	defer unlock()

	if h, err := s.cfg.Store.ServedHead(ctx, s.log); err == nil {
		res.Previous = h.Size
	} else if !errors.Is(err, store.ErrNotFound) {
		return res, err
	}

	if err := s.checkEvidence(ctx); err != nil {
		return res, err
	}

	target, err := s.linkHeads(ctx)
	if err != nil {
		return res, err
	}
	if target.Size <= res.Previous && s.cfg.Replica == nil {
		res.Served = target
		res.Elapsed = time.Since(start)
		return res, nil // nothing new
	}
	mode, err := s.mode(ctx, target)
	if err != nil {
		return res, err
	}
	res.Mode = mode
	if s.cfg.Replica != nil && mode == ModeLazy {
		return res, fmt.Errorf("sync %s: %w", s.log, errReplicaNeedsFull)
	}
	if target.Size <= res.Previous {
		// Nothing new; a replica that is behind (new, or down for a
		// while) is caught up with the served head and must agree.
		res.Served = target
		err := s.checkReplica(ctx, target, true)
		res.Elapsed = time.Since(start)
		return res, err
	}
	if mode == ModeLazy {
		_, err := s.advance(ctx, target, nil, nil, &res.Tiles, nil)
		res.Elapsed = time.Since(start)
		if err != nil {
			return res, err
		}
		res.Served = target
		return res, nil
	}
	n, err := s.full(ctx, target, res.Previous, &res.Tiles)
	res.Records = n
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, err
	}
	res.Served = target
	return res, nil
}

// mode returns the mode of this run. Auto asks the upstream, once per
// Syncer, for the first data tile of the target tree: served means full,
// refused (403, 404, 410) means lazy. The choice and its reason are logged.
func (s *Syncer) mode(ctx context.Context, target store.Head) (string, error) {
	if s.cfg.Mode != ModeAuto {
		return s.cfg.Mode, nil
	}
	s.modeMu.Lock()
	last := s.lastMode
	s.modeMu.Unlock()
	if last != "" {
		return last, nil
	}
	mode, why := ModeFull, "the upstream serves data tiles"
	if target.Size > 0 {
		t := tlog.Tile{H: store.TileHeight, L: -1, N: 0, W: int(min(tileWidth, target.Size))}
		_, err := s.cfg.Upstream.Tile(ctx, t)
		switch {
		case errors.Is(err, upstream.ErrNotServed) || errors.Is(err, upstream.ErrRefused):
			mode, why = ModeLazy, fmt.Sprintf("the upstream refuses data tiles (%v)", err)
		case err != nil:
			return "", fmt.Errorf("sync %s: choosing a mode: %w", s.log, err)
		}
	}
	// Two runs may have asked at once (serve's first sync and a lookup's
	// fetch): the first to finish decides, and says so once.
	s.modeMu.Lock()
	if s.lastMode != "" {
		mode = s.lastMode
		s.modeMu.Unlock()
		return mode, nil
	}
	s.lastMode = mode
	s.modeMu.Unlock()
	s.logger.Info("mode auto: using "+mode+" mode: "+why, "mode", mode)
	return mode, nil
}
