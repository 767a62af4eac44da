package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
)

// Air-gap bundles.
//
// A bundle is a store (a SQLite file) holding, for one log:
//
//   - the exporting mirror's served head B and every head it stored below
//     B, with their signed notes;
//   - the records a set of go.sum files needs, each provable under B;
//   - the hash tiles of those inclusion proofs, and of the consistency
//     proofs of every head under B.
//
// Carrying every head with its consistency tiles is what lets bundles from
// one exporter be imported in any order: a mirror that imported a newer
// bundle holds the tiles proving the older bundle's head (one of the
// exporter's heads) under its own, and a newer bundle proves the mirror's
// older heads under the new one.
//
// Import trusts the key only: it verifies every note's signature, every
// head's consistency with B, every record against its leaf hash and every
// tile against B's signed root before it changes anything, and then merges
// as lazy mode's Advance does, so that everything stored stays provable
// under the served head. A bundle that fails any check is rejected whole.

// ExportResult describes a written bundle.
type ExportResult struct {
	Head    store.Head
	Heads   int
	Records int
	Tiles   int
	Missing []module.Version // named by the go.sum files, not in the mirror
}

// Export writes to the empty store to the bundle for mods from the store
// from, which holds the log whose verifier key is key. It verifies what it
// writes as Import will.
func Export(ctx context.Context, from store.Store, key string, mods []module.Version, to store.Store) (ExportResult, error) {
	var res ExportResult
	v, err := note.NewVerifier(key)
	if err != nil {
		return res, fmt.Errorf("export: invalid key %q: %w", key, err)
	}
	log := v.Name()
	served, err := from.ServedHead(ctx, log)
	if err != nil {
		return res, fmt.Errorf("export %s: the store serves no head: %w", log, err)
	}
	b, err := proof.CheckHead(served, v)
	if err != nil {
		return res, fmt.Errorf("export %s: served head: %w", log, err)
	}
	res.Head = b
	seen := make(map[int64]bool)
	var recs []store.Record
	for _, m := range mods {
		r, err := from.Lookup(ctx, log, m.Path, m.Version, b.Size)
		if errors.Is(err, store.ErrNotFound) {
			res.Missing = append(res.Missing, m)
			continue
		}
		if err != nil {
			return res, err
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			recs = append(recs, r)
		}
	}
	slices.SortFunc(recs, func(a, b store.Record) int { return int(a.ID - b.ID) })

	r := proof.NewReader(ctx, proof.ReaderConfig{Store: from, Log: log, VerifyAll: true})
	hr := r.HashReader(b.Tree())
	for _, rec := range recs {
		if err := proof.Record(hr, b, rec); err != nil {
			return res, fmt.Errorf("export %s: the mirror's own copy does not verify: %w", log, err)
		}
	}
	heads, err := from.Heads(ctx, log)
	if err != nil {
		return res, err
	}
	var keep []store.Head
	for _, h := range heads {
		if h.Size > b.Size {
			continue
		}
		h, err := proof.CheckHead(h, v)
		if err != nil {
			return res, fmt.Errorf("export %s: stored head %d: %w", log, h.Size, err)
		}
		if err := proof.Head(hr, b, h); errors.Is(err, store.ErrNotFound) {
			continue // its consistency tiles are not stored: not carried
		} else if err != nil {
			return res, fmt.Errorf("export %s: the mirror's own copy does not verify: %w", log, err)
		}
		keep = append(keep, h)
	}
	for _, h := range keep {
		if err := to.AddHead(ctx, log, h); err != nil {
			return res, err
		}
	}
	tiles := r.Verified()
	if err := to.Commit(ctx, log, store.Batch{Records: recs, Tiles: tiles, Synced: -1, Serve: b.Size}); err != nil {
		return res, fmt.Errorf("export %s: writing the bundle: %w", log, err)
	}
	res.Heads, res.Records, res.Tiles = len(keep), len(recs), len(tiles)
	return res, nil
}

// ImportResult describes a merged bundle.
type ImportResult struct {
	Bundle  store.Head // the bundle's head
	Served  store.Head // the mirror's served head afterwards
	Records int        // records in the bundle
	Heads   int        // heads in the bundle
}

// bundleSource reads tiles from a bundle: hostile bytes, authenticated by
// the readers like an upstream's.
type bundleSource struct {
	st   store.Store
	log  string
	name string
}

func (b bundleSource) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	d, err := b.st.ReadTiles(ctx, b.log, []tlog.Tile{t})
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.name, err)
	}
	return d[0], nil
}

func (b bundleSource) URL() string { return "bundle " + b.name }

// BundleChecker is a bundle's store that can check that each of its rows
// is one an export of a log writes (sqlite.Store.CheckBundle does).
type BundleChecker interface {
	CheckBundle(ctx context.Context, log string) error
}

// ErrBundleRejected is what Import fails with (wrapped, with the reason)
// when a bundle is not a correct, verifiable export.
var ErrBundleRejected = errors.New("rejected")

// Import verifies the bundle completely and merges it into the store. name
// names the bundle in messages. The bundle must be a BundleChecker: before
// anything else, every row of it must be one a correct export writes, so a
// bundle with any other row (a record id of -5 that no walk of its records
// would meet, a tile of width 0 that no proof reads) is rejected whole. On
// any failure the store is left as it was (except for evidence of a fork,
// which is kept).
func (s *Syncer) Import(ctx context.Context, bundle store.Store, name string) (ImportResult, error) {
	var res ImportResult
	fail := func(format string, args ...any) (ImportResult, error) {
		return res, fmt.Errorf("bundle %s %w: %s", name, ErrBundleRejected, fmt.Sprintf(format, args...))
	}
	bc, ok := bundle.(BundleChecker)
	if !ok {
		return fail("its store (%T) cannot be checked row by row", bundle)
	}
	if err := bc.CheckBundle(ctx, s.log); err != nil {
		return fail("%v", err)
	}
	heads, err := bundle.Heads(ctx, s.log)
	if err != nil {
		return fail("reading its heads: %v", err)
	}
	if len(heads) == 0 {
		return fail("it holds no head of %s", s.log)
	}
	for i, h := range heads {
		if heads[i], err = proof.CheckHead(h, s.verifier); err != nil {
			return fail("head %d: %v", h.Size, err)
		}
	}
	b := heads[len(heads)-1]
	if served, err := bundle.ServedHead(ctx, s.log); err != nil || served.Size != b.Size || !bytes.Equal(served.Note, b.Note) {
		return fail("its served head is not its newest head")
	}
	res.Bundle, res.Heads = b, len(heads)

	// Verify the bundle on its own: records and heads under its head, from
	// its tiles only.
	r := proof.NewReader(ctx, proof.ReaderConfig{Store: bundle, Log: s.log})
	hr := r.HashReader(b.Tree())
	for _, h := range heads {
		if err := proof.Head(hr, b, h); err != nil {
			return fail("%v", err)
		}
	}
	var recs []store.Record
	for after := int64(-1); ; {
		ids, err := bundle.RecordIDs(ctx, s.log, after, 1024)
		if err != nil {
			return fail("listing its records: %v", err)
		}
		if len(ids) == 0 {
			break
		}
		for _, id := range ids {
			rs, err := bundle.ReadRecords(ctx, s.log, id, 1)
			if err != nil {
				return fail("reading record %d: %v", id, err)
			}
			if err := proof.Record(hr, b, rs[0]); err != nil {
				return fail("%v", err)
			}
			recs = append(recs, rs[0])
		}
		after = ids[len(ids)-1]
	}
	res.Records = len(recs)

	// Merge: link the bundle's head to the mirror's, then prove everything
	// under the newer of the two, reading what the mirror lacks from the
	// bundle.
	if n, err := s.cfg.Store.Synced(ctx, s.log); err != nil {
		return res, err
	} else if n > 0 {
		return fail("the mirror holds a full copy of %s (records 0..%d); bundles are for lazily filled mirrors", s.log, n-1)
	}
	if err := s.checkEvidence(ctx); err != nil {
		return res, err
	}
	imp := &Syncer{cfg: s.cfg, verifier: s.verifier, log: s.log, logger: s.logger,
		src: bundleSource{st: bundle, log: s.log, name: name}, absent: newAbsentCache(0)}
	if _, err := imp.link(ctx, b); err != nil {
		return fail("%v", err)
	}
	for _, h := range heads {
		if err := s.cfg.Store.AddHead(ctx, s.log, h); err != nil {
			return res, err
		}
	}
	// advance proves under the mirror's served head instead when that is
	// newer than the bundle's.
	served, err := imp.advance(ctx, b, recs, nil, nil, nil)
	if err != nil {
		return fail("%v", err)
	}
	res.Served = served
	return res, nil
}
