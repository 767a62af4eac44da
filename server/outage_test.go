package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

// lineCounter is an io.Writer that counts lines and keeps the last ones.
type lineCounter struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func (w *lineCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.SplitAfter(string(p), "\n") {
		if l == "" {
			continue
		}
		w.n++
		if len(w.lines) < 200 {
			w.lines = append(w.lines, l)
		}
	}
	return len(p), nil
}

func (w *lineCounter) count() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, strings.Join(w.lines, "")
}

// loadGen keeps clients busy against a server and tallies the answers.
type loadGen struct {
	mu    sync.Mutex
	codes map[int]int
	errs  []error
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startLoad(t *testing.T, url string, clients int, timeout time.Duration, paths []string) *loadGen {
	ld := &loadGen{codes: make(map[int]int), stop: make(chan struct{})}
	hc := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients},
	}
	var next atomic.Int64
	for range clients {
		ld.wg.Go(func() {
			for {
				select {
				case <-ld.stop:
					return
				default:
				}
				p := paths[int(next.Add(1))%len(paths)]
				resp, err := hc.Get(url + p)
				ld.mu.Lock()
				if err != nil {
					ld.errs = append(ld.errs, fmt.Errorf("GET %s: %w", p, err))
				} else {
					ld.codes[resp.StatusCode]++
				}
				ld.mu.Unlock()
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	t.Cleanup(ld.close)
	return ld
}

func (ld *loadGen) close() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	ld.wg.Wait()
}

// take returns and clears the tally.
func (ld *loadGen) take() (map[int]int, []error) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	c, e := ld.codes, ld.errs
	ld.codes, ld.errs = make(map[int]int), nil
	return c, e
}

func (ld *loadGen) peek(code int) int {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.codes[code]
}

// TestOutage plays a database that hangs (SIGSTOP) and one that stops,
// under load: requests get 503 with Retry-After instead of waiting or
// failing with 500, /readyz and /healthz turn 503, nothing hangs, serving
// recovers without a restart, and the log stays small.
func TestOutage(t *testing.T) {
	c := pgtest.NewCluster(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 600)
	l.sync(t, st, 0, 600, 300, true)

	const storeTimeout = time.Second
	logw := new(lineCounter)
	srv := New(Config{
		Store: st, Log: l.name,
		Logger:       slog.New(slog.NewTextHandler(logw, nil)),
		StoreTimeout: storeTimeout,
		HeadRefresh:  100 * time.Millisecond,
		CacheRecords: -1, CacheTiles: -1, // every answer from the store
	})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Run(runCtx)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	// A request may take StoreTimeout; much longer is a hang.
	bound := storeTimeout + 30*time.Second
	var paths []string
	for i := range 60 {
		paths = append(paths, lookupPath(t, l.mods[i*10]))
	}
	for _, tile := range []tlog.Tile{{H: 8, L: 0, N: 0, W: 256}, {H: 8, L: 0, N: 1, W: 256}, {H: 8, L: 0, N: 2, W: 88},
		{H: 8, L: 1, N: 0, W: 2}, {H: 8, L: -1, N: 0, W: 256}, {H: 8, L: -1, N: 1, W: 256}, {H: 8, L: -1, N: 2, W: 88}} {
		paths = append(paths, "/"+tile.Path())
	}
	paths = append(paths, "/latest")
	const clients = 16
	ld := startLoad(t, hs.URL, clients, bound, paths)

	probe := &http.Client{Timeout: bound}
	status := func(p string) (int, string) {
		t.Helper()
		resp, err := probe.Get(hs.URL + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				codes, errs := ld.take()
				t.Fatalf("%s: not within 2m (answers %v, errors %v)", what, codes, errs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// check fails the test on answers other than 200 and 503 and on
	// requests that did not return.
	check := func(phase string) {
		t.Helper()
		codes, errs := ld.take()
		for code, n := range codes {
			if code != http.StatusOK && code != http.StatusServiceUnavailable {
				t.Errorf("%s: %d answers %d", phase, n, code)
			}
		}
		for _, err := range errs {
			t.Errorf("%s: %v", phase, err)
		}
	}
	// recovered waits until serving works again: readiness, then a run of
	// successful answers.
	recovered := func(phase string) {
		t.Helper()
		waitUntil(phase+": /readyz 200", func() bool { code, _ := status("/readyz"); return code == http.StatusOK })
		ld.take()
		waitUntil(phase+": 200 answers only", func() bool {
			if ld.peek(http.StatusOK) < 4*clients {
				return false
			}
			codes, errs := ld.take()
			return len(codes) == 1 && len(errs) == 0
		})
	}
	outage := func(phase string) {
		t.Helper()
		ld.take()
		waitUntil(phase+": 503 answers", func() bool { return ld.peek(http.StatusServiceUnavailable) >= 3*clients })
		for _, p := range []string{"/readyz", "/healthz", paths[0], paths[len(paths)-2]} {
			if code, retry := status(p); code != http.StatusServiceUnavailable || retry == "" {
				t.Errorf("%s: GET %s: %d (Retry-After %q), want 503 with Retry-After", phase, p, code, retry)
			}
		}
		check(phase)
	}

	recovered("healthy")
	check("healthy")

	c.Pause()
	outage("database paused")
	c.Resume()
	recovered("database resumed")
	check("database resumed")

	c.Stop()
	outage("database stopped")
	c.Start()
	recovered("database restarted")
	check("database restarted")

	ld.close()
	if n, lines := logw.count(); n >= 100 {
		t.Errorf("the outages wrote %d log lines, want fewer than 100:\n%s", n, lines)
	} else {
		t.Logf("%d log lines:\n%s", n, lines)
	}
}

// TestReadyzOutage: in every mode (a log served from what is stored, and
// one fetched on demand), /readyz is 503 before the first served head, 200
// once there is one, 503 within StoreTimeout (no hang) while the database
// is stopped or hung, and 200 again once it is back, without a restart;
// /livez is 200 throughout.
func TestReadyzOutage(t *testing.T) {
	c := pgtest.NewCluster(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 300)

	const storeTimeout = time.Second
	modes := map[string]*Server{
		"stored": New(Config{Store: st, Log: l.name, StoreTimeout: storeTimeout, HeadRefresh: 100 * time.Millisecond}),
		"lazy": New(Config{Store: st, Log: l.name, StoreTimeout: storeTimeout, HeadRefresh: 100 * time.Millisecond,
			Fetch: map[string]Fetcher{l.name: noFetch{}}}),
	}
	urls := map[string]string{}
	for mode, srv := range modes {
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		go srv.Run(runCtx)
		hs := httptest.NewServer(srv.Handler())
		defer hs.Close()
		urls[mode] = hs.URL
	}
	// A request may take StoreTimeout; much longer is a hang.
	hc := &http.Client{Timeout: storeTimeout + 30*time.Second}
	status := func(url string) int {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", url)
		}
		return resp.StatusCode
	}
	expect := func(phase string, want int) {
		t.Helper()
		for mode, url := range urls {
			deadline := time.Now().Add(2 * time.Minute)
			for {
				got := status(url + "/readyz")
				if got == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s mode: /readyz %d, want %d", phase, mode, got, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got := status(url + "/livez"); got != http.StatusOK {
				t.Errorf("%s: %s mode: /livez %d, want 200", phase, mode, got)
			}
		}
	}
	// Before the first served head: 503, and it stays so.
	for range 3 {
		expect("no served head yet", http.StatusServiceUnavailable)
	}
	l.sync(t, st, 0, 300, 300, false)
	expect("a head stored but not served", http.StatusServiceUnavailable)
	if err := st.Commit(ctx, l.name, store.Batch{Synced: -1, Serve: 300}); err != nil {
		t.Fatal(err)
	}
	expect("head served", http.StatusOK)

	c.Stop()
	expect("database stopped", http.StatusServiceUnavailable)
	c.Start()
	expect("database restarted", http.StatusOK)

	c.Pause()
	expect("database hung", http.StatusServiceUnavailable)
	c.Resume()
	expect("database resumed", http.StatusOK)
}
