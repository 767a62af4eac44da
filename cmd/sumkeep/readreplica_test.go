package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store/postgres"
)

// lookupURL is the URL of the lookup of record id of u at a server.
func lookupURL(u *sumdbtest.Upstream, server string, id int64) string {
	path, version, _ := u.Module(id)
	ep, _ := module.EscapePath(path)
	ev, _ := module.EscapeVersion(version)
	return server + "/lookup/" + ep + "@" + ev
}

// noteSize returns the tree size of the signed note at the end of a
// /latest or /lookup answer (0 if there is none).
func noteSize(body string) int64 {
	_, rest, ok := strings.Cut(body, "go.sum database tree\n")
	if !ok {
		return 0
	}
	line, _, _ := strings.Cut(rest, "\n")
	n, _ := strconv.ParseInt(line, 10, 64)
	return n
}

// TestServeReadReplica: serve --db-read reads from a real streaming replica
// (a hot standby made with pg_basebackup) while sync and fetch-through write
// to the primary. With the standby's replay paused, the served head stays
// the standby's although sync moved the primary's; a record just fetched
// through (lazy mode) is answered from the primary, under the head that
// proves it, with the tiles of that head; once the standby has replayed
// them, everything is answered from the standby alone (the primary hung).
// The standby's password appears in no output.
func TestServeReadReplica(t *testing.T) {
	primary := pgtest.NewCluster(t)
	standby := primary.NewStandby(t)
	readDSN := withPassword(t, standby.DSN(), "replica-s3cret")
	ctx := context.Background()

	// The full-mode log: synced to 300, then served from the standby.
	full := newUpstream(t, 300)
	mustSync(t, primary.DSN(), full.URL(), full.VerifierKey(), "--mode", "full")
	standby.CatchUp(primary)
	p, url := startServe(t, primary.DSN(), full.VerifierKey(), "--db-read", readDSN, "--upstream", full.URL(),
		"--mode", "full", "--store-timeout", "2s", "--cache-records", "0", "--cache-tiles", "0")
	latest := func(server string) int64 {
		code, body := get(t, server+"/latest")
		if code != http.StatusOK {
			return 0
		}
		return noteSize(body)
	}
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("/latest at %d, want 300", latest(url)) },
		func() bool { return latest(url) == 300 })

	// Sync writes to the primary while the standby lags: the standby's
	// head is served, and answered from.
	standby.PauseReplay()
	if err := full.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	mustSync(t, primary.DSN(), full.URL(), full.VerifierKey(), "--mode", "full")
	pst := openStore(t, primary.DSN())
	if got := servedSize(t, pst, full.Name()); got != 600 {
		t.Fatalf("primary's served head %d after the sync, want 600", got)
	}
	for range 5 { // several refreshes of the served head
		if got := latest(url); got != 300 {
			t.Fatalf("/latest at %d while the standby lags at 300, want 300", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := get(t, lookupURL(full, url, 10)); code != http.StatusOK || noteSize(body) != 300 {
		t.Errorf("lookup of record 10 while the standby lags: %d %q", code, body)
	}
	if code, _ := get(t, lookupURL(full, url, 450)); code != http.StatusNotFound {
		t.Errorf("lookup of record 450, above the served head: %d, want 404", code)
	}
	standby.ResumeReplay()
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("/latest at %d after replay resumed, want 600", latest(url)) },
		func() bool { return latest(url) == 600 })
	if code, body := get(t, lookupURL(full, url, 450)); code != http.StatusOK || noteSize(body) != 600 {
		t.Errorf("lookup of record 450 after the standby caught up: %d %q", code, body)
	}
	p.stop(t, time.Minute)

	// The lazy-mode log: a head only, then records fetched through.
	lazy, err := sumdbtest.NewSynthetic("lazy.test", 300)
	if err != nil {
		t.Fatal(err)
	}
	lazy.Start()
	t.Cleanup(lazy.Close)
	mustSync(t, primary.DSN(), lazy.URL(), lazy.VerifierKey(), "--mode", "lazy")
	standby.CatchUp(primary)
	p, url = startServe(t, primary.DSN(), lazy.VerifierKey(), "--db-read", readDSN, "--upstream", lazy.URL(),
		"--mode", "lazy", "--store-timeout", "2s", "--cache-records", "0", "--cache-tiles", "0")
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("/latest at %d, want 300", latest(url)) },
		func() bool { return latest(url) == 300 })

	standby.PauseReplay()
	if err := lazy.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	// Record 100 lies under the served head; record 450 needs the newer
	// head 600, which the fetch serves on the primary.
	for _, c := range []struct{ id, size int64 }{{100, 300}, {450, 600}} {
		if code, body := get(t, lookupURL(lazy, url, c.id)); code != http.StatusOK || noteSize(body) < c.size {
			t.Fatalf("lookup of record %d fetched through while the standby lags: %d %q", c.id, code, body)
		}
	}
	// The go command then reads the tiles of the head it was given: the
	// standby has not got them.
	if code, _ := get(t, url+"/"+tlog.Tile{H: 8, L: 0, N: 1, W: 256}.Path()); code != http.StatusOK {
		t.Errorf("tile 0/001 of the 600 tree while the standby lags: %d", code)
	}
	if code, body := get(t, url+"/"+tlog.Tile{H: 8, L: 1, N: 0, W: 2}.Path()); code != http.StatusOK {
		t.Errorf("tile 1/000.p/2 of the 600 tree while the standby lags: %d %q", code, body)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sst, err := postgres.OpenReadOnly(sctx, standby.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer sst.Close()
	path, version, _ := lazy.Module(100)
	if _, err := sst.Lookup(sctx, lazy.Name(), path, version, 600); !isNotFound(err) {
		t.Fatalf("the standby has record 100 while its replay is paused (err %v): the test shows nothing", err)
	}

	standby.ResumeReplay()
	standby.CatchUp(primary)
	if _, err := sst.Lookup(sctx, lazy.Name(), path, version, 600); err != nil {
		t.Fatalf("the standby lacks record 100 after catching up: %v", err)
	}
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("/latest at %d after catching up, want 600", latest(url)) },
		func() bool { return latest(url) == 600 })

	// From the standby alone: the primary hangs.
	primary.Pause()
	defer primary.Resume()
	for _, id := range []int64{100, 450} {
		if code, body := get(t, lookupURL(lazy, url, id)); code != http.StatusOK || noteSize(body) != 600 {
			t.Errorf("lookup of record %d with the primary hung: %d %q", id, code, body)
		}
	}
	if code, _ := get(t, url+"/"+tlog.Tile{H: 8, L: 0, N: 1, W: 256}.Path()); code != http.StatusOK {
		t.Errorf("tile 0/001 with the primary hung: %d", code)
	}
	if code, body := get(t, url+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the primary hung and the standby up: %d %q", code, body)
	}
	primary.Resume()
	p.stop(t, time.Minute)
	if out := p.stdout.String() + p.stderr.String(); strings.Contains(out, "replica-s3cret") {
		t.Errorf("serve's output shows the standby's password:\n%s", out)
	}
}

// TestServeReadReplicaUnreachable: a --db-read that is not a Postgres URL
// is a usage error; a standby that does not answer when serve starts does
// not stop it: it says so (without the password) and serves from --db.
func TestServeReadReplicaUnreachable(t *testing.T) {
	u := newUpstream(t, 300)
	dsn := pgtest.NewDSN(t)
	code, _, stderr := runSumkeep(t, time.Minute, "serve", "--db", dsn, "--key", u.VerifierKey(),
		"--db-read", filepath.Join(t.TempDir(), "replica.db"), "--listen", "127.0.0.1:0")
	if code != 2 || !strings.Contains(stderr, "postgres://") {
		t.Errorf("serve --db-read with a file path: exit %d, want 2 naming postgres://\n%s", code, stderr)
	}

	mustSync(t, dsn, u.URL(), u.VerifierKey(), "--mode", "full")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "postgres://sumkeep:down-s3cret@" + ln.Addr().String() + "/sumkeep?connect_timeout=2"
	ln.Close() // nothing listens there now
	p, url := startServe(t, dsn, u.VerifierKey(), "--db-read", down, "--upstream", u.URL(), "--mode", "full")
	if code, body := get(t, lookupURL(u, url, 7)); code != http.StatusOK || noteSize(body) != 300 {
		t.Errorf("lookup with the standby unreachable: %d %q", code, body)
	}
	if code, _ := get(t, url+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the standby unreachable and the primary up: %d", code)
	}
	p.stop(t, time.Minute)
	out := p.stdout.String() + p.stderr.String()
	if !strings.Contains(out, "the read replica does not answer yet") {
		t.Errorf("serve does not say the standby does not answer:\n%s", out)
	}
	if strings.Contains(out, "down-s3cret") {
		t.Errorf("serve's output shows the standby's password:\n%s", out)
	}
}
