package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/internal/trilliantest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/replica"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

// The signer's settings for the replica figures (also what deploy/
// suggests): up to 50,000 leaves integrated per pass, a pass every 100ms.
const (
	benchSignerBatch    = 50_000
	benchSignerInterval = 100 * time.Millisecond
)

// replicaFigures measures a full sync with the Trillian replica on beside
// the same sync with it off, alternated pairs times, on the same upstream:
// Trillian's log server and signer (built from the pinned version, cached)
// run on this machine, on a database of the same Postgres server.
func replicaFigures(ctx context.Context, u *sumdbtest.Upstream, url string, pairs int, add func(name, value, target string)) error {
	fmt.Println("Trillian replica: building or finding the binaries...")
	b, err := trilliantest.Build(ctx, os.Stdout)
	if err != nil {
		return fmt.Errorf("building Trillian: %w", err)
	}
	if b.Took > 0 {
		add(fmt.Sprintf("building Trillian %s log server and signer (once per version)", b.Version), b.Took.Round(time.Second).String(), "")
	}
	var offs, ons, ratios []float64
	for i := 0; i < pairs; i++ {
		off, err := replicaSync(ctx, u, url, b, false)
		if err != nil {
			return fmt.Errorf("sync without the replica: %w", err)
		}
		on, err := replicaSync(ctx, u, url, b, true)
		if err != nil {
			return fmt.Errorf("sync with the replica: %w", err)
		}
		offs, ons, ratios = append(offs, off), append(ons, on), append(ratios, on/off)
		fmt.Printf("  pair %d: sync with the replica %.0f records/s, without %.0f records/s, ratio %.2f\n", i+1, on, off, on/off)
	}
	add("sync with the Trillian replica (records/s, median)", fmt.Sprintf("%.0f", median(ons)), "")
	add("same sync without it (records/s, median)", fmt.Sprintf("%.0f", median(offs)), "reference")
	add("with / without the replica (median of pairs)", fmt.Sprintf("%.2f (pairs: %s)", median(ratios), list(ratios)), "")
	return nil
}

// replicaSync syncs the upstream into a fresh database, with a replica on a
// fresh Trillian if on, and returns records per second, counted until the
// head is served (with the replica: once Trillian has integrated every
// leaf and its root agrees).
func replicaSync(ctx context.Context, u *sumdbtest.Upstream, url string, b trilliantest.Built, on bool) (float64, error) {
	dsn, drop, err := pgtest.Create(ctx, "sumkeep_bench")
	if err != nil {
		return 0, err
	}
	defer drop()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	cfg := mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeFull,
		BatchTiles: batchTiles, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), ProgressEvery: 3 * time.Second}
	if on {
		tdsn, tdrop, err := pgtest.Create(ctx, "sumkeep_bench_trillian")
		if err != nil {
			return 0, err
		}
		defer tdrop()
		logDir, err := os.MkdirTemp("", "sumkeep-bench-trillian-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(logDir)
		tr, err := trilliantest.Start(ctx, b, tdsn, logDir, trilliantest.Options{BatchSize: benchSignerBatch, SequencerInterval: benchSignerInterval})
		if err != nil {
			return 0, err
		}
		defer tr.Close()
		conn, err := tr.Dial()
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		tree, err := replica.CreateTree(ctx, conn, u.Name(), "sumkeep bench")
		if err != nil {
			return 0, err
		}
		r, err := replica.New(replica.Config{Conn: conn, Addr: tr.Addr(), TreeID: tree, Records: st, Log: u.Name(), Logger: cfg.Logger})
		if err != nil {
			return 0, err
		}
		cfg.Replica = r
	}
	// As `sumkeep sync` does with a database on this machine.
	if st.OnThisMachine() {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)-1)))
	}
	s, err := mirror.New(cfg)
	if err != nil {
		return 0, err
	}
	fmt.Printf("syncing (replica %v)...\n", on)
	start := time.Now()
	res, err := s.Once(ctx)
	if err != nil {
		return 0, err
	}
	return float64(res.Records) / time.Since(start).Seconds(), nil
}
