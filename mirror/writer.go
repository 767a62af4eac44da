package mirror

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// The per-log writer: every head and record an upstream sends is verified
// here before the store keeps it, every stored head is linked to the
// others, and every lie is kept as evidence. Full sync, lazy fetches, seed
// and imports all write through these.

// MisbehaviourError reports upstream misbehaviour. The evidence has been
// kept in the store, unless KeepErr says why it could not be: the lie is
// refused all the same, and the error is still a MisbehaviourError, so that
// whatever stops on a lie (a seed, a sync) stops on this one too.
type MisbehaviourError struct {
	Evidence store.Evidence
	// KeepErr is why the evidence could not be stored; nil when it was.
	KeepErr error
	// Blamed is the upstream quarantined for it, if one was (see Blamer).
	Blamed string
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

// fetchHead fetches /latest and verifies its signature.
func (s *Syncer) fetchHead(ctx context.Context) (store.Head, error) {
	msg, err := s.cfg.Upstream.Latest(ctx)
	if err != nil {
		return store.Head{}, err
	}
	src := s.answeredBy(ctx, upstream.LatestKey)
	return s.openHead(ctx, msg, src, src+"/latest")
}

// openHead verifies a signed tree head the upstream source sent (from
// where, a URL). A signature that does not verify with the key is kept as evidence,
// once per upstream (store.Evidence), so that status shows it; a head
// signed by no key of that name at all is also ErrWrongKey, since the key
// configured may be the one at fault.
func (s *Syncer) openHead(ctx context.Context, msg []byte, source, where string) (store.Head, error) {
	h, err := proof.OpenHead(msg, s.verifier)
	_, unverified := errors.AsType[*note.UnverifiedNoteError](err)
	if _, invalid := errors.AsType[*note.InvalidSignatureError](err); invalid || unverified {
		mis := s.misbehaved(ctx, store.Evidence{
			Kind:    store.EvidenceBadSig,
			Message: fmt.Sprintf("%s: %v", where, err),
			Source:  source,
			Object:  "signed tree head",
			NoteA:   msg,
		})
		if unverified {
			return h, fmt.Errorf("%w: %w", ErrWrongKey, mis)
		}
		return h, mis
	}
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
	return s.linkWith(ctx, h, nil)
}

// linkWith is link reading tiles through r (a new reader if nil), which
// may hold them already.
func (s *Syncer) linkWith(ctx context.Context, h store.Head, r *proof.Reader) (store.Head, error) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	proven := make(map[int64]bool) // heads proven consistent with h, by size
	for round := 0; ; round++ {
		near, err := s.cfg.Store.HeadsAround(ctx, s.log, h.Size)
		if err != nil {
			return h, err
		}
		if near.At != nil && near.At.Hash != h.Hash {
			return h, s.fork(ctx, *near.At, h)
		}
		stored := near.At != nil
		if stored && round == 0 {
			// Stored before, and proven then against its neighbours (a
			// neighbour stored later was proven against it).
			return *near.Latest, nil
		}
		for _, o := range []*store.Head{near.Pred, near.Succ} {
			if o == nil || proven[o.Size] {
				continue
			}
			if err := s.consistent(ctx, *o, h, r); err != nil {
				return h, err
			}
			proven[o.Size] = true
		}
		if stored {
			latest := h
			if near.Latest.Size > h.Size {
				latest = *near.Latest
			}
			return latest, nil
		}
		if near.Latest == nil {
			s.logger.Info("first head", "size", h.Size)
		} else if near.Succ != nil {
			s.logger.Debug("upstream head is older than the stored one; keeping the stored one", "upstream", h.Size, "stored", near.Latest.Size)
		}
		if err := s.cfg.Store.AddHead(ctx, s.log, h); err != nil {
			return h, err
		}
		if round > 3 {
			return h, fmt.Errorf("sync %s: linking head %d: the stored heads keep changing", s.log, h.Size)
		}
	}
}

// linkThrough links hs, heads no larger than via's, as linkWith links
// each through via, storing those not stored yet in one commit: each is
// proven a prefix of via, and so is each of its stored neighbours no
// larger than via (a larger one is proven consistent with it directly),
// before the commit and again after, as linkWith does. Two heads each a
// prefix of a third are consistent; where one is not, via and it are the
// fork's evidence. The heads share via's tiles, so linking each costs no
// upstream round of its own. A seed through a caching proxy meets a head
// per lookup; linking them one by one cost a commit each, one after the
// other under linkMu.
func (s *Syncer) linkThrough(ctx context.Context, hs []store.Head, via *through, r *proof.Reader) error {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	proven := make(map[tlog.Tree]bool) // heads proven consistent with via
	prefix := func(o store.Head) error {
		if proven[o.Tree()] {
			return nil
		}
		if err := s.consistentIn(ctx, via.head, o, via.tiles, r); err != nil {
			return err
		}
		proven[o.Tree()] = true
		return nil
	}
	// check proves each of hs and its stored neighbours consistent, and
	// returns those not stored.
	check := func(hs []store.Head, first bool) ([]store.Head, error) {
		sizes := make([]int64, len(hs))
		for i, h := range hs {
			sizes[i] = h.Size
		}
		nears, err := s.cfg.Store.HeadsAroundMany(ctx, s.log, sizes)
		if err != nil {
			return nil, err
		}
		var unstored []store.Head
		for i, h := range hs {
			near := nears[i]
			if near.At != nil && near.At.Hash != h.Hash {
				return nil, s.fork(ctx, *near.At, h)
			}
			if near.At != nil && first {
				continue // stored before, and linked then
			}
			if err := prefix(h); err != nil {
				return nil, err
			}
			for _, o := range []*store.Head{near.Pred, near.Succ} {
				switch {
				case o == nil:
				case o.Size <= via.head.Size:
					err = prefix(*o)
				default:
					err = s.consistent(ctx, *o, h, r)
				}
				if err != nil {
					return nil, err
				}
			}
			if near.At == nil {
				unstored = append(unstored, h)
			}
		}
		return unstored, nil
	}
	unstored, err := check(hs, true)
	if err != nil || len(unstored) == 0 {
		return err
	}
	if err := s.cfg.Store.AddHead(ctx, s.log, unstored...); err != nil {
		return err
	}
	if unstored, err = check(unstored, false); err != nil {
		return err
	}
	if len(unstored) > 0 {
		return fmt.Errorf("sync %s: linking %d heads: head %d is not stored after it was added", s.log, len(unstored), unstored[0].Size)
	}
	return nil
}

// through is a linked head and its tree's tiles, authenticated once for
// all the heads linked through it (see linkThrough).
type through struct {
	head  store.Head
	tiles *proof.Tiles
}

// newThrough returns a through for h, reading tiles through r.
func newThrough(h store.Head, r *proof.Reader) *through {
	return &through{head: h, tiles: proof.NewTiles(h.Tree(), r)}
}

// consistent proves heads a and b consistent, from tiles of the larger one
// (authenticated against its signed root) read through r (a new reader if
// nil), and keeps evidence of a fork.
func (s *Syncer) consistent(ctx context.Context, a, b store.Head, r *proof.Reader) error {
	return s.consistentIn(ctx, a, b, nil, r)
}

// consistentIn is consistent reading the larger head's tree through hr if
// it is not nil.
func (s *Syncer) consistentIn(ctx context.Context, a, b store.Head, hr tlog.HashReader, r *proof.Reader) error {
	small, big := a, b
	if b.Size < a.Size {
		small, big = b, a
	}
	var th tlog.Hash
	if small.Size == big.Size {
		th = big.Hash
	} else {
		var err error
		if r == nil {
			r = s.newReader(ctx)
		}
		if hr == nil {
			hr = r.HashReader(big.Tree())
		}
		th, err = tlog.TreeHash(small.Size, hr)
		if err != nil {
			return s.tileTrouble(ctx, fmt.Errorf("proving head %d consistent with head %d: %w", small.Size, big.Size, err), big, r.Suspects())
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
			stored.Size, stored.FirstSeen.Format(time.RFC3339), h.Size, s.answeredBy(ctx, upstream.LatestKey)),
		Source: s.answeredBy(ctx, upstream.LatestKey),
		Object: fmt.Sprintf("heads %d and %d", stored.Size, h.Size),
		NoteA:  stored.Note,
		NoteB:  h.Note,
	})
}

// misbehaved keeps evidence, tells the upstream pool who lied (blame), and
// returns the error that stops the sync.
func (s *Syncer) misbehaved(ctx context.Context, e store.Evidence) error {
	s.logger.Error("upstream misbehaviour", "kind", e.Kind, "message", e.Message, "source", e.Source)
	mis := &MisbehaviourError{Evidence: e}
	if err := s.cfg.Store.AddEvidence(ctx, s.log, e); err != nil {
		mis.KeepErr = err
	}
	mis.Blamed = s.blame(e, mis)
	return mis
}

// tileTrouble turns a failed tile authentication into evidence. Other errors
// (network, store) pass through. suspects are the tiles read for the proof
// that were never authenticated: the evidence names them and keeps their
// bytes (up to maxSuspects of them).
func (s *Syncer) tileTrouble(ctx context.Context, err error, against store.Head, suspects []store.Tile) error {
	ite, ok := errors.AsType[*proof.InconsistentTileError](err)
	if !ok {
		return err
	}
	// The tiles the failing proof read, among the suspects, if any: they
	// name the same lie the same way however many lookups meet it, so its
	// evidence is kept once and counted.
	var read []store.Tile
	for _, t := range suspects {
		if slices.Contains(ite.Tiles, t.Tile) {
			read = append(read, t)
		}
	}
	if len(read) > 0 {
		suspects = read
	}
	slices.SortFunc(suspects, func(a, b store.Tile) int {
		return cmp.Or(cmp.Compare(a.Tile.L, b.Tile.L), cmp.Compare(a.Tile.N, b.Tile.N), cmp.Compare(a.Tile.W, b.Tile.W))
	})
	var names []string
	var data []byte
	for i, t := range suspects {
		if i == maxSuspects {
			names = append(names, fmt.Sprintf("and %d more", len(suspects)-maxSuspects))
			break
		}
		names = append(names, t.Tile.Path())
		data = append(data, t.Data...)
	}
	which := "tile " + strings.Join(names, ", ")
	switch {
	case len(names) == 0:
		which = "tiles"
	case len(suspects) > 1:
		which = "one of the tiles " + strings.Join(names, ", ")
	}
	src := s.answeredBy(ctx, suspectKeys(suspects)...)
	return s.misbehaved(ctx, store.Evidence{
		Kind:    store.EvidenceBadTile,
		Message: fmt.Sprintf("hash tiles from %s do not match the signed root of tree %d: %s: %v", src, against.Size, which, err),
		Source:  src,
		Object:  which,
		NoteA:   against.Note,
		Data:    data,
	})
}

// maxSuspects is how many tiles evidence of a tile mismatch names and keeps.
const maxSuspects = 8

// commit commits b, keeping the evidence of a duplicate it holds.
func (s *Syncer) commit(ctx context.Context, b store.Batch, target store.Head) error {
	return s.commitError(ctx, s.cfg.Store.Commit(ctx, s.log, b), b, target)
}

// commitError turns a duplicate found while committing b into evidence.
// Other errors pass through.
func (s *Syncer) commitError(ctx context.Context, err error, b store.Batch, target store.Head) error {
	var de *store.DuplicateError
	if !errors.As(err, &de) {
		return err
	}
	var data []byte
	if i, ok := slices.BinarySearchFunc(b.Records, de.ID, func(r store.Record, id int64) int { return cmp.Compare(r.ID, id) }); ok {
		data = b.Records[i].Data
	}
	return s.misbehaved(ctx, store.Evidence{
		Kind:    store.EvidenceDuplicate,
		Message: fmt.Sprintf("the log holds two records for %s@%s: %d and %d", de.Path, de.Version, de.OtherID, de.ID),
		Source:  s.src.URL(),
		Object:  fmt.Sprintf("records %d and %d", de.OtherID, de.ID),
		NoteA:   target.Note,
		Data:    data,
	})
}

// errBlocked is checkEvidence's error.
var errBlocked = errors.New("refusing to advance: the store holds evidence of upstream misbehaviour")

// checkEvidence refuses to go on when the store holds signed proof that the
// log misbehaved.
func (s *Syncer) checkEvidence(ctx context.Context) error {
	es, err := s.cfg.Store.Evidence(ctx, s.log)
	if err != nil {
		return err
	}
	for _, e := range es {
		if blocking(e.Kind) {
			return fmt.Errorf("sync %s: %w (%s, %s): %s",
				s.log, errBlocked, e.Kind, e.CreatedAt.Format(time.RFC3339), e.Message)
		}
	}
	return nil
}

// newReader returns a proof reader over the store and, where the store
// lacks a tile, the syncer's source, Concurrency requests at a time; a tile
// requested for another reader meanwhile is not requested again.
func (s *Syncer) newReader(ctx context.Context) *proof.Reader {
	return proof.NewReader(ctx, proof.ReaderConfig{Store: s.cfg.Store, Log: s.log, Source: sharedSource{s}, Concurrency: s.cfg.Concurrency})
}

// newReaderFrom is newReader reading what the store lacks from src,
// concurrency requests at a time (nil: newReader).
func (s *Syncer) newReaderFrom(ctx context.Context, src proof.Source, concurrency int) *proof.Reader {
	if src == nil {
		return s.newReader(ctx)
	}
	return proof.NewReader(ctx, proof.ReaderConfig{Store: s.cfg.Store, Log: s.log, Source: src, Concurrency: concurrency})
}

// limitedSource holds one of limit's slots for each request.
type limitedSource struct {
	src   proof.Source
	limit chan struct{}
}

func (ls limitedSource) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	select {
	case ls.limit <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-ls.limit }()
	return ls.src.Tile(ctx, t)
}

// sharedSource is the syncer's source with requests in flight shared by
// every reader: concurrent fetches that need one tile make one request,
// cancelled only when all of them have gone.
type sharedSource struct{ s *Syncer }

// Which upstream sent the tile is noted in every waiter's upstream.Answers,
// not only in the one whose call made the request: evidence of a lying
// tile must name its sender whichever fetch finds the lie.
func (ss sharedSource) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	key := upstream.TileKey(t)
	st, err := ss.s.tileFlights.do(ctx, t, fetchTimeout, func(fctx context.Context) (sourcedTile, error) {
		ans := upstream.NewAnswers()
		data, err := ss.s.src.Tile(upstream.WithAnswers(fctx, ans), t)
		return sourcedTile{data: data, from: ans.From(key)}, err
	})
	if st.from != "" {
		upstream.AnswersFrom(ctx).Note(key, st.from)
	}
	return st.data, err
}

// sourcedTile is a tile's bytes and the upstream that sent them ("" where
// the source is not a Pool).
type sourcedTile struct {
	data []byte
	from string
}

// openHeadCached is openHead remembering the notes it verified lately: the
// lookups of one go.sum come with a few signed heads, not one each. The
// answers that arrive together (a seed's first round, a burst of cold
// lookups) carry the same note before any has been verified: one of them
// checks its signature and the others wait for that check. A note that
// fails it is opened again by each, so that the evidence names the
// upstream each copy came from.
func (s *Syncer) openHeadCached(ctx context.Context, msg []byte, source, where string) (store.Head, error) {
	s.notesMu.Lock()
	h, ok := s.notes[string(msg)]
	s.notesMu.Unlock()
	if ok {
		return h, nil
	}
	on, err := s.noteChecks.do(ctx, string(msg), time.Minute, func(context.Context) (openedNote, error) {
		h, err := proof.OpenHead(msg, s.verifier)
		if err == nil {
			// Remembered before the check ends, so that no caller
			// finds neither.
			s.notesMu.Lock()
			if s.notes == nil || len(s.notes) >= maxNotes {
				s.notes = make(map[string]store.Head)
			}
			s.notes[string(msg)] = h
			s.notesMu.Unlock()
		}
		return openedNote{h, err}, nil
	})
	if err != nil {
		return store.Head{}, err // ctx ended
	}
	if on.err != nil {
		return s.openHead(ctx, msg, source, where)
	}
	return on.head, nil
}

// openedNote is what proof.OpenHead gave for a note.
type openedNote struct {
	head store.Head
	err  error
}

// maxNotes bounds the signed notes openHeadCached remembers.
const maxNotes = 64
