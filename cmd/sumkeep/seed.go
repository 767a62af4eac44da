package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	skSync "github.com/sumkeep/sumkeep/sync"
)

// cmdSeed fills the store with exactly the records that go.sum files need,
// and the tiles that prove them (lazy mode).
func cmdSeed(ctx context.Context, e *env, args []string) error {
	fs := e.flags("seed")
	concurrency := fs.Int("concurrency", 32, "upstream fetches in flight")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"name at least one go.sum or go.work.sum file"}
	}
	if *concurrency < 1 {
		return usageError{"--concurrency must be at least 1"}
	}
	mods, skipped, malformed, err := e.goSumModules(ctx, "seed", fs.Args())
	if err != nil {
		return err
	}

	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := e.newSyncer(ctx, st, *concurrency, 64, skSync.ModeLazy)
	if err != nil {
		return err
	}
	start := time.Now()
	bar := newProgress(e.stderr, isTerminal(e.stderr))
	counts, failures, err := s.Seed(ctx, mods, *concurrency, bar.update)
	bar.finish(counts)
	for _, f := range failures {
		fmt.Fprintf(e.stderr, "%s@%s: %v\n", f.Module.Path, f.Module.Version, f.Err)
	}
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(e.stdout, "seeded %s: %d module@versions: %d fetched, %d already present, %d not in the log, %d skipped (GONOSUMDB/GOPRIVATE), %d failed; %d malformed lines; %s (%.0f records/s)\n",
		s.Log(), len(mods)+skipped, counts.Fetched, counts.Present, counts.NotInLog, skipped, counts.Failed, malformed,
		elapsed.Round(time.Millisecond), float64(counts.Fetched)/max(elapsed.Seconds(), 1e-9))
	if counts.Failed > 0 || malformed > 0 {
		return fmt.Errorf("%d module@versions failed and %d lines were malformed", counts.Failed, malformed)
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress shows a seed's progress: a bar redrawn in place on a terminal,
// otherwise a plain line every few seconds.
type progress struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	last  time.Time
	start time.Time
	drawn bool
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, start: time.Now()}
}

func (p *progress) update(c skSync.SeedCounts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every && c.Done() < c.Total {
		return
	}
	p.last = time.Now()
	p.draw(c)
}

func (p *progress) draw(c skSync.SeedCounts) {
	if !p.tty {
		fmt.Fprintf(p.w, "seed: %d/%d done (%d fetched, %d present, %d not in the log, %d failed) after %s\n",
			c.Done(), c.Total, c.Fetched, c.Present, c.NotInLog, c.Failed, time.Since(p.start).Round(time.Second))
		return
	}
	const width = 30
	filled := width
	if c.Total > 0 {
		filled = width * c.Done() / c.Total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d  fetched %d  present %d  not in log %d  failed %d ",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), c.Done(), c.Total, c.Fetched, c.Present, c.NotInLog, c.Failed)
	p.drawn = true
}

func (p *progress) finish(c skSync.SeedCounts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw(c)
		fmt.Fprintln(p.w)
	}
}
