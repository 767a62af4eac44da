package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/trilliantest"
	"github.com/sumkeep/sumkeep/replica"
	"github.com/sumkeep/sumkeep/store/storetest"
)

// createTree runs "sumkeep trillian create-tree" and returns the tree's id.
func createTree(t *testing.T, tr *trilliantest.Trillian, key string) string {
	t.Helper()
	code, stdout, stderr := runSumkeep(t, 2*time.Minute, "trillian", "create-tree", "--trillian", tr.Addr(), "--key", key)
	id := strings.TrimSpace(stdout)
	if _, err := strconv.ParseInt(id, 10, 64); code != 0 || err != nil {
		t.Fatalf("sumkeep trillian create-tree: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	return id
}

// trillianLeaves returns how many leaves Trillian's database holds for tree,
// at how many distinct indexes, and the largest index.
func trillianLeaves(t *testing.T, tr *trilliantest.Trillian, tree string) (rows, indexes, maxIndex int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, tr.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT s.sequencenumber), coalesce(max(s.sequencenumber), -1)
		FROM sequencedleafdata s JOIN leafdata l ON l.treeid = s.treeid AND l.leafidentityhash = s.leafidentityhash
		WHERE s.treeid = $1`, tree).Scan(&rows, &indexes, &maxIndex)
	if err != nil {
		t.Fatal(err)
	}
	return rows, indexes, maxIndex
}

// trillianSize returns the size of tree's newest root in Trillian's
// database.
func trillianSize(t *testing.T, tr *trilliantest.Trillian, tree string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, tr.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(treesize), 0) FROM treehead WHERE treeid = $1`, tree).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKillResumeReplica is TestKillResume with the Trillian replica on:
// "sumkeep sync --once --trillian" is killed mid-sync at several points,
// one of them while it waits for Trillian's signer (stopped for that run).
// Resumed, the store is identical to an uninterrupted sync's, Trillian's
// root equals the served head's, and Trillian holds each leaf once.
func TestKillResumeReplica(t *testing.T) {
	const records = 24000
	tr := trilliantest.New(t, trilliantest.Options{})
	u := newUpstream(t, records)
	key, log := u.VerifierKey(), u.Name()
	tree := createTree(t, tr, key)

	// Reference: one uninterrupted sync, without the replica.
	dsnA := pgtest.NewDSN(t)
	mustSync(t, dsnA, u.URL(), key)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	digestA, err := storetest.Digest(ctx, openStore(t, dsnA), log)
	if err != nil {
		t.Fatal(err)
	}

	dsnB := pgtest.NewDSN(t)
	stB := openStore(t, dsnB)
	args := []string{"sync", "--once", "--db", dsnB, "--upstream", u.URL(), "--key", key,
		"--trillian", tr.Addr(), "--trillian-tree", tree, "--batch", "1", "--concurrency", "2"}

	var current atomic.Pointer[os.Process]
	killed := 0
	run := func(name string, stopSigner bool, arm func()) {
		t.Helper()
		if stopSigner {
			tr.StopSigner()
		}
		p := startSumkeep(t, args...)
		current.Store(p.cmd.Process)
		if arm != nil {
			arm()
		}
		code := p.wait(t, 2*time.Minute)
		current.Store(nil)
		u.OnRequest(nil)
		switch {
		case p.signaled(syscall.SIGKILL):
			killed++
		case code == 0:
			t.Logf("%s: finished before the kill", name)
		default:
			t.Fatalf("%s: exit %d\nstderr:\n%s", name, code, p.stderr)
		}
		if stopSigner {
			if err := tr.StartSigner(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		waitUnlocked(t, stB, log)
		synced := checkWholeBatches(t, stB, log, records)
		rows, idx, _ := trillianLeaves(t, tr, tree)
		t.Logf("%s: cursor %d; Trillian holds %d leaves at %d indexes", name, synced, rows, idx)
		if rows != idx {
			t.Fatalf("%s: Trillian holds %d leaves at only %d indexes", name, rows, idx)
		}
	}
	t.Cleanup(func() { u.OnRequest(nil) })
	for _, k := range []int64{1, 8, 20, 35} {
		var seen atomic.Int64
		run("kill on data tile request "+strconv.FormatInt(k, 10), false, func() {
			u.OnRequest(func(r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/tile/8/data/") && seen.Add(1) == k {
					if p := current.Load(); p != nil {
						p.Kill()
					}
				}
			})
		})
	}
	// With the signer stopped, the run sends leaves up to replica.Window
	// ahead of the integrated ones (in batches of one tile), or all of
	// them, and then waits for Trillian: it is killed there.
	run("kill while waiting for Trillian", true, func() {
		var integrated, maxIndex int64
		waitFor(t, 90*time.Second, func() string {
			return fmt.Sprintf("Trillian holds leaves up to %d, integrated %d", maxIndex, integrated)
		}, func() bool {
			integrated = trillianSize(t, tr, tree)
			_, _, maxIndex = trillianLeaves(t, tr, tree)
			held := maxIndex + 1
			return held == records || held+256 > integrated+replica.Window
		})
		current.Load().Kill()
	})
	if killed < 4 {
		t.Fatalf("only %d runs were killed mid-sync", killed)
	}

	// Resume to the end. The replica learns what Trillian holds and sends
	// none of it again (Trillian would refuse it).
	code, stdout, stderr := runSumkeep(t, 2*time.Minute, "sync", "--once", "--db", dsnB, "--upstream", u.URL(), "--key", key,
		"--trillian", tr.Addr(), "--trillian-tree", tree)
	if code != 0 || !strings.Contains(stderr, "leaves_refused=0") {
		t.Fatalf("resumed sync: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
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
	rows, idx, maxIndex := trillianLeaves(t, tr, tree)
	if rows != records || idx != records || maxIndex != records-1 {
		t.Errorf("Trillian holds %d leaves at %d indexes up to %d; want each of %d once", rows, idx, maxIndex, records)
	}

	// status shows the replica agreeing with the served head.
	code, stdout, stderr = runSumkeep(t, time.Minute, "status", "--db", dsnB, "--key", key, "--trillian", tr.Addr(), "--trillian-tree", tree)
	if code != 0 || !strings.Contains(stdout, "size 24000") || !strings.Contains(stdout, "root agrees with the served head") {
		t.Errorf("sumkeep status: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestReplicaCLI: the replica's flags (also from SUMKEEP_TRILLIAN and
// SUMKEEP_TRILLIAN_TREE), their mistakes, and a disagreeing replica:
// sync exits 1 saying so, nothing is served, and status shows the evidence.
func TestReplicaCLI(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sync", "--once", "--trillian", "127.0.0.1:1"}, "--trillian needs --trillian-tree"},
		{[]string{"sync", "--once", "--trillian-tree", "5"}, "--trillian-tree needs --trillian"},
		{[]string{"sync", "--once", "--mode", "lazy", "--trillian", "127.0.0.1:1", "--trillian-tree", "5"}, "needs full mode"},
		{[]string{"serve", "--sync-schedule", "@every 1h", "--mode", "lazy", "--trillian", "127.0.0.1:1", "--trillian-tree", "5"}, "needs full mode"},
		{[]string{"trillian"}, "create-tree"},
		{[]string{"trillian", "create-tree"}, "--trillian is required"},
	} {
		code, _, stderr := runSumkeep(t, 30*time.Second, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("sumkeep %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}

	tr := trilliantest.New(t, trilliantest.Options{})
	other := newUpstream(t, 500)
	tree := createTree(t, tr, other.VerifierKey())
	otherDSN := pgtest.NewDSN(t)
	mustSync(t, otherDSN, other.URL(), other.VerifierKey(), "--trillian", tr.Addr(), "--trillian-tree", tree)
	// The log grows and is synced without the replica: status shows it
	// behind, its root equal to the log's at its size (from the store's
	// tiles).
	if err := other.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	mustSync(t, otherDSN, other.URL(), other.VerifierKey())
	code, stdout, stderr := runSumkeep(t, time.Minute, "status", "--db", otherDSN, "--key", other.VerifierKey(), "--trillian", tr.Addr(), "--trillian-tree", tree)
	if code != 0 || !strings.Contains(stdout, "size 500") || !strings.Contains(stdout, "root agrees with the log's at that size; behind the served head (800)") {
		t.Errorf("status with the replica behind: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// Another log synced into the same tree: Trillian's root differs.
	u := newUpstream(t, 1000)
	dsn := pgtest.NewDSN(t)
	env := []string{"SUMKEEP_TRILLIAN=" + tr.Addr(), "SUMKEEP_TRILLIAN_TREE=" + tree}
	p := startSumkeepEnv(t, env, "sync", "--once", "--db", dsn, "--upstream", u.URL(), "--key", u.VerifierKey())
	if code := p.wait(t, 2*time.Minute); code != 1 || !strings.Contains(p.stderr.String(), "replica disagrees") {
		t.Fatalf("sync into another log's tree: exit %d\nstderr:\n%s", code, p.stderr)
	}
	t.Logf("sync: %s", p.stderr)
	if got := servedSize(t, openStore(t, dsn), u.Name()); got != 0 {
		t.Fatalf("the store serves %d after the replica disagreed", got)
	}
	p = startSumkeepEnv(t, env, "status", "--db", dsn, "--key", u.VerifierKey())
	if code := p.wait(t, time.Minute); code != 1 || !strings.Contains(p.stdout.String(), "EVIDENCE replica-mismatch") {
		t.Fatalf("status: exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
}

// TestServeScheduleReplica: serve --sync-schedule feeds the replica too, and
// serves the head once Trillian agrees.
func TestServeScheduleReplica(t *testing.T) {
	tr := trilliantest.New(t, trilliantest.Options{})
	u := newUpstream(t, 3000)
	tree := createTree(t, tr, u.VerifierKey())
	dsn := pgtest.NewDSN(t)
	p, _ := startServe(t, dsn, u.VerifierKey(), "--upstream", u.URL(), "--sync-schedule", "@every 1h", "--mode", "full",
		"--trillian", tr.Addr(), "--trillian-tree", tree)
	st := openStore(t, dsn)
	waitFor(t, 2*time.Minute, func() string { return "the scheduled sync to serve the head\n" + p.stderr.String() }, func() bool {
		return servedSize(t, st, u.Name()) == 3000
	})
	p.stop(t, 30*time.Second)
	if !strings.Contains(p.stderr.String(), "the replica agrees") {
		t.Errorf("serve's sync did not consult the replica:\n%s", p.stderr)
	}
	if rows, idx, _ := trillianLeaves(t, tr, tree); rows != 3000 || idx != 3000 {
		t.Errorf("Trillian holds %d leaves at %d indexes, want 3000 once each", rows, idx)
	}
}
