// Command verify measures `sumkeep verify --db` as a CI gate runs it (part
// of `make bench`): the whole process, against a log synced in full into
// Postgres and into the embedded SQLite file, for a go.sum of 2 lines and
// one of 3,000 lines (1,500 records from 12 data tiles of a 300,010-record
// log).
//
// Each figure is wall time beside the process's CPU time (user + system,
// its children included) from the same runs: a verify that waits (a fixed
// delay, connections dialled one by one, a subprocess run in series) shows
// as wall time well above its CPU time. Runs alternate between the stores,
// and the median of each is reported.
//
// It needs the Postgres server tests use (SUMKEEP_TEST_POSTGRES), creates
// its own database and drops it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/upstream"
)

func main() {
	records := flag.Int("records", 300_010, "records in the upstream log")
	runs := flag.Int("runs", 7, "verify runs per store and file (the median is reported)")
	flag.Parse()
	log.SetFlags(0)
	if err := run(context.Background(), *records, *runs); err != nil {
		log.Fatalf("bench/verify: %v", err)
	}
}

func run(ctx context.Context, n, runs int) error {
	tmp, err := os.MkdirTemp("", "sumkeep-bench-verify")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "sumkeep")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sumkeep")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building sumkeep: %w", err)
	}

	fmt.Printf("verify: building a %d-record upstream and syncing it into Postgres and SQLite...\n", n)
	u, err := sumdbtest.NewSynthetic("sumdb.bench", n)
	if err != nil {
		return err
	}
	url := u.Start()
	defer u.Close()

	pgDSN, drop, err := pgtest.Create(ctx, "sumkeep_bench_verify")
	if err != nil {
		return err
	}
	defer drop()
	sqlitePath := filepath.Join(tmp, "sumkeep.db")
	pg, err := postgres.Open(ctx, pgDSN)
	if err != nil {
		return err
	}
	err = syncInto(ctx, pg, u, url)
	pg.Close()
	if err != nil {
		return err
	}
	sq, err := sqlite.Open(ctx, sqlitePath)
	if err != nil {
		return err
	}
	err = syncInto(ctx, sq, u, url)
	sq.Close()
	if err != nil {
		return err
	}

	// 2 lines: one record. 3,000 lines: 1,500 records, 125 from each of
	// 12 data tiles spread over the log.
	small := filepath.Join(tmp, "small.sum")
	if err := os.WriteFile(small, u.Record(int64(n/2)), 0o644); err != nil {
		return err
	}
	var big bytes.Buffer
	for t := int64(0); t < 12; t++ {
		tile := t * (int64(n) / 256 / 12)
		for i := int64(0); i < 125; i++ {
			big.Write(u.Record(tile*256 + i*2))
		}
	}
	large := filepath.Join(tmp, "large.sum")
	if err := os.WriteFile(large, big.Bytes(), 0o644); err != nil {
		return err
	}

	type target struct {
		name, db string
	}
	stores := []target{{"postgres", pgDSN}, {"sqlite", sqlitePath}}
	files := []struct {
		name, path string
		lines      int
		goal       time.Duration
	}{
		{"2 lines", small, 2, 100 * time.Millisecond},
		{"3,000 lines", large, 3000, 300 * time.Millisecond},
	}
	fmt.Printf("\n| verify --db, whole process (median of %d) | wall | CPU (user+sys) | wall − CPU | target (wall) |\n|---|---|---|---|---|\n", runs)
	for _, f := range files {
		walls := make([][]time.Duration, len(stores))
		cpus := make([][]time.Duration, len(stores))
		for r := 0; r < runs; r++ {
			for i, s := range stores {
				wall, cpu, err := verify(bin, s.db, u.VerifierKey(), f.path)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", s.name, f.name, err)
				}
				walls[i] = append(walls[i], wall)
				cpus[i] = append(cpus[i], cpu)
			}
		}
		for i, s := range stores {
			w, c := median(walls[i]), median(cpus[i])
			goal := "reference (same run)"
			if s.name == "postgres" {
				goal = "<= " + f.goal.String()
			}
			fmt.Printf("| %s, %s | %s | %s | %s | %s |\n", s.name, f.name, ms(w), ms(c), ms(w-c), goal)
		}
	}
	return nil
}

// syncInto syncs the whole upstream into st in full mode.
func syncInto(ctx context.Context, st store.Store, u *sumdbtest.Upstream, url string) error {
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(),
		Mode: mirror.ModeFull, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	_, err = s.Once(ctx)
	return err
}

// verify runs `sumkeep verify` once and returns its wall and CPU time.
func verify(bin, db, key, goSum string) (wall, cpu time.Duration, err error) {
	cmd := exec.Command(bin, "verify", "--db", db, "--key", key, goSum)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%v\n%s", err, out.Bytes())
	}
	st := cmd.ProcessState
	return wall, st.UserTime() + st.SystemTime(), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
