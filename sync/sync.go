// Package sync copies a checksum database into a store, verifying every byte
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
// what was wrong, and nothing of the lie is stored.
package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
)

const tileWidth = 1 << store.TileHeight

// Config configures a Syncer.
type Config struct {
	Store  store.Store
	Client *Client
	// Key is the upstream's verifier key, e.g.
	// "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8".
	// The log's name is the key's name.
	Key string
	// Concurrency is how many tile requests are in flight (default 32).
	Concurrency int
	// BatchTiles is how many data tiles (of 256 records) go in one
	// transaction (default 64).
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

	modeMu   gosync.Mutex
	lastMode string // the mode auto chose, once per Syncer

	src tileSource // where tiles the store lacks come from: the upstream, or a bundle

	linkMu gosync.Mutex // one link at a time in this process
	// commitMu makes on-demand commits take turns: they take turns on the
	// log's row in the store anyway, and waiting there each would hold a
	// connection of a pool they may all need.
	commitMu  gosync.Mutex
	advanceMu gosync.Mutex // one Advance at a time in this process
	flightMu  gosync.Mutex
	flights   map[string]*flight // Fetch calls under way, by module@version
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
		cfg.BatchTiles = 64
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeAuto
	case ModeAuto, ModeFull, ModeLazy:
	default:
		return nil, fmt.Errorf("sync: unknown mode %q (want auto, full or lazy)", cfg.Mode)
	}
	if cfg.Replica != nil && cfg.Mode == ModeLazy {
		return nil, fmt.Errorf("sync: %w", errReplicaNeedsFull)
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Syncer{cfg: cfg, verifier: v, log: v.Name(), logger: logger.With("log", v.Name()),
		flights: make(map[string]*flight)}
	if cfg.Client != nil {
		s.src = cfg.Client
	} else {
		s.src = noUpstream{}
	}
	return s, nil
}

// Log returns the name of the log being synced.
func (s *Syncer) Log() string { return s.log }

// Result describes a finished run.
type Result struct {
	Log      string
	Served   store.Head // the head served after the run
	Previous int64      // size of the head served before the run (0: none)
	Records  int64      // records stored by this run
	Mode     string     // the mode the run used: ModeFull or ModeLazy
	Elapsed  time.Duration
}

// MisbehaviourError reports upstream misbehaviour. The evidence has been
// kept in the store, unless KeepErr says why it could not be: the lie is
// refused all the same, and the error is still a MisbehaviourError, so that
// whatever stops on a lie (a seed, a sync) stops on this one too.
type MisbehaviourError struct {
	Evidence store.Evidence
	// KeepErr is why the evidence could not be stored; nil when it was.
	KeepErr error
}

func (e *MisbehaviourError) Error() string {
	msg := fmt.Sprintf("upstream misbehaviour (%s): %s", e.Evidence.Kind, e.Evidence.Message)
	if e.KeepErr != nil {
		msg += fmt.Sprintf(" (and keeping the evidence failed: %v)", e.KeepErr)
	}
	return msg
}

// Unwrap returns why the evidence could not be kept, if it could not.
func (e *MisbehaviourError) Unwrap() error { return e.KeepErr }

// blocking reports whether evidence of this kind stops all further syncs:
// it is signed proof that the log itself misbehaved. Bad tiles and records
// are unsigned bytes from one server; they stop the run that saw them.
func blocking(kind string) bool {
	return kind == store.EvidenceFork || kind == store.EvidenceDuplicate
}

// tileSource supplies the tiles the store lacks. Nothing it returns is
// trusted: readers authenticate every tile against a signed root.
type tileSource interface {
	Tile(ctx context.Context, t tlog.Tile) ([]byte, error)
	URL() string // for messages
}

// errNoUpstream is what a Syncer made without a Client answers when it
// would need the upstream.
var errNoUpstream = errors.New("no upstream configured")

type noUpstream struct{}

func (noUpstream) Tile(_ context.Context, t tlog.Tile) ([]byte, error) {
	return nil, fmt.Errorf("tile %s: %w (%w)", t.Path(), store.ErrNotFound, errNoUpstream)
}
func (noUpstream) URL() string { return "(no upstream)" }

// Once runs one sync of the log to the upstream's newest head.
func (s *Syncer) Once(ctx context.Context) (Result, error) {
	start := time.Now()
	res := Result{Log: s.log}
	if s.cfg.Client == nil {
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

	head, err := s.fetchHead(ctx)
	if err != nil {
		return res, err
	}
	target, err := s.link(ctx, head)
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
		err := s.Advance(ctx, target)
		res.Elapsed = time.Since(start)
		if err != nil {
			return res, err
		}
		res.Served = target
		return res, nil
	}
	n, err := s.full(ctx, target, res.Previous)
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
		_, err := s.cfg.Client.Tile(ctx, t)
		switch {
		case errors.Is(err, ErrNotServed) || errors.Is(err, ErrRefused):
			mode, why = ModeLazy, fmt.Sprintf("the upstream refuses data tiles (%v)", err)
		case err != nil:
			return "", fmt.Errorf("sync %s: choosing a mode: %w", s.log, err)
		}
	}
	s.modeMu.Lock()
	s.lastMode = mode
	s.modeMu.Unlock()
	s.logger.Info("mode auto: using "+mode+" mode: "+why, "mode", mode)
	return mode, nil
}

// fetchHead fetches /latest and verifies its signature.
func (s *Syncer) fetchHead(ctx context.Context) (store.Head, error) {
	msg, err := s.cfg.Client.Latest(ctx)
	if err != nil {
		return store.Head{}, err
	}
	return s.openHead(msg, s.cfg.Client.URL()+"/latest")
}

func (s *Syncer) openHead(msg []byte, where string) (store.Head, error) {
	h, err := proof.OpenHead(msg, s.verifier)
	if err != nil {
		return h, fmt.Errorf("%s: %w", where, err)
	}
	return h, nil
}

// link proves h consistent with the stored heads, stores it, and returns
// the head to sync to: the largest stored head.
//
// Every stored head is proven consistent with its neighbours (the next
// smaller and the next larger stored head), so all of them are consistent
// with each other. h is checked against its neighbours before it is stored
// and again after, because another process may have stored a head between
// the two: of two heads stored at once, the later one's second check sees
// the earlier one. Two heads that do not link are a fork.
func (s *Syncer) link(ctx context.Context, h store.Head) (store.Head, error) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	proven := make(map[int64]bool) // neighbours proven consistent with h
	for round := 0; ; round++ {
		heads, err := s.cfg.Store.Heads(ctx, s.log)
		if err != nil {
			return h, err
		}
		var pred, succ *store.Head
		stored := false
		for i := range heads {
			switch {
			case heads[i].Size < h.Size:
				pred = &heads[i]
			case heads[i].Size == h.Size:
				if heads[i].Hash != h.Hash {
					return h, s.fork(ctx, heads[i], h)
				}
				stored = true
			case succ == nil:
				succ = &heads[i]
			}
		}
		if stored && round == 0 {
			// Stored before, and proven then against its neighbours (a
			// neighbour stored later was proven against it).
			return heads[len(heads)-1], nil
		}
		for _, o := range []*store.Head{pred, succ} {
			if o == nil || proven[o.Size] {
				continue
			}
			if err := s.consistent(ctx, *o, h); err != nil {
				return h, err
			}
			proven[o.Size] = true
		}
		if stored && round > 0 {
			latest := h
			if len(heads) > 0 && heads[len(heads)-1].Size > h.Size {
				latest = heads[len(heads)-1]
			}
			return latest, nil
		}
		if len(heads) == 0 {
			s.logger.Info("first head", "size", h.Size)
		} else if succ != nil {
			s.logger.Debug("upstream head is older than the stored one; keeping the stored one", "upstream", h.Size, "stored", heads[len(heads)-1].Size)
		}
		if err := s.cfg.Store.AddHead(ctx, s.log, h); err != nil {
			return h, err
		}
		if round > 3 {
			return h, fmt.Errorf("sync %s: linking head %d: the stored heads keep changing", s.log, h.Size)
		}
	}
}

// consistent proves heads a and b consistent, from tiles of the larger one
// (authenticated against its signed root), and keeps evidence of a fork.
func (s *Syncer) consistent(ctx context.Context, a, b store.Head) error {
	small, big := a, b
	if b.Size < a.Size {
		small, big = b, a
	}
	var th tlog.Hash
	if small.Size == big.Size {
		th = big.Hash
	} else {
		var err error
		th, err = tlog.TreeHash(small.Size, s.newReader(ctx).HashReader(big.Tree()))
		if err != nil {
			return s.tileTrouble(ctx, fmt.Errorf("proving head %d consistent with head %d: %w", small.Size, big.Size, err), big)
		}
	}
	if th != small.Hash {
		return s.fork(ctx, a, b)
	}
	return nil
}

// fork keeps the evidence of two signed heads that are not consistent, the
// stored one first.
func (s *Syncer) fork(ctx context.Context, stored, h store.Head) error {
	return s.misbehaved(ctx, store.Evidence{
		Kind: store.EvidenceFork,
		Message: fmt.Sprintf("signed heads of size %d (stored %s) and %d (from %s) are not consistent: the log has forked",
			stored.Size, stored.FirstSeen.Format(time.RFC3339), h.Size, s.src.URL()),
		NoteA: stored.Note,
		NoteB: h.Note,
	})
}

// misbehaved keeps evidence and returns the error that stops the sync.
func (s *Syncer) misbehaved(ctx context.Context, e store.Evidence) error {
	s.logger.Error("upstream misbehaviour", "kind", e.Kind, "message", e.Message)
	if err := s.cfg.Store.AddEvidence(ctx, s.log, e); err != nil {
		return &MisbehaviourError{Evidence: e, KeepErr: err}
	}
	return &MisbehaviourError{Evidence: e}
}

// tileTrouble turns a failed tile authentication into evidence. Other errors
// (network, store) pass through.
func (s *Syncer) tileTrouble(ctx context.Context, err error, against store.Head) error {
	if _, ok := errors.AsType[*proof.InconsistentTileError](err); !ok {
		return err
	}
	return s.misbehaved(ctx, store.Evidence{
		Kind:    store.EvidenceBadTile,
		Message: fmt.Sprintf("hash tiles from %s do not match the signed root of tree %d: %v", s.src.URL(), against.Size, err),
		NoteA:   against.Note,
	})
}
