package verifier

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
)

// Store is what StoreSource reads; a store.Store has it. Nothing it returns
// is trusted: heads are verified with the key, tiles against the signed
// root, records by their inclusion proofs.
type Store interface {
	ServedHead(ctx context.Context, log string) (store.Head, error)
	Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error)
	ReadTiles(ctx context.Context, log string, tiles []tlog.Tile) ([][]byte, error)
}

// manyLooker is a Store that looks up many records of a log at once
// (store/postgres): recs[i] and errs[i] are what Lookup would give for
// paths[i]@versions[i].
type manyLooker interface {
	LookupMany(ctx context.Context, log string, paths, versions []string, maxID int64) (recs []store.Record, errs []error, err error)
}

// Errors of NewStoreSource.
var (
	// ErrNoHead reports that the store serves no tree head for the log.
	ErrNoHead = errors.New("the store serves no tree head for this log")
	// ErrHeadNotVerified reports that the served tree head (the store's, or
	// a server's) is not a note signed with the key: the wrong key, or a
	// head altered in the store.
	ErrHeadNotVerified = errors.New("the served tree head does not verify with the key")
)

// StoreSource proves records from a store, with no network: the offline
// Source.
type StoreSource struct {
	st   Store
	name string
	tree tlog.Tree
	full bool // the store says it copied every record of tree

	// Lookups is how many lookups are in flight (default 32); the Postgres
	// store answers concurrent lookups in batches.
	Lookups int
	// Provers is how many proofs are checked at once (default: twice
	// GOMAXPROCS).
	Provers int
	// Batch is how many records are proven at a time (default 8192). The
	// tiles a batch reads are held until it is done, some 16 KiB a record.
	Batch int
}

// NewStoreSource returns a source proving records of the log named in the
// verifier key vkey under the store's served head, which must be signed
// with that key. The tree is read from the verified note's text, never from
// the store's other columns.
func NewStoreSource(ctx context.Context, st Store, vkey string) (*StoreSource, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key %q: %w", vkey, err)
	}
	name := v.Name()
	h, err := st.ServedHead(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w (sync the mirror first)", name, ErrNoHead)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the served tree head of %s: %w", name, err)
	}
	signed, err := proof.OpenHead(h.Note, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrHeadNotVerified, err)
	}
	tree := signed.Tree()
	src := &StoreSource{st: st, name: name, tree: tree}
	// A store that copied the whole log (a full sync) up to the served
	// tree lacks no record of it; any other store, or a bundle, holds only
	// some. This is the store's word (the log proves no absence), so the
	// message says so.
	if sy, ok := st.(interface {
		Synced(ctx context.Context, log string) (int64, error)
	}); ok {
		if n, err := sy.Synced(ctx, name); err == nil && n >= tree.N {
			src.full = true
		}
	}
	return src, nil
}

// notFound says what is known of a record the store lacks.
func (s *StoreSource) notFound() error {
	if s.full {
		return &notFoundError{fmt.Sprintf("not in the checksum database: this store holds a full copy of the log up to tree %d, with no record for it", s.tree.N)}
	}
	return &notFoundError{fmt.Sprintf("not in this store/bundle (tree %d), which holds only the records it was seeded, fetched or imported with; it may still be in the log: seed the mirror with this go.sum (sumkeep seed), then export a new bundle", s.tree.N)}
}

// Database implements Source.
func (s *StoreSource) Database() Database {
	return Database{Name: s.name, Source: "store", Tree: s.tree}
}

// Records implements Source. The records are looked up concurrently (the
// Postgres store answers concurrent lookups in batches); then the tiles
// proving them are read in large batches, while the proofs are checked as
// their tiles arrive, all of them sharing the tiles.
func (s *StoreSource) Records(ctx context.Context, mods []module.Version) ([]Answer, error) {
	batch := s.Batch
	if batch <= 0 {
		batch = 8192
	}
	var answers []Answer
	for len(mods) > 0 {
		n := min(len(mods), batch)
		a, err := s.records(ctx, mods[:n])
		if err != nil {
			return nil, err
		}
		answers, mods = append(answers, a...), mods[n:]
	}
	return answers, nil
}

func (s *StoreSource) records(ctx context.Context, mods []module.Version) ([]Answer, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lookups, provers := s.Lookups, s.Provers
	if lookups <= 0 {
		lookups = 32
	}
	if provers <= 0 {
		provers = 2 * runtime.GOMAXPROCS(0)
	}
	tc := newTileCache(ctx, s.st, s.name, 3)
	defer tc.close()
	pt := proof.NewTiles(s.tree, tc)
	go pt.AuthenticateEdge() // read the tiles of the tree's right edge meanwhile

	answers := make([]Answer, len(mods))
	recs := make([]store.Record, len(mods))
	lookup := func(i int) (store.Record, error) {
		m := mods[i]
		return s.st.Lookup(ctx, s.name, m.Path, m.Version, s.tree.N)
	}
	if lm, ok := s.st.(manyLooker); ok {
		// Every lookup in a few queries, rather than a round trip for
		// each batch the store's lookup workers happen to form.
		paths, versions := make([]string, len(mods)), make([]string, len(mods))
		for i, m := range mods {
			paths[i], versions[i] = m.Path, m.Version
		}
		found, errs, err := lm.LookupMany(ctx, s.name, paths, versions, s.tree.N)
		if err != nil {
			return nil, fmt.Errorf("looking up %d modules: %w", len(mods), err)
		}
		lookup, lookups = func(i int) (store.Record, error) { return found[i], errs[i] }, 1
	}
	err := parallel(ctx, len(mods), lookups, func(i int) error {
		m := mods[i]
		r, err := lookup(i)
		switch {
		case errors.Is(err, store.ErrNotFound):
			answers[i].Err = s.notFound()
		case errors.Is(err, store.ErrCorrupt):
			// The row for this module is not one a store writes: this
			// line cannot be verified; the others can.
			answers[i].Err = err
		case err != nil:
			return fmt.Errorf("looking up %s@%s: %w", m.Path, m.Version, err)
		default:
			recs[i] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Ask for every tile at once, in the order the proofs will need them.
	var want []tlog.Tile
	for i, r := range recs {
		if answers[i].Err == nil && r.ID >= 0 && r.ID < s.tree.N {
			want = append(want, proof.PathTiles(s.tree, r.ID)...)
		}
	}
	tc.want(want)

	err = parallel(ctx, len(mods), provers, func(i int) error {
		if answers[i].Err != nil {
			return nil
		}
		err := s.prove(pt, tc, mods[i], recs[i])
		var se *storeError
		switch {
		case errors.As(err, &se):
			return err
		case err != nil:
			answers[i].Err = err
		default:
			answers[i].Record = recs[i].Data
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return answers, nil
}

// prove checks that r is the record for m and is in the signed tree: an
// inclusion proof, checked against the signed root by tlog.CheckRecord.
// The proof is read from the run's shared tiles; when it does not check,
// the proof is read again over tlog.TileHashReader, which authenticates
// every tile it reads against the signed root and so tells an altered (or
// missing) tile from an altered record.
func (s *StoreSource) prove(pt *proof.Tiles, tc *tileCache, m module.Version, r store.Record) error {
	leaf := tlog.RecordHash(r.Data)
	p, err := tlog.ProveRecord(s.tree.N, r.ID, pt)
	if err == nil {
		err = tlog.CheckRecord(p, s.tree.N, s.tree.Hash, r.ID, leaf)
	}
	if err != nil {
		if p, err = tlog.ProveRecord(s.tree.N, r.ID, proof.Authenticated(s.tree, tc)); err != nil {
			var se *storeError
			if errors.As(err, &se) {
				return err
			}
			return &ProofError{ID: r.ID, Err: fmt.Errorf("no inclusion proof in tree %d: %w", s.tree.N, err)}
		}
		if err := tlog.CheckRecord(p, s.tree.N, s.tree.Hash, r.ID, leaf); err != nil {
			return &ProofError{ID: r.ID, Err: fmt.Errorf("the stored record does not match the signed tree %d (inclusion proof failed)", s.tree.N)}
		}
	}
	// A proven record for another module (a store whose index points
	// elsewhere) is no answer for this one.
	if path, version := store.RecordModule(r.Data); path != m.Path || version != m.Version {
		return &ProofError{ID: r.ID, Err: fmt.Errorf("the store answered with the record of %s@%s", printable(path), printable(version))}
	}
	return nil
}

// parallel calls f(0..n-1) on up to workers goroutines and returns the first
// error, after which it starts no more calls.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = f(i)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	return first
}
