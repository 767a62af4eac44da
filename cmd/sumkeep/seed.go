package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sumkeep/sumkeep/mirror"
)

// cmdSeed fills the store with exactly the records that go.sum files need,
// and the tiles that prove them (lazy mode).
func cmdSeed(ctx context.Context, e *env, args []string) error {
	fs := e.flags("seed")
	concurrency := fs.Int("concurrency", mirror.DefaultSeedConcurrency, "lookups in flight (the proof tiles of the records found are read beside them, as many at a time)")
	format := fs.String("format", "text", "the summary on standard output: text, or json (with every module@version not fetched and why)")
	e.poolFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return usageError{fmt.Sprintf("--format %q: want text or json", *format)}
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
	if err := e.checkKey(ctx, st, "the store (--db)", false); err != nil {
		return err
	}
	// Lookups and the tiles that prove them are in flight together:
	// keep a connection for each.
	e.idleConns = 2 * *concurrency
	s, err := e.newSyncer(ctx, st, *concurrency, 64, mirror.ModeLazy)
	if err != nil {
		return err
	}
	start := time.Now()
	bar := newProgress(e.stderr)
	counts, failures, err := s.Seed(ctx, mods, *concurrency, bar.update)
	bar.finish(counts)
	slices.SortFunc(failures, func(a, b mirror.SeedFailure) int {
		return cmp.Or(cmp.Compare(a.Module.Path, b.Module.Path), cmp.Compare(a.Module.Version, b.Module.Version))
	})
	for _, f := range failures {
		fmt.Fprintf(e.stderr, "%s@%s: not fetched: %s\n", f.Module.Path, f.Module.Version, seedFailureText(f))
	}
	if errors.Is(err, mirror.ErrWrongKey) {
		return envError{fmt.Errorf("%w: check --key (it names log %s)", err, s.Log())}
	}
	if _, ok := errors.AsType[*mirror.StoreError](err); ok {
		return envError{fmt.Errorf("%w; stopped after %d of %d module@versions. What was stored stays: once the store can be written (free its disk, or check --db), run seed again, and it fetches only what the store lacks",
			err, counts.Done(), len(mods))}
	}
	interrupted := err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err())
	if err != nil && !interrupted {
		return err
	}
	// The summary, of what was done before an interrupt too.
	elapsed := time.Since(start)
	switch *format {
	case "json":
		if err := writeSeedJSON(e.stdout, s.Log(), len(mods)+skipped, counts, skipped, malformed, failures, interrupted); err != nil {
			return envError{fmt.Errorf("writing the summary: %w", err)}
		}
	default:
		fmt.Fprintf(e.stdout, "seeded %s: %d module@versions: %d fetched, %d already present, %d not in the log, %d refused by the upstream, %d unreachable, %d skipped (GONOSUMDB/GOPRIVATE), %d failed; %d malformed lines; %s (%.0f records/s)\n",
			s.Log(), len(mods)+skipped, counts.Fetched, counts.Present, counts.NotInLog, counts.Refused, counts.Unreachable, skipped, counts.Failed, malformed,
			elapsed.Round(time.Millisecond), float64(counts.Fetched)/max(elapsed.Seconds(), 1e-9))
	}
	if interrupted {
		return interruptedError{fmt.Sprintf("interrupted after %d of %d module@versions. What was stored stays: run seed again, and it fetches only what the store lacks", counts.Done(), len(mods))}
	}
	var bad []string
	if n := counts.Refused + counts.Unreachable + counts.Failed; n > 0 {
		bad = append(bad, fmt.Sprintf("%d %s could not be fetched", n, plural(n, "module@version", "module@versions")))
	}
	if malformed > 0 {
		bad = append(bad, fmt.Sprintf("%d %s malformed", malformed, plural(malformed, "line was", "lines were")))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s (listed above)", strings.Join(bad, " and "))
	}
	return nil
}

// plural returns one if n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// seedFailureText says why a module@version was not seeded.
func seedFailureText(f mirror.SeedFailure) string {
	switch f.Kind {
	case mirror.FetchNotInLog:
		return "not in the log: " + f.Reason
	case mirror.FetchRefused:
		return "refused by the upstream: " + f.Reason
	case mirror.FetchUnreachable:
		return "upstream unreachable: " + f.Reason
	case mirror.FetchUnverified:
		return "failed verification: " + f.Err.Error()
	}
	return "failed: " + f.Err.Error()
}

// writeSeedJSON writes seed's summary as one JSON object.
func writeSeedJSON(w io.Writer, log string, total int, c mirror.SeedCounts, skipped, malformed int, failures []mirror.SeedFailure, interrupted bool) error {
	type notFetched struct {
		Module  string `json:"module"`
		Version string `json:"version"`
		Kind    string `json:"kind"`
		Reason  string `json:"reason"`
	}
	doc := struct {
		Log            string       `json:"log"`
		OK             bool         `json:"ok"`
		Interrupted    bool         `json:"interrupted,omitempty"`
		ModuleVersions int          `json:"module_versions"`
		Fetched        int          `json:"fetched"`
		Present        int          `json:"present"`
		NotInLog       int          `json:"not_in_log"`
		Refused        int          `json:"refused"`
		Unreachable    int          `json:"unreachable"`
		Failed         int          `json:"failed"`
		Skipped        int          `json:"skipped"`
		MalformedLines int          `json:"malformed_lines"`
		NotFetched     []notFetched `json:"not_fetched"`
	}{
		Log: log, OK: c.Refused+c.Unreachable+c.Failed+malformed == 0 && !interrupted, Interrupted: interrupted, ModuleVersions: total,
		Fetched: c.Fetched, Present: c.Present, NotInLog: c.NotInLog, Refused: c.Refused,
		Unreachable: c.Unreachable, Failed: c.Failed, Skipped: skipped, MalformedLines: malformed,
		NotFetched: []notFetched{},
	}
	for _, f := range failures {
		reason := f.Reason
		if f.Kind == mirror.FetchUnverified || f.Kind == mirror.FetchFailed {
			reason = f.Err.Error()
		}
		doc.NotFetched = append(doc.NotFetched, notFetched{f.Module.Path, f.Module.Version, f.Kind, reason})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// progress shows a seed's progress: a bar redrawn in place on a terminal,
// otherwise a plain line every few seconds.
type progress struct {
	c     *console
	mu    sync.Mutex
	last  time.Time
	start time.Time
}

func newProgress(c *console) *progress {
	return &progress{c: c, start: time.Now()}
}

func (p *progress) update(c mirror.SeedCounts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	every := 5 * time.Second
	if p.c.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every && c.Done() < c.Total {
		return
	}
	p.last = time.Now()
	p.draw(c)
}

func (p *progress) draw(c mirror.SeedCounts) {
	if !p.c.tty {
		fmt.Fprintf(p.c, "seed: %d/%d done (%d fetched, %d present, %d not in the log, %d refused, %d unreachable, %d failed) after %s\n",
			c.Done(), c.Total, c.Fetched, c.Present, c.NotInLog, c.Refused, c.Unreachable, c.Failed, time.Since(p.start).Round(time.Second))
		return
	}
	const width = 30
	filled := width
	if c.Total > 0 {
		filled = width * c.Done() / c.Total
	}
	p.c.drawBar(fmt.Sprintf("[%s%s] %d/%d  fetched %d  present %d  not in log %d  refused %d  unreachable %d  failed %d ",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), c.Done(), c.Total, c.Fetched, c.Present, c.NotInLog, c.Refused, c.Unreachable, c.Failed))
}

func (p *progress) finish(c mirror.SeedCounts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c.tty {
		p.draw(c)
		p.c.endBar()
	}
}
