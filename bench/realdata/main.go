// Command realdata measures sumkeep on recorded real data (part of
// `make bench`): a real project's go.sum (terraform v1.13.3: 2,398 lines,
// 2,091 records of the real sum.golang.org, see internal/realsum), replayed
// on loopback by an upstream that refuses data tiles, as a module proxy's
// /sumdb/ endpoint does.
//
// It prints, for each store (Postgres and the embedded SQLite file):
//
//   - seed: `sumkeep seed` of the go.sum from the replay, records/s over the
//     whole process;
//   - verify: `sumkeep verify --db … go.sum` with full proofs, whole-process
//     wall time (median of several runs) and lines/s;
//   - bundle: the size of `sumkeep export` for the go.sum;
//   - lookups: requests/s and p99 of /lookup under 64 connections, served
//     from each store with the record cache off, in the same run.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/loadgen"
	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/realsum"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

func main() {
	runs := flag.Int("runs", 5, "verify runs per store (the median is reported)")
	conns := flag.Int("conns", 64, "connections for the lookup load")
	dur := flag.Duration("duration", 5*time.Second, "length of each lookup load run")
	flag.Parse()
	log.SetFlags(0)
	ctx := context.Background()

	tmp, err := os.MkdirTemp("", "sumkeep-realdata")
	check(err)
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "sumkeep")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sumkeep")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	check(build.Run())
	goSum := filepath.Join(tmp, "go.sum")
	check(os.WriteFile(goSum, realsum.GoSum(), 0o666))
	lines := strings.Count(strings.TrimSpace(string(realsum.GoSum())), "\n") + 1
	records := len(realsum.Modules())
	up := httptest.NewServer(realsum.Handler())
	defer up.Close()

	pgDSN, drop, err := pgtest.Create(ctx, "sumkeep_realdata")
	check(err)
	defer drop()
	dbs := []struct{ name, db string }{
		{"postgres", pgDSN},
		{"sqlite", filepath.Join(tmp, "sumkeep.db")},
	}
	fmt.Printf("real data: %s, %d go.sum lines, %d records, replayed on loopback (data tiles refused)\n",
		strings.TrimPrefix(firstLine(realsum.Source(), "project: "), "project: "), lines, records)

	for _, d := range dbs {
		start := time.Now()
		out := sumkeep(bin, "seed", "--db", d.db, "--upstream", up.URL, "--key", realsum.Key, goSum)
		el := time.Since(start)
		if !strings.Contains(out, fmt.Sprintf(" %d fetched", records)) {
			log.Fatalf("%s seed did not fetch all %d records:\n%s", d.name, records, out)
		}
		fmt.Printf("%-8s seed:   %d records in %s whole process: %.0f records/s\n", d.name, records, el.Round(time.Millisecond), float64(records)/el.Seconds())
	}
	for _, d := range dbs {
		var times []time.Duration
		for range *runs {
			start := time.Now()
			sumkeep(bin, "verify", "--db", d.db, "--key", realsum.Key, goSum)
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		med := times[len(times)/2]
		fmt.Printf("%-8s verify: %d lines with full proofs: %s wall (median of %d, min %s, max %s), %.0f lines/s (target < 0.5 s)\n",
			d.name, lines, med.Round(time.Millisecond), len(times), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), float64(lines)/med.Seconds())
	}
	bundle := filepath.Join(tmp, "bundle.db")
	sumkeep(bin, "export", "--db", pgDSN, "--key", realsum.Key, "--go-sum", goSum, "-o", bundle)
	fi, err := os.Stat(bundle)
	check(err)
	fmt.Printf("bundle:  %d bytes for %d lines / %d records (%.0f bytes/record; the proof tiles are most of it)\n",
		fi.Size(), lines, records, float64(fi.Size())/float64(records))

	// Lookups served from each store, record cache off, same run.
	pg, err := postgres.Open(ctx, pgDSN)
	check(err)
	defer pg.Close()
	sq, err := sqlite.Open(ctx, dbs[1].db)
	check(err)
	defer sq.Close()
	gin.SetMode(gin.ReleaseMode)
	mods := realsum.Modules()
	urls := func(base string) []string {
		var us []string
		for _, m := range mods {
			us = append(us, base+"/lookup/"+escape(m))
		}
		return us
	}
	for round := 0; round < 2; round++ {
		for _, s := range []struct {
			name string
			st   store.Store
		}{{"postgres", pg}, {"sqlite", sq}} {
			r := serveAndLoad(ctx, s.st, urls, *conns, *dur)
			if round == 1 {
				fmt.Printf("%-8s lookups: %s (cache off)\n", s.name, r)
			}
		}
	}
}

func serveAndLoad(ctx context.Context, st store.Store, urls func(string) []string, conns int, d time.Duration) loadgen.Result {
	srv := server.New(server.Config{Store: st, Log: realsum.Name, CacheRecords: -1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	r := loadgen.Run(ctx, urls("http://"+ln.Addr().String()), conns, time.Second, d, 10_000_000)
	if r.Errors > 0 {
		log.Fatalf("lookup load: %d errors, first: %v", r.Errors, r.FirstErr)
	}
	return r
}

func escape(m module.Version) string {
	p, err := module.EscapePath(m.Path)
	check(err)
	v, err := module.EscapeVersion(m.Version)
	check(err)
	return p + "@" + v
}

// sumkeep runs the binary and returns its stdout, failing on a non-zero exit.
func sumkeep(bin string, args ...string) string {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GONOSUMDB=", "GOPRIVATE=")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		log.Fatalf("sumkeep %s: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func firstLine(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
