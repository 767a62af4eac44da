package main

import (
	"context"
	"errors"
	"golang.org/x/mod/sumdb/tlog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/storetest"
)

// TestKillResume kills "sumkeep sync --once" mid-way, several times and at
// different points, checks after each kill that the store holds whole
// batches only, and shows that the resumed result is identical to an
// uninterrupted sync.
func TestKillResume(t *testing.T) {
	// 24,000 records are 94 data tiles (the last one partial). The runs are
	// killed at different points: on the request for the upstream's head
	// (nothing stored yet), on the first data tile request (the head is
	// stored, no records), and after 5, 15, 25 and 35 data tile requests of
	// a run. At most 81 tiles are committed before the last kill, so every
	// kill comes mid-sync.
	const records = 24000
	type killPoint struct {
		prefix string // of the request path
		k      int64  // kill on the k-th such request of the run
	}
	kills := []killPoint{{"/latest", 1}, {"/tile/8/data/", 1}, {"/tile/8/data/", 5}, {"/tile/8/data/", 15}, {"/tile/8/data/", 25}, {"/tile/8/data/", 35}}

	u := newUpstream(t, records)
	key, log := u.VerifierKey(), u.Name()

	// Reference: one uninterrupted sync into A.
	dsnA := pgtest.NewDSN(t)
	start := time.Now()
	mustSync(t, dsnA, u.URL(), key)
	t.Logf("uninterrupted sync of %d records: %v", records, time.Since(start).Round(time.Millisecond))
	stA := openStore(t, dsnA)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	digestA, err := storetest.Digest(ctx, stA, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedSize(t, stA, log); got != records {
		t.Fatalf("reference store serves %d, want %d", got, records)
	}

	dsnB := pgtest.NewDSN(t)
	stB := openStore(t, dsnB)
	args := []string{"sync", "--once", "--db", dsnB, "--upstream", u.URL(), "--key", key, "--batch", "1", "--concurrency", "2"}

	var (
		killed     int   // runs that died by SIGKILL
		lastSynced int64 // cursor after the previous kill
		everMoved  bool
		current    atomic.Pointer[os.Process]
	)
	t.Cleanup(func() { u.OnRequest(nil) })
	start = time.Now()
	for i, kp := range kills {
		var seen atomic.Int64
		u.OnRequest(func(r *http.Request) {
			if strings.HasPrefix(r.URL.Path, kp.prefix) && seen.Add(1) == kp.k {
				if p := current.Load(); p != nil {
					p.Kill()
				}
			}
		})
		p := startSumkeep(t, args...)
		current.Store(p.cmd.Process)
		code := p.wait(t, 60*time.Second)
		current.Store(nil)
		u.OnRequest(nil)
		switch {
		case p.signaled(syscall.SIGKILL):
			killed++
		case code == 0:
			t.Logf("run %d (kill on request %d for %s) finished before the kill", i, kp.k, kp.prefix)
		default:
			t.Fatalf("run %d: exit %d\nstderr:\n%s", i, code, p.stderr)
		}

		waitUnlocked(t, stB, log)
		synced := checkWholeBatches(t, stB, log, records)
		t.Logf("run %d: killed on request %d for %s (%d made); cursor %d", i, kp.k, kp.prefix, seen.Load(), synced)
		if synced < lastSynced {
			t.Fatalf("run %d: the sync cursor went back from %d to %d", i, lastSynced, synced)
		}
		if synced > lastSynced {
			everMoved = true
		}
		lastSynced = synced
	}
	if killed < 3 {
		t.Fatalf("only %d of %d runs were killed mid-sync", killed, len(kills))
	}
	if !everMoved {
		t.Fatalf("the sync cursor never moved across %d killed runs", killed)
	}

	// Resume to the end.
	mustSync(t, dsnB, u.URL(), key, "--batch", "1", "--concurrency", "2")
	t.Logf("%d kills and the resumed sync: %v", killed, time.Since(start).Round(time.Millisecond))
	digestB, err := storetest.Digest(ctx, stB, log)
	if err != nil {
		t.Fatal(err)
	}
	if digestB != digestA {
		t.Errorf("the resumed store's digest %s differs from the uninterrupted one's %s", digestB, digestA)
	}
	if got := servedSize(t, stB, log); got != records {
		t.Errorf("resumed store serves %d, want %d", got, records)
	}
	var count, maxID int64
	if err := stB.Pool().QueryRow(ctx, `SELECT count(*), coalesce(max(id), -1) FROM records`).Scan(&count, &maxID); err != nil {
		t.Fatal(err)
	}
	if count != records || maxID != records-1 {
		t.Errorf("resumed store holds %d records up to id %d, want %d up to %d", count, maxID, records, records-1)
	}
}

// waitUnlocked waits until the sync lock of log can be taken: the killed
// process's database session has ended.
func waitUnlocked(t *testing.T, st *postgres.Store, log string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		unlock, err := st.LockSync(ctx, log)
		cancel()
		if err == nil {
			unlock()
			return
		}
		if !errors.Is(err, store.ErrLocked) {
			t.Fatalf("taking the sync lock: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the sync lock is still held 15s after the syncer was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkWholeBatches checks that an interrupted sync left whole batches: the
// records are exactly [0, cursor), with the level-0 tiles over them, nothing
// is served, and the store digests cleanly. It returns the cursor.
func checkWholeBatches(t *testing.T, st *postgres.Store, log string, size int64) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	synced, err := st.Synced(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	if synced < 0 || synced > size {
		t.Fatalf("sync cursor %d outside [0, %d]", synced, size)
	}
	if synced < size && synced%256 != 0 {
		t.Errorf("sync cursor %d is inside a data tile", synced)
	}
	var count, maxID, tiles int64
	if err := st.Pool().QueryRow(ctx, `SELECT count(*), coalesce(max(id), -1) FROM records`).Scan(&count, &maxID); err != nil {
		t.Fatal(err)
	}
	if count != synced || maxID != synced-1 {
		t.Errorf("cursor %d, but the store holds %d records up to id %d: half a batch", synced, count, maxID)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM tiles WHERE level = 0`).Scan(&tiles); err != nil {
		t.Fatal(err)
	}
	// A full sync stores no level-0 tiles: they are rebuilt from the
	// records, all of which below the cursor must be there.
	if tiles != 0 {
		t.Errorf("cursor %d, and the store holds %d level-0 tiles, want none", synced, tiles)
	}
	var below []tlog.Tile
	for k := int64(0); k*256 < synced; k++ {
		below = append(below, tlog.Tile{H: 8, L: 0, N: k, W: int(min(256, synced-k*256))})
	}
	if _, err := st.ReadTiles(ctx, log, below); len(below) > 0 && err != nil {
		t.Errorf("cursor %d, but the level-0 tiles below it cannot be read: %v", synced, err)
	}
	if synced < size {
		if served := servedSize(t, st, log); served != 0 {
			t.Errorf("a partial sync serves head %d", served)
		}
	}
	heads, err := st.Heads(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range heads {
		if h.Size != size {
			t.Errorf("the store holds a head of size %d; the upstream only signed %d", h.Size, size)
		}
	}
	if _, err := storetest.Digest(ctx, st, log); err != nil {
		t.Errorf("digest of the interrupted store: %v", err)
	}
	return synced
}
