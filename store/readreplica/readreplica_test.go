package readreplica

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/upstream"
)

// syncTo syncs a new SQLite store in full mode from u as it is now.
func syncTo(t *testing.T, u *sumdbtest.Upstream, mode string) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(u.URL(), nil), Key: u.VerifierKey(), Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestReplicaBehind: a replica that holds an older state of the log than the
// primary (as a lagging standby does) sets the served head; records above
// it come from the primary once pinned or once the lag passes MaxLag; and
// what the replica holds is answered without the primary.
func TestReplicaBehind(t *testing.T) {
	ctx := context.Background()
	u, err := sumdbtest.NewSynthetic("sumdb.test", 300)
	if err != nil {
		t.Fatal(err)
	}
	u.Start()
	defer u.Close()
	replica := syncTo(t, u, mirror.ModeFull)
	if err := u.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	primary := syncTo(t, u, mirror.ModeFull)
	log := u.Name()

	clk := &clock{now: time.Unix(1e9, 0)}
	logs := new(logBuffer)
	r := New(replica, primary, Options{Now: clk.Now, MaxLag: time.Minute, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	head := func() int64 {
		t.Helper()
		h, err := r.ServedHead(ctx, log)
		if err != nil {
			t.Fatal(err)
		}
		return h.Size
	}
	if got := head(); got != 300 {
		t.Fatalf("served head %d, want the replica's 300", got)
	}
	// Within MaxLag the replica's head stands.
	clk.add(59 * time.Second)
	if got := head(); got != 300 {
		t.Fatalf("served head %d after 59s of lag, want 300", got)
	}
	// Past it, the primary's is served, and the lag is logged.
	clk.add(2 * time.Second)
	if got := head(); got != 600 {
		t.Fatalf("served head %d after 61s of lag, want the primary's 600", got)
	}
	if !strings.Contains(logs.String(), "lags behind the primary") {
		t.Errorf("the lag is not logged:\n%s", logs)
	}

	// A new reader: Pin serves the primary's head at once.
	r = New(replica, primary, Options{Now: clk.Now})
	if got := head(); got != 300 {
		t.Fatalf("new reader: served head %d, want 300", got)
	}
	if err := r.Pin(ctx, log); err != nil {
		t.Fatal(err)
	}
	if got := head(); got != 600 {
		t.Fatalf("after Pin: served head %d, want 600", got)
	}
	// Everything under 600 is read: records above 300 from the primary.
	path, version, _ := u.Module(450)
	rec, err := r.Lookup(ctx, log, path, version, 600)
	if err != nil || rec.ID != 450 {
		t.Fatalf("Lookup of record 450: %+v, %v", rec, err)
	}
	if _, err := r.Lookup(ctx, log, path, version, 300); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup of record 450 below 300: %v, want ErrNotFound", err)
	}
	tiles := []tlog.Tile{{H: 8, L: 0, N: 2, W: 88}, {H: 8, L: 1, N: 0, W: 2}}
	if data, err := r.ReadTiles(ctx, log, tiles); err != nil || len(data) != 2 {
		t.Fatalf("ReadTiles of the 600 tree: %v", err)
	}
	if recs, err := r.ReadRecords(ctx, log, 512, 88); err != nil || len(recs) != 88 || recs[0].ID != 512 {
		t.Fatalf("ReadRecords above the replica: %d records, %v", len(recs), err)
	}

	// What the replica holds needs no primary: with the primary closed,
	// it is still answered.
	primary.Close()
	path, version, _ = u.Module(7)
	if rec, err := r.Lookup(ctx, log, path, version, 300); err != nil || rec.ID != 7 {
		t.Fatalf("Lookup of record 7 with the primary closed: %+v, %v", rec, err)
	}
	if _, err := r.ReadTiles(ctx, log, []tlog.Tile{{H: 8, L: 0, N: 1, W: 44}}); err != nil {
		t.Fatalf("ReadTiles of the replica's tree with the primary closed: %v", err)
	}
	if names, err := r.Logs(ctx); err != nil || len(names) != 1 || names[0] != log {
		t.Fatalf("Logs with the primary closed: %v, %v", names, err)
	}
	// The served head stays the pinned one; reads above the replica fail
	// as the primary does, and are not taken for not found.
	if got := head(); got != 600 {
		t.Fatalf("served head with the primary closed: %d, want the pinned 600", got)
	}
	path, version, _ = u.Module(450)
	if _, err := r.Lookup(ctx, log, path, version, 600); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup of record 450 with the primary closed: %v, want the primary's error", err)
	}
}

// TestReplicaDown: a replica that cannot be reached (a real refused
// connection) makes every read go to the primary, the fall-back is logged
// once in a while rather than on every read, and the replica is tried again
// after Retry.
func TestReplicaDown(t *testing.T) {
	ctx := context.Background()
	u, err := sumdbtest.NewSynthetic("sumdb.test", 300)
	if err != nil {
		t.Fatal(err)
	}
	u.Start()
	defer u.Close()
	primary := syncTo(t, u, mirror.ModeFull)

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	replica, err := postgres.Connect(ctx, "postgres://postgres:secret@"+addr+"/sumkeep?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()

	clk := &clock{now: time.Unix(1e9, 0)}
	logs := new(logBuffer)
	r := New(replica, primary, Options{Now: clk.Now, Retry: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	log := u.Name()
	for i := range 50 {
		h, err := r.ServedHead(ctx, log)
		if err != nil || h.Size != 300 {
			t.Fatalf("ServedHead %d with the replica down: %d, %v", i, h.Size, err)
		}
		path, version, _ := u.Module(int64(i))
		if rec, err := r.Lookup(ctx, log, path, version, 300); err != nil || rec.ID != int64(i) {
			t.Fatalf("Lookup %d with the replica down: %+v, %v", i, rec, err)
		}
	}
	if n := strings.Count(logs.String(), "does not answer"); n != 1 {
		t.Errorf("%d log lines say the replica does not answer, want 1:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "secret") {
		t.Errorf("the log shows the replica's password:\n%s", logs)
	}
	// After Retry one read tries the replica again (and fails again).
	clk.add(11 * time.Second)
	if _, err := r.Logs(ctx); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "does not answer"); n != 2 {
		t.Errorf("%d log lines say the replica does not answer after Retry, want 2:\n%s", n, logs)
	}
}
