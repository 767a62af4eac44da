// Package store defines what sumkeep keeps about a checksum database and the
// interfaces its storage backends implement, by role: a Reader is all the
// server needs (a read replica can be one), a Writer what the mirror needs
// besides, Store both; Stager is an optional capability (Postgres's staged
// commits). The backends are store/postgres and store/sqlite, each with its
// schema beside it; store/backend opens one from a --db value, and
// store/storetest is the conformance suite every backend runs.
//
// A store holds, per log (keyed by the log's name, e.g. "sum.golang.org"):
//
//   - tree heads: every signed head that the mirror verified, with the signed note
//     bytes exactly as received. Heads are never deleted.
//   - hash tiles: (level, index) with the widest width seen. Tiles are
//     prefix-stable, so a narrower request is served by slicing. A level-0
//     tile is its records' leaf hashes, so where the records are stored it
//     need not be: a full sync stores none, and ReadTiles rebuilds them
//     (LeafTile) under the full-sync cursor. On-demand fetches store the
//     level-0 tiles of their proofs, and above the cursor a level-0 tile is
//     only ever read as stored: records stored on demand are in no order,
//     and looking for all of a tile's among them can cost a store a scan.
//   - records: id, module path, version and the exact record bytes the log
//     holds (the leaf hash is over these bytes).
//   - evidence of upstream misbehaviour, kept forever.
//
// Two heads matter to readers: the newest verified head (Latest) and the
// served head (Served), the newest head for which every tile and record below
// it is stored. Servers answer with the served head only, so they never serve
// what they could not prove.
//
// Everything the mirror writes goes through Commit, one transaction per batch,
// so a crash loses at most the batch in flight and never leaves half of one.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrNotFound reports that the requested head, tile or record is not stored.
// It wraps fs.ErrNotExist.
var ErrNotFound = fmt.Errorf("not found in store: %w", fs.ErrNotExist)

// ErrLocked reports that another process holds the sync lock for a log.
var ErrLocked = errors.New("another sync holds the lock for this log")

// ErrDuplicate reports a record whose module path and version are already
// stored under another id: the upstream log holds two records for one
// module@version.
var ErrDuplicate = errors.New("duplicate module@version in log")

// ErrConflict reports that a batch's Expect did not hold: another writer
// changed the log since the batch was prepared. Nothing of the batch is
// stored; prepare it again from the new state.
var ErrConflict = errors.New("the log changed while the batch was prepared")

// ErrNotStore reports that a database opened read-only holds no sumkeep
// store: it lacks sumkeep's tables (an empty database, or another
// application's). Nothing was created in it; `sumkeep migrate` creates the
// schema. A store opened read-only that does not exist at all gives an
// error wrapping fs.ErrNotExist instead.
var ErrNotStore = errors.New("not a sumkeep store")

// ErrSchemaVersion reports that a store opened read-only has a schema
// other than this sumkeep's: older (`sumkeep migrate` upgrades it) or newer
// (written by a later sumkeep).
var ErrSchemaVersion = errors.New("the store's schema version is not this sumkeep's")

// Tables returns the tables of a sumkeep store's schema, in either
// backend: a database lacking any of them is not a sumkeep store.
func Tables() []string {
	return []string{"schema_migrations", "logs", "heads", "tiles", "records", "evidence"}
}

// TileHeight is the tile height of the Go checksum database protocol.
const TileHeight = 8

// Around is what HeadsAround returns: the stored heads next smaller than a
// size (Pred), of that size (At), next larger (Succ) and the largest
// (Latest); nil where the store has none.
type Around struct {
	Pred, At, Succ, Latest *Head
}

// AroundOf classifies heads (in any order, possibly repeated) around size:
// what HeadsAround returns when heads hold at least the true neighbours
// and the largest.
func AroundOf(heads []Head, size int64) Around {
	var a Around
	for i := range heads {
		h := &heads[i]
		switch {
		case h.Size < size:
			if a.Pred == nil || h.Size > a.Pred.Size {
				a.Pred = h
			}
		case h.Size == size:
			a.At = h
		default:
			if a.Succ == nil || h.Size < a.Succ.Size {
				a.Succ = h
			}
		}
		if a.Latest == nil || h.Size > a.Latest.Size {
			a.Latest = h
		}
	}
	return a
}

// Head is a signed tree head.
type Head struct {
	Size      int64
	Hash      tlog.Hash
	Note      []byte    // the signed note exactly as received
	FirstSeen time.Time // set by the store
}

// Tree returns the tree the head signs.
func (h Head) Tree() tlog.Tree { return tlog.Tree{N: h.Size, Hash: h.Hash} }

// Record is one entry of the log.
type Record struct {
	ID      int64
	Path    string
	Version string
	Data    []byte // exact record bytes as the log holds them
}

// Tile is a hash tile with its contents: Tile.W hashes of tlog.HashSize bytes.
// Data tiles (L = -1) are never stored: they are rebuilt from records, as are
// level-0 tiles over stored records.
type Tile struct {
	Tile tlog.Tile
	Data []byte
}

// Evidence is proof of upstream misbehaviour.
//
// Evidence with an Object is kept once per log, Kind, Source and Object:
// the same misbehaviour seen again only counts (Count, LastSeen), so that a
// source that keeps lying cannot grow the store without bound; the bytes
// kept are those seen first.
type Evidence struct {
	Kind      string // EvidenceFork, EvidenceBadRecord, EvidenceDuplicate, ...
	Message   string // what was wrong, for people
	Source    string // where the offending bytes came from (an upstream's URL, a bundle)
	Object    string // what was wrong, as a key: "signed tree head", "tile/8/0/003", ...
	NoteA     []byte // first signed note involved, if any
	NoteB     []byte // second signed note involved (the fork's other side)
	Data      []byte // offending bytes (a record, a tile), if any
	CreatedAt time.Time
	// Set by the store: how many times it was seen, and when last.
	Count    int64
	LastSeen time.Time
}

// Kinds of evidence.
const (
	EvidenceFork      = "fork"             // two signed heads that are not consistent
	EvidenceBadRecord = "record-mismatch"  // a record that does not match its leaf hash
	EvidenceBadTile   = "tile-mismatch"    // hash tiles that do not match the signed root
	EvidenceDuplicate = "duplicate-record" // two records for one module@version
	EvidenceBadSig    = "bad-signature"    // a signed tree head whose signature does not verify
	// EvidenceWrongAnswer: a lookup answered with the record of another
	// module@version (Data: that record).
	EvidenceWrongAnswer = "wrong-answer"
	// EvidenceReplicaMismatch: the Trillian replica's root differs from a
	// signed head's (Data: the replica's signed log root).
	EvidenceReplicaMismatch = "replica-mismatch"
)

// Batch is one unit of sync work, committed atomically.
type Batch struct {
	// Records to add, in strictly ascending id order. Full sync writes
	// contiguous ranges; on-demand fetches write scattered ids. A record
	// stored already with the same bytes is left as it is; with other bytes
	// the batch fails.
	Records []Record
	// Tiles to add or widen. A stored tile is replaced only by a wider one.
	Tiles []Tile
	// Synced, when >= 0, sets the full-sync cursor: records [0, Synced) are
	// stored. Use -1 to leave it alone.
	Synced int64
	// Serve, when > 0, makes the stored head of that size the served head.
	// It must not be smaller than the current served head.
	Serve int64
	// Resumable says nothing is acknowledged on this batch: it only moves
	// the full-sync cursor, and if a database crash lost it after Commit
	// returned, the next sync would fetch it again. Such a batch may commit
	// without waiting for its log to reach disk. A batch that serves a head
	// or answers a client must not be Resumable; its durable commit makes
	// every earlier batch durable too (the log is written in order).
	Resumable bool
	// Expect, when not nil, makes Commit fail with ErrConflict, storing
	// nothing, unless the log is still in this state: the same served head
	// and, when Expect.Generation >= 0, the same generation. Writers that
	// prove records under the served head use it so that a head served in
	// the meantime (or a record stored in the meantime) cannot leave a
	// record unprovable under the served head.
	Expect *State
}

// State is what a writer checks before committing (see Batch.Expect).
type State struct {
	// Served is the size of the served head (0: none).
	Served int64
	// Generation counts the commits that stored records or moved the
	// served head.
	Generation int64
}

// Reader is what answers are served from: the server and anything else
// that only reads what the mirror proved (the verifier declares a narrower
// one of its own). Readers see the served head and what lies under it; they
// never write, so a read replica can implement Reader alone.
type Reader interface {
	// Logs lists the names of the logs the store holds.
	Logs(ctx context.Context) ([]string, error)
	// ServedHead returns the served head, or ErrNotFound.
	ServedHead(ctx context.Context, log string) (Head, error)
	// Lookup returns the record for path@version with id below maxID, or
	// ErrNotFound.
	Lookup(ctx context.Context, log, path, version string, maxID int64) (Record, error)
	// ReadRecords returns records [start, start+n), or ErrNotFound if any is
	// missing.
	ReadRecords(ctx context.Context, log string, start, n int64) ([]Record, error)
	// ReadTiles returns the contents of the given hash tiles, each exactly
	// t.W hashes (sliced from a wider stored tile where needed, or for
	// level 0 rebuilt from the records under it where the full-sync cursor
	// covers them all), or ErrNotFound if any is neither stored at least
	// that wide nor rebuildable.
	ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error)
}

// Writer is what the mirror, the one writer of a log, needs beyond Reader:
// heads to link, batches to commit, the state its commits expect, evidence
// and the sync lock.
type Writer interface {
	// AddHead stores verified signed heads, all of them in one durable
	// commit or none. Adding a head whose size is stored already with the
	// same hash is a no-op; with another hash it is an error (the caller
	// must have recorded a fork instead). A mirror linking the heads a seed
	// meets (one per lookup through a caching proxy) stores a group's at
	// once.
	AddHead(ctx context.Context, log string, hs ...Head) error
	// LatestHead returns the largest stored head, or ErrNotFound.
	LatestHead(ctx context.Context, log string) (Head, error)
	// Heads returns every stored head in ascending size.
	Heads(ctx context.Context, log string) ([]Head, error)
	// HeadsAround returns the stored heads next to a tree size, in one
	// indexed read however many heads are stored: linking a head needs
	// only its neighbours, and a lazy mirror stores a head for every
	// distinct head its lookups came with.
	HeadsAround(ctx context.Context, log string, size int64) (Around, error)
	// HeadsAroundMany is HeadsAround for each of sizes, in one read:
	// out[i] is what HeadsAround gives for sizes[i]. A seed through a
	// caching proxy links a group's hundreds of heads at once.
	HeadsAroundMany(ctx context.Context, log string, sizes []int64) ([]Around, error)

	// ReadSomeTiles is ReadTiles for the tiles of a list that the store
	// holds, in one round trip to the database: out[i] is tiles[i]'s
	// contents as ReadTiles would return them, or nil where ReadTiles
	// would fail with ErrNotFound (neither stored at least that wide nor
	// rebuildable from records; a log the store does not hold has none).
	// It fails only when the store does. It is how the mirror reads the
	// tiles of a round of proofs, of which the store holds some and the
	// upstream serves the rest.
	ReadSomeTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error)

	// Synced returns the full-sync cursor: records [0, n) are stored.
	Synced(ctx context.Context, log string) (int64, error)
	// Commit applies a batch in one transaction. A record whose path and
	// version are stored under another id fails the batch with ErrDuplicate
	// (wrapped in *DuplicateError), and nothing of it is stored.
	Commit(ctx context.Context, log string, b Batch) error

	// State returns the log's served head size and generation; the zero
	// State for a log the store does not hold.
	State(ctx context.Context, log string) (State, error)
	// RecordIDs returns up to limit ids of stored records above after, in
	// ascending order; fewer than limit only when no more are stored. It
	// is how stores filled on demand are walked (see WalkRecordIDs).
	RecordIDs(ctx context.Context, log string, after int64, limit int) ([]int64, error)

	// AddEvidence keeps evidence of misbehaviour forever: once per Kind,
	// Source and Object if it has an Object (see Evidence).
	AddEvidence(ctx context.Context, log string, e Evidence) error
	// Evidence lists the evidence kept for a log, oldest first.
	Evidence(ctx context.Context, log string) ([]Evidence, error)

	// LockSync takes the per-log sync lock, or fails with ErrLocked if
	// another process holds it. The returned function releases it.
	LockSync(ctx context.Context, log string) (unlock func(), err error)
}

// Store is a backend: everything a sumkeep process reads and writes.
// Implementations must be safe for concurrent use.
type Store interface {
	Reader
	Writer
	Close()
}

// Stager is a capability a Store may have: writing a batch's records while
// the batch before it commits, so that a full sync keeps the database busy
// (store/postgres has it). Sync uses it where a store offers it; the
// conformance suite checks it where a store offers it.
type Stager interface {
	// StageCommit commits b as Commit does, but may start writing it before
	// the batch staged before it (the one whose wait function is after; nil
	// for none) has committed. b commits only once that batch has
	// committed, and not at all if it failed (ErrEarlierFailed), so batches
	// commit in order and a crash loses only uncommitted batches. It
	// returns at once; wait returns b's outcome. Every batch staged must be
	// waited for (or its context cancelled) before the Store is closed.
	StageCommit(ctx context.Context, log string, b Batch, after func() error) (wait func() error)
}

// ErrEarlierFailed is StageCommit's error for a batch it did not commit
// because the batch staged before it failed.
var ErrEarlierFailed = errors.New("not committed: an earlier batch failed")

// DuplicateError describes a record that duplicates a stored module@version.
type DuplicateError struct {
	Path, Version string
	ID, OtherID   int64
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%s@%s is record %d and record %d", e.Path, e.Version, e.OtherID, e.ID)
}

func (e *DuplicateError) Unwrap() error { return ErrDuplicate }
