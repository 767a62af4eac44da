package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// Several upstreams, none trusted (upstream.Pool). Three things here:
//
//   - Attribution: each operation (a lookup fetched through, a sync run)
//     carries an upstream.Answers in its context, where the pool notes which
//     upstream sent each answer. Evidence names that upstream (answeredBy),
//     not the pool.
//   - Blame and retry: a lie caught is kept as evidence as before, and the
//     pool is told who sent it (Blamer), which quarantines that upstream.
//     The operation is then done again from the start, so that the other
//     upstreams answer it: one lying source never makes a lookup or a sync
//     fail, nor is its lie ever stored.
//   - Split views: a sync run asks every upstream for its signed head
//     (HeadsOfAll) and links each one to the stored heads with consistency
//     proofs, its tiles read first from the upstream that sent it. Two
//     upstreams showing inconsistent signed heads are a fork, kept as signed
//     evidence as ever.

// A Blamer is an Upstream of several sources that is told which source sent
// an answer that did not verify (upstream.Pool).
type Blamer interface {
	// Blame quarantines source, an upstream's URL as upstream.Answers
	// names it; it reports whether source is one of its own.
	Blame(source string, err error) bool
	// Len is how many sources it has.
	Len() int
}

// HeadsOfAll is an Upstream that can ask each of its sources for its signed
// tree head (upstream.Pool).
type HeadsOfAll interface {
	LatestAll(ctx context.Context) []upstream.Answer
}

// answeredBy names the upstream(s) whose answers to the requests keys (see
// upstream.Answers) the operation of ctx used; the source's URL when no
// Answers knows them.
func (s *Syncer) answeredBy(ctx context.Context, keys ...string) string {
	if srcs := upstream.AnswersFrom(ctx).Sources(keys...); len(srcs) > 0 {
		return upstream.JoinURLs(srcs)
	}
	return s.src.URL()
}

// suspectKeys are the request keys of tiles suspected of a lie.
func suspectKeys(suspects []store.Tile) []string {
	keys := make([]string, len(suspects))
	for i, t := range suspects {
		keys[i] = upstream.TileKey(t.Tile)
	}
	return keys
}

// blame tells the upstream pool who sent the lie e describes, unless the
// lie is signed proof against the log itself (a fork, a duplicate: no one
// source is at fault) or its bytes came from several upstreams at once (a
// proof over tiles of several: which one lied is not known, and the run is
// retried, mostly from one). It returns the upstream blamed, or "".
func (s *Syncer) blame(e store.Evidence, err error) string {
	b, ok := s.cfg.Upstream.(Blamer)
	if !ok || blocking(e.Kind) || e.Source == "" || strings.Contains(e.Source, ", ") {
		return ""
	}
	if b.Blame(e.Source, err) {
		return e.Source
	}
	return ""
}

// sources is how many upstreams the syncer reads from.
func (s *Syncer) sources() int {
	if b, ok := s.cfg.Upstream.(Blamer); ok {
		return b.Len()
	}
	return 1
}

// retryElsewhere reports whether err is a lie from one upstream, now
// quarantined, or of several at once: the operation may succeed when done
// again with the others.
func retryElsewhere(err error) bool {
	mis, ok := errors.AsType[*MisbehaviourError](err)
	return ok && !blocking(mis.Evidence.Kind) && (mis.Blamed != "" || strings.Contains(mis.Evidence.Source, ", "))
}

// fetchFromAny is fetch, done again while an upstream is caught lying and
// another may answer: at most once per upstream, and one more time.
func (s *Syncer) fetchFromAny(ctx context.Context, path, version string) error {
	for attempt := 0; ; attempt++ {
		err := s.fetch(upstream.WithAnswers(ctx, upstream.NewAnswers()), path, version)
		if err == nil || !retryElsewhere(err) || attempt+1 >= s.sources()+1 || s.sources() < 2 {
			return err
		}
		s.logger.Warn("fetching again from the other upstreams", "module", path, "version", version, "err", err)
	}
}

// onceAnywhere runs one sync of the log to the newest head of its upstreams
// (see once). A lie caught in the run quarantines the upstream that sent it
// and the run is done again, so that the other upstreams answer.
func (s *Syncer) onceAnywhere(ctx context.Context, start time.Time) (Result, error) {
	for attempt := 0; ; attempt++ {
		res, err := s.once(upstream.WithAnswers(ctx, upstream.NewAnswers()), start)
		if err == nil || !retryElsewhere(err) || attempt+1 >= s.sources()+1 || s.sources() < 2 {
			return res, err
		}
		s.logger.Warn("syncing again from the other upstreams", "err", err)
	}
}

// linkHeads fetches the upstream's signed head, or with several upstreams
// every one's, verifies and links each to the stored heads, and returns the
// head to sync to: the largest stored. An upstream whose head does not
// verify or link (other than as a fork, which stops everything) is left
// out, blamed if it lied; the run fails only if no head links.
func (s *Syncer) linkHeads(ctx context.Context) (store.Head, error) {
	return s.linkHeadsFrom(ctx, nil, 0, func() {})
}

// linkHeadsFrom is linkHeads reading the tiles of its consistency proofs
// from src, concurrency at a time (nil: the syncer's source). It calls
// fetched once the heads have come (or failed to), before linking them.
func (s *Syncer) linkHeadsFrom(ctx context.Context, src proof.Source, concurrency int, fetched func()) (store.Head, error) {
	reader := func(ctx context.Context) *proof.Reader {
		if src == nil {
			return nil // linkWith's own
		}
		return s.newReaderFrom(ctx, src, concurrency)
	}
	all, ok := s.cfg.Upstream.(HeadsOfAll)
	if !ok {
		head, err := s.fetchHead(ctx)
		fetched()
		if err != nil {
			return head, err
		}
		return s.linkWith(ctx, head, reader(ctx))
	}
	answers := all.LatestAll(ctx)
	fetched()
	var (
		target store.Head
		linked bool
		errs   []error
	)
	// The smallest first: each larger head is then linked with tiles of
	// its own tree.
	type opened struct {
		h   store.Head
		src string
		ctx context.Context
	}
	var heads []opened
	for _, a := range answers {
		if a.Err != nil {
			errs = append(errs, a.Err)
			continue
		}
		actx := upstream.Prefer(upstream.WithAnswers(ctx, upstream.NewAnswers()), a.Source)
		upstream.AnswersFrom(actx).Note(upstream.LatestKey, a.Source)
		h, err := s.openHead(actx, a.Data, a.Source, a.Source+"/latest")
		if err != nil {
			if errors.Is(err, ErrWrongKey) && len(answers) == 1 {
				return h, err
			}
			errs = append(errs, err)
			continue
		}
		heads = append(heads, opened{h, a.Source, actx})
	}
	slices.SortStableFunc(heads, func(a, b opened) int { return int(min(max(a.h.Size-b.h.Size, -1), 1)) })
	for _, o := range heads {
		t, err := s.linkWith(o.ctx, o.h, reader(o.ctx))
		if err != nil {
			if mis, ok := errors.AsType[*MisbehaviourError](err); ok && blocking(mis.Evidence.Kind) {
				return t, err
			}
			errs = append(errs, fmt.Errorf("linking the head from %s: %w", o.src, err))
			continue
		}
		if !linked || t.Size > target.Size {
			target = t
		}
		linked = true
	}
	if !linked {
		if len(errs) == 0 {
			return target, fmt.Errorf("sync %s: no upstream sent a signed tree head", s.log)
		}
		return target, fmt.Errorf("sync %s: no upstream's signed tree head could be linked: %w", s.log, errors.Join(errs...))
	}
	for _, err := range errs {
		s.logger.Warn("an upstream's head was left out", "err", err)
	}
	return target, nil
}

// Refresh links the newest signed heads of the upstreams and, in lazy mode
// (auto mode that chose lazy), serves the newest: what a lazy server does
// as it starts, so that it serves the newest head before the first lookup
// rather than whatever head that lookup's answer carried. In full mode it
// does nothing: a full sync moves the served head.
func (s *Syncer) Refresh(ctx context.Context) error {
	if s.cfg.Upstream == nil {
		return errNoUpstream
	}
	if err := s.lazyOnly(ctx); err != nil {
		if errors.Is(err, errFullMode) {
			return nil
		}
		return err
	}
	if err := s.checkEvidence(ctx); err != nil {
		return err
	}
	return s.refreshHead(ctx, nil, 0)
}

// refreshHead is Refresh once the mode and the evidence are checked. With
// budget (not nil), each of its requests holds one of budget's slots while
// in flight, as a seed's do: its /latest requests, one to each upstream at
// once, hold the held slots its caller took for them (see latestSlots)
// until every head has come; then the tiles that link and prove them are
// read through the budget.
func (s *Syncer) refreshHead(ctx context.Context, budget chan struct{}, held int) error {
	ctx = upstream.WithAnswers(ctx, upstream.NewAnswers())
	release := func() {
		for ; held > 0; held-- {
			<-budget
		}
	}
	defer release()
	var src proof.Source
	var r *proof.Reader
	if budget != nil {
		src = limitedSource{sharedSource{s}, budget}
		r = s.newReaderFrom(ctx, src, cap(budget))
	}
	target, err := s.linkHeadsFrom(ctx, src, cap(budget), release)
	if err != nil {
		return err
	}
	_, err = s.advance(ctx, target, nil, r, nil, nil)
	return err
}

// latestSlots takes the slots of budget that refreshHead's /latest
// requests hold (one for each upstream, at most all of them), and returns
// how many. It is called before anything else takes a slot, so it never
// waits: taken one by one beside others, they could wait for holders that
// wait for the refresh.
func (s *Syncer) latestSlots(budget chan struct{}) int {
	n := min(s.sources(), cap(budget)-len(budget))
	for range n {
		budget <- struct{}{}
	}
	return n
}

// dataTileSource names the upstream that sent data tile k of width w.
func (s *Syncer) dataTileSource(ctx context.Context, k int64, w int) string {
	return s.answeredBy(ctx, upstream.TileKey(tlog.Tile{H: store.TileHeight, L: -1, N: k, W: w}))
}

// wrongAnswer keeps the evidence of a lookup answered with the record of
// another module@version (p@v, record id): a lie of the upstream src
// (where, the lookup's URL), whichever upstream is asked next.
func (s *Syncer) wrongAnswer(ctx context.Context, src, where string, id int64, p, v string, text, msg []byte) error {
	return s.misbehaved(ctx, store.Evidence{
		Kind:    store.EvidenceWrongAnswer,
		Message: fmt.Sprintf("%s: the upstream answered with a record for %q@%q (record %d)", where, p, v, id),
		Source:  src,
		Object:  "lookup " + strings.TrimPrefix(where, src+"/lookup/"),
		NoteA:   msg,
		Data:    text,
	})
}

// Health returns the measures of the upstreams the syncer reads, best
// first, when its Upstream keeps them (upstream.Pool); else nil. It makes
// a Syncer an upstream.HealthReporter for the status page and metrics.
func (s *Syncer) Health() []upstream.Health {
	if hr, ok := s.cfg.Upstream.(upstream.HealthReporter); ok {
		return hr.Health()
	}
	return nil
}
