package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"sync/atomic"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/store"
)

// SeedCounts tells how a seed is going or went.
type SeedCounts struct {
	Total    int // module@versions to seed
	Fetched  int // fetched, verified and stored now
	Present  int // stored already
	NotInLog int // the upstream's log has no record for them
	Failed   int // could not be fetched (the upstream unreachable, ...)
}

// Done is how many are dealt with.
func (c SeedCounts) Done() int { return c.Fetched + c.Present + c.NotInLog + c.Failed }

// SeedFailure is one module@version that could not be seeded.
type SeedFailure struct {
	Module module.Version
	Err    error
}

// Seed fetches the records of mods that the store lacks, concurrency at a
// time, each verified and stored with its proof as Fetch does. progress, if
// not nil, is called after each module@version, from several goroutines
// but never concurrently. Signed proof of misbehaviour (a fork) stops the
// seed with an error; other failures are counted and listed, and the seed
// goes on.
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
		mu       gosync.Mutex
		failures []SeedFailure
		fatal    error
		next     atomic.Int64
		wg       gosync.WaitGroup
	)
	note := func(m module.Version, kind *int, err error) {
		mu.Lock()
		defer mu.Unlock()
		*kind++
		if err != nil {
			failures = append(failures, SeedFailure{m, err})
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
				switch {
				case err == nil:
					note(m, &counts.Fetched, nil)
				case errors.Is(err, ErrNoRecord):
					note(m, &counts.NotInLog, nil)
				case errors.As(err, &mis) || ctx.Err() != nil:
					mu.Lock()
					if fatal == nil {
						fatal = err
					}
					mu.Unlock()
					cancel()
					return
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
