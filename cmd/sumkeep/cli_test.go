package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
)

// runIn calls run in this process with env as the whole environment.
func runIn(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	code, stdout, stderr, _ = runWithProcs(t, env, 4, args...)
	return code, stdout, stderr
}

// runWithProcs is runIn as if GOMAXPROCS were procs, leaving the test
// process's own alone; sets lists the values the command set it to.
func runWithProcs(t *testing.T, env map[string]string, procs int, args ...string) (code int, stdout, stderr string, sets []int) {
	t.Helper()
	return runWith(t, env, procs, "", args...)
}

// runStdin is runIn with stdin as the command's standard input.
func runStdin(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	code, stdout, stderr, _ = runWith(t, env, 4, stdin, args...)
	return code, stdout, stderr
}

// runWith is runWithProcs with stdin as the command's standard input.
func runWith(t *testing.T, env map[string]string, procs int, stdin string, args ...string) (code int, stdout, stderr string, sets []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	getenv := func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
	gomaxprocs := func(n int) int {
		prev := procs
		if n > 0 {
			procs = n
			sets = append(sets, n)
		}
		return prev
	}
	code = run(ctx, args, strings.NewReader(stdin), &out, &errb, getenv, gomaxprocs)
	return code, out.String(), errb.String(), sets
}

// TestCLIContract checks the command line's public contract: exit statuses,
// SUMKEEP_<FLAG> environment variables and their precedence, status on an
// empty store, and migrate being idempotent.
func TestCLIContract(t *testing.T) {
	u := newUpstream(t, 700)
	key, log, url := u.VerifierKey(), u.Name(), u.URL()
	dsnFull, dsnEmpty, dsnMigrate := pgtest.NewDSN(t), pgtest.NewDSN(t), pgtest.NewDSN(t)
	const unreachable = "postgres://postgres@127.0.0.1:1/nope?sslmode=disable&connect_timeout=5"
	none := map[string]string{}

	// Exit status 2: usage and environment errors.
	for _, tt := range []struct {
		args   []string
		env    map[string]string
		stderr string // a piece of the message
	}{
		{nil, none, "usage: sumkeep"},
		{[]string{"frobnicate"}, none, `unknown command "frobnicate"`},
		{[]string{"sync", "--bogus"}, none, "bogus"},
		{[]string{"serve", "--listen"}, none, "listen"},
		{[]string{"sync", "--db", dsnEmpty}, none, "--once"},
		{[]string{"sync", "--once", "--schedule", "@every 1m", "--db", dsnEmpty}, none, "--once"},
		{[]string{"sync", "--once", "--mode", "sideways", "--db", dsnEmpty}, none, "sideways"},
		{[]string{"sync", "--once", "--concurrency", "many"}, none, "many"},
		{[]string{"sync", "--once"}, map[string]string{"SUMKEEP_CONCURRENCY": "many"}, "SUMKEEP_CONCURRENCY"},
		{[]string{"serve", "--sync-schedule", "every now and then"}, none, "--sync-schedule"},
		{[]string{"serve", "--cache-records", "-1"}, none, "--cache-records"},
		{[]string{"serve", "--cache-tiles", "-1"}, none, "--cache-tiles"},
		{[]string{"serve", "--key", "not-a-key"}, none, "not-a-key"},
		{[]string{"sync", "--once", "--db", dsnEmpty, "--upstream", url, "--key", "not-a-key"}, none, "not-a-key"},
		{[]string{"sync", "--schedule", "every now and then", "--db", dsnEmpty, "--upstream", url, "--key", key}, none, "every now and then"},
		{[]string{"status", "--db", unreachable}, none, "127.0.0.1"},
		{[]string{"status"}, map[string]string{"SUMKEEP_DB": unreachable}, "127.0.0.1"},
	} {
		code, _, stderr := runIn(t, tt.env, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("sumkeep %q with env %v: exit %d, stderr:\n%s\nwant exit 2 and a message with %q", tt.args, tt.env, code, stderr, tt.stderr)
		}
	}
	// The same through the binary, for main's exit status.
	for _, args := range [][]string{{"frobnicate"}, {"sync", "--bogus"}, {"serve", "--key", "not-a-key"}} {
		if code, _, stderr := runSumkeep(t, 20*time.Second, args...); code != 2 {
			t.Errorf("binary sumkeep %q: exit %d, want 2\n%s", args, code, stderr)
		}
	}
	// Help is not an error.
	for _, args := range [][]string{{"help"}, {"sync", "-h"}, {"serve", "--help"}} {
		if code, _, stderr := runIn(t, none, args...); code != 0 {
			t.Errorf("sumkeep %q: exit %d, want 0\n%s", args, code, stderr)
		}
	}

	// A store with no log yet.
	code, stdout, stderr := runIn(t, none, "status", "--db", dsnEmpty)
	if code != 0 || !strings.Contains(stdout, "no log yet") {
		t.Errorf("status of an empty store: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// Every flag from the environment: a sync configured by SUMKEEP_* only.
	syncEnv := map[string]string{"SUMKEEP_DB": dsnFull, "SUMKEEP_UPSTREAM": url, "SUMKEEP_KEY": key, "SUMKEEP_ONCE": "true"}
	code, stdout, stderr = runIn(t, syncEnv, "sync")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("serving head %d", u.Size())) {
		t.Fatalf("sync configured by the environment: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// SUMKEEP_DB is honoured...
	code, stdout, stderr = runIn(t, map[string]string{"SUMKEEP_DB": dsnFull}, "status")
	if code != 0 || !strings.Contains(stdout, log) || !strings.Contains(stdout, fmt.Sprint(u.Size())) {
		t.Errorf("status with SUMKEEP_DB: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// ...and --db wins over it, either way round.
	code, stdout, stderr = runIn(t, map[string]string{"SUMKEEP_DB": dsnFull}, "status", "--db", dsnEmpty)
	if code != 0 || !strings.Contains(stdout, "no log yet") {
		t.Errorf("status with SUMKEEP_DB=<full store> --db <empty store>: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runIn(t, map[string]string{"SUMKEEP_DB": unreachable}, "status", "--db", dsnFull)
	if code != 0 || !strings.Contains(stdout, log) {
		t.Errorf("status with SUMKEEP_DB=<unreachable> --db <full store>: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// migrate creates the schema and is idempotent.
	for i := range 2 {
		code, stdout, stderr := runIn(t, map[string]string{"SUMKEEP_DB": dsnMigrate}, "migrate")
		if code != 0 || !strings.Contains(stdout, "up to date") {
			t.Errorf("migrate #%d: exit %d\nstdout:\n%s\nstderr:\n%s", i+1, code, stdout, stderr)
		}
	}
	st := openStore(t, dsnMigrate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tables int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_name IN ('logs', 'heads', 'tiles', 'records', 'evidence')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 5 {
		t.Errorf("after migrate, %d of the 5 tables exist", tables)
	}
}

// TestSyncLeavesCoreToDatabase: a sync into Postgres on this machine lowers
// GOMAXPROCS by one, unless GOMAXPROCS is set or only one core is there;
// a sync into SQLite (in this process) leaves it alone.
func TestSyncLeavesCoreToDatabase(t *testing.T) {
	u := newUpstream(t, 300)
	key, url := u.VerifierKey(), u.URL()
	for _, tt := range []struct {
		name  string
		db    string
		env   map[string]string
		procs int
		want  []int
	}{
		{"postgres", pgtest.NewDSN(t), nil, 4, []int{3}},
		{"postgres, GOMAXPROCS set", pgtest.NewDSN(t), map[string]string{"GOMAXPROCS": "4"}, 4, nil},
		{"postgres, one core", pgtest.NewDSN(t), nil, 1, nil},
		{"sqlite", filepath.Join(t.TempDir(), "sumkeep.db"), nil, 4, nil},
	} {
		code, _, stderr, sets := runWithProcs(t, tt.env, tt.procs, "sync", "--once", "--db", tt.db, "--upstream", url, "--key", key)
		if code != 0 {
			t.Fatalf("%s: sync exit %d\n%s", tt.name, code, stderr)
		}
		if !slices.Equal(sets, tt.want) {
			t.Errorf("%s: GOMAXPROCS %d set to %v, want %v", tt.name, tt.procs, sets, tt.want)
		}
	}
}

// TestSyncScheduleAndLock runs "sumkeep sync --schedule" against a growing
// upstream: the served head follows the upstream within seconds, and a
// concurrent "sumkeep sync --once" on the same database is refused with a
// clear message while the scheduled sync holds the lock.
func TestSyncScheduleAndLock(t *testing.T) {
	u := newUpstream(t, 2000)
	key, log, url := u.VerifierKey(), u.Name(), u.URL()
	dsn := pgtest.NewDSN(t)
	st := openStore(t, dsn)

	sched := startSumkeep(t, "sync", "--schedule", "@every 1s", "--db", dsn, "--upstream", url, "--key", key)
	served := func() int64 { return servedSize(t, st, log) }
	follows := func(size int64, timeout time.Duration) {
		t.Helper()
		start := time.Now()
		waitFor(t, timeout, func() string {
			return fmt.Sprintf("served head %d, want %d\nscheduled sync stderr:\n%s", served(), size, sched.stderr)
		}, func() bool {
			select {
			case <-sched.done:
				t.Fatalf("the scheduled sync exited: %v\nstderr:\n%s", sched.err, sched.stderr)
			default:
			}
			return served() == size
		})
		t.Logf("served head reached %d in %v", size, time.Since(start).Round(time.Millisecond))
	}
	follows(u.Size(), 90*time.Second)

	// The upstream grows; the schedule follows.
	if err := u.AddSynthetic(1500); err != nil {
		t.Fatal(err)
	}
	follows(u.Size(), 90*time.Second)

	// Hold the scheduled sync inside a run (it holds the lock there) by
	// stalling its data tile requests, then try a second syncer.
	blocked := make(chan struct{})
	release := make(chan struct{})
	var once, releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // before u.Close, which waits for handlers
	u.OnRequest(func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/tile/8/data/") {
			once.Do(func() { close(blocked) })
			<-release
		}
	})
	if err := u.AddSynthetic(600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocked:
	case <-time.After(90 * time.Second):
		t.Fatalf("the scheduled sync did not start fetching the new records within 90s\nstderr:\n%s", sched.stderr)
	}
	start := time.Now()
	code, stdout, stderr := runSumkeep(t, 30*time.Second, "sync", "--once", "--db", dsn, "--upstream", url, "--key", key)
	t.Logf("concurrent sync --once: exit %d after %v: %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))
	if code != 1 || !strings.Contains(stderr, "another sync holds the lock") {
		t.Errorf("concurrent sync --once: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1 and 'another sync holds the lock'", code, stdout, stderr)
	}
	releaseAll()
	u.OnRequest(nil)
	follows(u.Size(), 90*time.Second)

	// A scheduled sync stops cleanly on SIGTERM.
	sched.stop(t, 15*time.Second)
}

// TestHelp: 'sumkeep help CMD' and 'sumkeep CMD --help' say what the command
// does, not just its flags; and flags may follow the other arguments.
func TestHelp(t *testing.T) {
	none := map[string]string{}
	for _, c := range commands {
		for _, args := range [][]string{{"help", c.name}, {c.name, "--help"}} {
			code, stdout, stderr := runIn(t, none, args...)
			about := commandHelp[c.name].about
			if c.name == "verify" {
				about = verifyUsage
			}
			first, _, _ := strings.Cut(about, "\n")
			if code != 0 || stdout != "" || !strings.HasPrefix(stderr, "usage: sumkeep "+c.name) || first == "" || !strings.Contains(stderr, first) || !strings.Contains(stderr, "-db") {
				t.Errorf("sumkeep %q: exit %d, stdout %q, stderr:\n%s\nwant the usage of %s with what it does and its flags", args, code, stdout, stderr, c.name)
			}
		}
	}
	if code, _, stderr := runIn(t, none, "help", "frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("sumkeep help frobnicate: exit %d\n%s", code, stderr)
	}

	// Flags after file names are flags, not files; after "--", files.
	dir := t.TempDir()
	gosum := writeFile(t, dir, "go.sum", []byte("example.com/m v1.0.0 "+h1Of("m")+"\n"))
	code, _, stderr := runIn(t, none, "verify", gosum, "--format", "bogus")
	if code != 2 || !strings.Contains(stderr, `--format "bogus"`) {
		t.Errorf("verify FILE --format bogus: exit %d\n%s\nwant the --format value refused", code, stderr)
	}
	code, _, stderr = runIn(t, none, "verify", "--db", filepath.Join(dir, "none.db"), gosum, "--", "--format")
	if code != 2 || !strings.Contains(stderr, "none.db") {
		t.Errorf("verify FILE -- --format: exit %d\n%s", code, stderr)
	}
	code, _, stderr = runIn(t, none, "seed", gosum, "--concurrency", "0")
	if code != 2 || !strings.Contains(stderr, "--concurrency") {
		t.Errorf("seed FILE --concurrency 0: exit %d\n%s", code, stderr)
	}
}
