package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/store"
)

// SeedCounts tells how a seed is going or went.
type SeedCounts struct {
	Total       int // module@versions to seed
	Fetched     int // fetched, verified and stored now
	Present     int // stored already
	NotInLog    int // the upstream's log has no record for them (it said 404 or 410)
	Refused     int // the upstream refused to look them up (403, 400, ...)
	Unreachable int // the upstream could not be reached, or failed (5xx)
	Failed      int // the answer did not verify, or could not be stored
}

// Done is how many are dealt with.
func (c SeedCounts) Done() int {
	return c.Fetched + c.Present + c.NotInLog + c.Refused + c.Unreachable + c.Failed
}

// SeedFailure is one module@version that was not seeded, and why.
type SeedFailure struct {
	Module module.Version
	// Kind is FetchNotInLog, FetchRefused, FetchUnreachable,
	// FetchUnverified or FetchFailed.
	Kind string
	// Reason says what the upstream said, without its URL.
	Reason string
	Err    error
}

// Seed fetches the records of mods that the store lacks, concurrency at a
// time, each verified and stored with its proof as Fetch does. progress, if
// not nil, is called after each module@version, from several goroutines
// but never concurrently. Signed proof of misbehaviour (a fork) stops the
// seed with an error, and so does a head not signed by the key at all
// (ErrWrongKey: no fetch can succeed with that key); other failures, and
// module@versions not in the log, are counted and listed (in no particular
// order), and the seed goes on.
func (s *Syncer) Seed(ctx context.Context, mods []module.Version, concurrency int, progress func(SeedCounts)) (SeedCounts, []SeedFailure, error) {
	counts := SeedCounts{Total: len(mods)}
	if concurrency <= 0 {
		concurrency = s.cfg.Concurrency
	}
	if n, err := s.cfg.Store.Synced(ctx, s.log); err != nil {
		return counts, nil, err
	} else if n > 0 {
		return counts, nil, fmt.Errorf("seed %s: the store holds a full copy (records 0..%d); seed fills lazy stores", s.log, n-1)
	}
	if err := s.lazyOnly(ctx); err != nil {
		return counts, nil, fmt.Errorf("seed %s: %w", s.log, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		failures []SeedFailure
		fatal    error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	note := func(m module.Version, count *int, err error) {
		mu.Lock()
		defer mu.Unlock()
		*count++
		if err != nil {
			f := SeedFailure{Module: m, Kind: FetchFailed, Reason: err.Error(), Err: err}
			if fe, ok := errors.AsType[*FetchError](err); ok {
				f.Kind, f.Reason = fe.Kind, fe.Reason
			}
			failures = append(failures, f)
		}
		if progress != nil {
			progress(counts)
		}
	}
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(mods) || ctx.Err() != nil {
					return
				}
				m := mods[i]
				present, err := s.stored(ctx, m)
				if err == nil && present {
					note(m, &counts.Present, nil)
					continue
				}
				if err == nil {
					err = s.Fetch(ctx, m.Path, m.Version)
				}
				var mis *MisbehaviourError
				fe, _ := errors.AsType[*FetchError](err)
				switch {
				case err == nil:
					note(m, &counts.Fetched, nil)
				case errors.As(err, &mis) || errors.Is(err, ErrWrongKey) || ctx.Err() != nil:
					mu.Lock()
					if fatal == nil {
						fatal = err
					}
					mu.Unlock()
					cancel()
					return
				case fe != nil && fe.Kind == FetchNotInLog:
					note(m, &counts.NotInLog, err)
				case fe != nil && fe.Kind == FetchRefused:
					note(m, &counts.Refused, err)
				case fe != nil && fe.Kind == FetchUnreachable:
					note(m, &counts.Unreachable, err)
				default:
					note(m, &counts.Failed, err)
				}
			}
		}()
	}
	wg.Wait()
	if fatal == nil && ctx.Err() != nil {
		fatal = ctx.Err()
	}
	return counts, failures, fatal
}

// stored reports whether the record of m is stored under the served head.
func (s *Syncer) stored(ctx context.Context, m module.Version) (bool, error) {
	h, err := s.cfg.Store.ServedHead(ctx, s.log)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = s.cfg.Store.Lookup(ctx, s.log, m.Path, m.Version, h.Size)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
