package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"time"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/upstream"
)

// The served head's advance in a lazy store: a fetch of a record newer
// than the served head moves it, and proves every stored record and head
// under the new one first (see mirror's storedProofs). With
// advanceStored records scattered over the log and stored (a seed from an
// upstream on loopback, without latency), the log grows by 1,000
// records, and the newest is fetched: advanceRounds times, timed. The
// reference, timed alternately in the same run, is a fetch of a record
// under the served head, which moves nothing. Then the same with a head
// of its own stored for each record (its lookup came with it, as from a
// caching proxy): the advance proves the stored heads too. It runs last:
// it grows u.
const (
	advanceStored = 50_000
	advanceRounds = 7
)

func advanceFigures(ctx context.Context, u *sumdbtest.Upstream, add func(name, value, target string)) error {
	for i, heads := range []bool{false, true} {
		if err := advanceRun(ctx, u, heads, uint64(17+i), add); err != nil {
			return err
		}
	}
	return nil
}

func advanceRun(ctx context.Context, u *sumdbtest.Upstream, heads bool, seed uint64, add func(name, value, target string)) error {
	what := ""
	if heads {
		what = ", a head each"
	}
	fmt.Printf("lazy head advance: %d records stored%s, then %d fetches of a newer record and as many of an older one, alternated...\n", advanceStored, what, advanceRounds)
	st, done, err := newPostgres(ctx, "sumkeep_bench_advance")
	if err != nil {
		return err
	}
	defer done()
	srv := httptest.NewServer(u.Handler())
	defer srv.Close()
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(),
		Mode: mirror.ModeLazy, Concurrency: 8})
	if err != nil {
		return err
	}
	ids := distinctIDs(u, advanceStored+advanceRounds, seed)
	var mods []module.Version
	for _, id := range ids[:advanceStored] {
		p, v, _ := u.Module(id)
		mods = append(mods, module.Version{Path: p, Version: v})
	}
	if heads {
		u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultCachedHeads})
	}
	c, _, err := s.Seed(ctx, mods, 256, nil)
	u.SetFault(sumdbtest.Fault{})
	if err != nil {
		return err
	}
	if c.Fetched != advanceStored {
		return fmt.Errorf("seeded %d records of %d", c.Fetched, advanceStored)
	}
	hs, err := st.Heads(ctx, u.Name())
	if err != nil {
		return err
	}
	what = fmt.Sprintf("%d records and %d heads stored", advanceStored, len(hs))
	if len(hs) == 1 {
		what = fmt.Sprintf("%d records and one head stored", advanceStored)
	}
	fetch := func(id int64) (time.Duration, error) {
		p, v, _ := u.Module(id)
		start := time.Now()
		if err := s.Fetch(ctx, p, v); err != nil {
			return 0, fmt.Errorf("fetching record %d: %w", id, err)
		}
		return time.Since(start), nil
	}
	var moved, still []time.Duration
	for i, old := range ids[advanceStored:] {
		if err := u.AddSynthetic(1000); err != nil {
			return err
		}
		d, err := fetch(u.Size() - 1)
		if err != nil {
			return err
		}
		moved = append(moved, d)
		if d, err = fetch(old); err != nil {
			return err
		}
		still = append(still, d)
		fmt.Printf("  round %d: moving the head %s, under it %s\n", i+1, ms(moved[i]), ms(still[i]))
	}
	slices.Sort(moved)
	slices.Sort(still)
	mid := advanceRounds / 2
	add(fmt.Sprintf("fetch that moves a lazy store's head, %s (median of %d)", what, advanceRounds),
		fmt.Sprintf("%s (%s–%s)", ms(moved[mid]), ms(moved[0]), ms(moved[len(moved)-1])), "")
	add(fmt.Sprintf("fetch of an older record, which moves nothing, %s (median)", what),
		fmt.Sprintf("%s (%s–%s)", ms(still[mid]), ms(still[0]), ms(still[len(still)-1])), "reference")
	add(fmt.Sprintf("moving the head / not moving it, %s (medians)", what), fmt.Sprintf("%.1f×", moved[mid].Seconds()/still[mid].Seconds()), "")
	return nil
}
