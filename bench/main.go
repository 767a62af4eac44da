// Command bench measures sumkeep on this machine and prints the figures the
// README quotes, each beside a reference measured in the same run:
//
//   - sync throughput from a 1,000,000-record upstream on loopback, beside a
//     plain COPY of the same rows into the same schema;
//   - store size in bytes per record, indexes included;
//   - lookup throughput and p99 latency under 64 connections, beside
//     golang.org/x/mod/sumdb.Server over in-memory data.
//
// It needs the Postgres server tests use (SUMKEEP_TEST_POSTGRES), creates its
// own databases and drops them. Run it with `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/loadgen"
	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	sksync "github.com/sumkeep/sumkeep/sync"
)

func main() {
	records := flag.Int("records", 1_000_000, "records in the upstream log")
	conns := flag.Int("conns", 64, "concurrent connections for the lookup load")
	dur := flag.Duration("duration", 5*time.Second, "measured time of each load run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the sync phase to this file")
	flag.Parse()
	profile = *cpuprofile
	if err := run(context.Background(), *records, *conns, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var profile string

type row struct{ name, value, target string }

func run(ctx context.Context, n, conns int, dur time.Duration) error {
	var rows []row
	add := func(name, value, target string) {
		rows = append(rows, row{name, value, target})
		fmt.Printf("  %-44s %s\n", name, value)
	}

	fmt.Printf("building a %d-record upstream...\n", n)
	u, err := sumdbtest.New("sumdb.bench")
	if err != nil {
		return err
	}
	if err := u.AddSynthetic(n); err != nil {
		return err
	}
	// A real upstream runs on other machines and serves tiles from a cache;
	// here it shares our two cores, so its tiles are rendered once before
	// timing and its CPU is not billed to sumkeep.
	fmt.Println("pre-rendering upstream tiles...")
	cached := &prerendered{h: u.Handler()}
	cached.fill(u.Size())
	url, stopUp, err := listen(cached)
	if err != nil {
		return err
	}
	defer stopUp()

	// Reference: a plain COPY of the same rows into the same schema.
	copyRate, err := plainCopy(ctx, u)
	if err != nil {
		return fmt.Errorf("plain COPY: %w", err)
	}

	// sumkeep sync.
	dsn, drop, err := pgtest.Create(ctx, "sumkeep_bench")
	if err != nil {
		return err
	}
	defer drop()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := sksync.New(sksync.Config{Store: st, Client: sksync.NewClient(url, nil), Key: u.VerifierKey(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), ProgressEvery: 3 * time.Second})
	if err != nil {
		return err
	}
	fmt.Println("syncing...")
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
	}
	start := time.Now()
	res, err := s.Once(ctx)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	syncRate := float64(res.Records) / time.Since(start).Seconds()
	add("sync throughput (records/s)", fmt.Sprintf("%.0f", syncRate), ">= 90000")
	add("plain COPY, same rows and schema (records/s)", fmt.Sprintf("%.0f", copyRate), "reference")
	add("sync / plain COPY", fmt.Sprintf("%.2f", syncRate/copyRate), ">= 0.80")

	var bytes int64
	if err := st.Pool().QueryRow(ctx, `SELECT sum(pg_total_relation_size(c))::bigint FROM unnest(ARRAY['logs','heads','tiles','records','evidence']) AS c`).Scan(&bytes); err != nil {
		return err
	}
	add("store size (bytes/record, indexes included)", fmt.Sprintf("%.0f", float64(bytes)/float64(n)), "<= 250")

	// Lookup load: sumkeep against sumdb.Server over in-memory data.
	gin.SetMode(gin.ReleaseMode)
	mirror := server.New(server.Config{Store: st, Log: u.Name()})
	if err := mirror.Refresh(ctx); err != nil {
		return err
	}
	mirrorURL, stopMirror, err := listen(mirror.Handler())
	if err != nil {
		return err
	}
	defer stopMirror()
	refURL, stopRef, err := listen(sumdb.NewServer(&memOps{u: u, signed: u.SignedHead()}))
	if err != nil {
		return err
	}
	defer stopRef()
	paths := lookupPaths(u, 100_000)
	urlsFor := func(base string) []string {
		us := make([]string, len(paths))
		for i, p := range paths {
			us[i] = base + p
		}
		return us
	}
	if err := check(urlsFor(mirrorURL)[:100], urlsFor(refURL)[:100]); err != nil {
		return err
	}
	fmt.Printf("lookup load: %d connections, %s each, 1s warm-up...\n", conns, dur)
	ref := loadgen.Run(ctx, urlsFor(refURL), conns, time.Second, dur, 10_000_000)
	mir := loadgen.Run(ctx, urlsFor(mirrorURL), conns, time.Second, dur, 10_000_000)
	if ref.Errors > 0 || mir.Errors > 0 {
		return fmt.Errorf("lookup errors: reference %v, mirror %v", ref.FirstErr, mir.FirstErr)
	}
	add("lookups, sumkeep on Postgres", mir.String(), "")
	add("lookups, sumdb.Server in memory", ref.String(), "reference")
	add("lookup throughput / reference", fmt.Sprintf("%.2f", mir.RPS()/ref.RPS()), ">= 0.80")
	add("lookup p99, sumkeep", mir.P99.Round(time.Microsecond).String(), "< 5ms")

	fmt.Printf("\n| figure | value | target |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.value, r.target)
	}
	return nil
}

// plainCopy COPYs the upstream's records, encoded as the store encodes them,
// into a fresh database with sumkeep's schema, in one transaction.
func plainCopy(ctx context.Context, u *sumdbtest.Upstream) (float64, error) {
	dsn, drop, err := pgtest.Create(ctx, "sumkeep_bench_copy")
	if err != nil {
		return 0, err
	}
	defer drop()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var logID int16
	if err := st.Pool().QueryRow(ctx, `INSERT INTO logs (name) VALUES ('copy') RETURNING id`).Scan(&logID); err != nil {
		return 0, err
	}
	n := u.Size()
	fmt.Println("plain COPY...")
	start := time.Now()
	var id int64
	_, err = st.Pool().CopyFrom(ctx, pgx.Identifier{"records"},
		[]string{"id", "key", "log_id", "path", "version", "hashes", "raw"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if id == n {
				return nil, nil
			}
			p, v, h, raw := store.EncodeRecord(u.Record(id))
			id++
			return []any{id - 1, store.LookupKey(p, v), logID, p, v, h, raw}, nil
		}))
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func listen(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// lookupPaths returns /lookup paths of k records chosen at random.
func lookupPaths(u *sumdbtest.Upstream, k int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	ps := make([]string, k)
	for i := range ps {
		p, v, _, _ := store.EncodeRecord(u.Record(r.Int64N(u.Size())))
		ep, _ := module.EscapePath(p)
		ev, _ := module.EscapeVersion(v)
		ps[i] = "/lookup/" + ep + "@" + ev
	}
	return ps
}

// check makes sure both servers give the same answers before timing them.
func check(mirror, ref []string) error {
	for i := range mirror {
		a, err1 := fetch(mirror[i])
		b, err2 := fetch(ref[i])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("checking answers: %v / %v", err1, err2)
		}
		if a != b {
			return fmt.Errorf("mirror and reference answer %s differently", mirror[i])
		}
	}
	return nil
}

func fetch(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b []byte
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		b = append(b, buf[:k]...)
		if err != nil {
			break
		}
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

// memOps is sumdb.ServerOps over the upstream's in-memory log with a
// pre-signed head: the fastest reference x/mod's server allows.
type memOps struct {
	u      *sumdbtest.Upstream
	signed []byte
}

func (o *memOps) Signed(context.Context) ([]byte, error) { return o.signed, nil }

func (o *memOps) ReadRecords(_ context.Context, id, n int64) ([][]byte, error) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = o.u.Record(id + int64(i))
	}
	return out, nil
}

func (o *memOps) Lookup(_ context.Context, m module.Version) (int64, error) {
	id, ok := o.u.Lookup(m.Path, m.Version)
	if !ok {
		return 0, os.ErrNotExist
	}
	return id, nil
}

func (o *memOps) ReadTileData(_ context.Context, t tlog.Tile) ([]byte, error) {
	return tlog.ReadTileData(t, o.u.HashReader())
}

// prerendered serves tiles rendered once by the wrapped upstream, as a
// CDN-fronted checksum database does.
type prerendered struct {
	h     http.Handler
	tiles map[string][]byte
}

func (p *prerendered) fill(n int64) {
	p.tiles = make(map[string][]byte)
	var ts []tlog.Tile
	for k := int64(0); k*256 < n; k++ {
		w := int(min(256, n-k*256))
		ts = append(ts, tlog.Tile{H: 8, L: -1, N: k, W: w}, tlog.Tile{H: 8, L: 0, N: k, W: w})
	}
	for _, t := range tlog.NewTiles(8, 0, n) {
		if t.L > 0 {
			ts = append(ts, t)
		}
	}
	for _, t := range ts {
		rec := httptest.NewRecorder()
		p.h.ServeHTTP(rec, httptest.NewRequest("GET", "/"+t.Path(), nil))
		if rec.Code == http.StatusOK {
			p.tiles["/"+t.Path()] = rec.Body.Bytes()
		}
	}
}

func (p *prerendered) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b, ok := p.tiles[r.URL.Path]; ok {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
		return
	}
	p.h.ServeHTTP(w, r)
}
