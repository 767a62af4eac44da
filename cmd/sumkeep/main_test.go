package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

// sumkeepBin is the sumkeep binary built by TestMain.
var sumkeepBin string

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sumkeep-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	sumkeepBin = filepath.Join(dir, "sumkeep")
	build := exec.Command("go", "build", "-o", sumkeepBin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sumkeep: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// syncBuffer is an io.Writer safe for a subprocess's output copier and the
// test reading it at the same time.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// subprocessEnv is the environment for sumkeep subprocesses: the test's,
// without any SUMKEEP_ settings of the host, and with GOPROXY=off so that
// a command not told its upstream never looks for one on the network.
func subprocessEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SUMKEEP_") && !strings.HasPrefix(kv, "GOPROXY=") {
			env = append(env, kv)
		}
	}
	return append(env, "GOPROXY=off")
}

// proc is a sumkeep subprocess.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when Wait returned
	err            error         // Wait's result, valid after done
}

// startSumkeep starts the binary with args. The process is killed when the
// test ends if it is still running.
func startSumkeep(t *testing.T, args ...string) *proc {
	t.Helper()
	return startSumkeepEnv(t, nil, args...)
}

// startSumkeepEnv is startSumkeep with extra environment variables.
func startSumkeepEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(sumkeepBin, args...)
	p.cmd.Env = append(subprocessEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting sumkeep %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("sumkeep %s: still running 10s after SIGKILL", strings.Join(args, " "))
		}
	})
	return p
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 when it was killed by a signal). On timeout it kills the process
// and fails the test.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("sumkeep %s: did not exit within %v\nstdout:\n%s\nstderr:\n%s",
			strings.Join(p.cmd.Args[1:], " "), timeout, p.stdout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// signaled reports whether the exited process was killed by sig.
func (p *proc) signaled(sig syscall.Signal) bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// runSumkeep runs the binary to completion (bounded by timeout) and returns
// its exit code and output.
func runSumkeep(t *testing.T, timeout time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startSumkeep(t, args...)
	code = p.wait(t, timeout)
	return code, p.stdout.String(), p.stderr.String()
}

// mustSync runs "sumkeep sync --once" to completion and fails the test unless
// it succeeds.
func mustSync(t *testing.T, dsn, upstream, key string, extra ...string) {
	t.Helper()
	args := append([]string{"sync", "--once", "--db", dsn, "--upstream", upstream, "--key", key}, extra...)
	code, stdout, stderr := runSumkeep(t, 60*time.Second, args...)
	if code != 0 {
		t.Fatalf("sumkeep sync --once: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

var servingURL = regexp.MustCompile(`at (http://127\.0\.0\.1:[0-9]+)\n`)

// startServe starts "sumkeep serve" on a free loopback port and waits until
// /healthz answers 200. It returns the process and the server's URL.
func startServe(t *testing.T, dsn, key string, extra ...string) (*proc, string) {
	t.Helper()
	p := startSumkeep(t, append([]string{"serve", "--db", dsn, "--key", key, "--listen", "127.0.0.1:0"}, extra...)...)
	deadline := time.Now().Add(20 * time.Second)
	var url string
	for url == "" {
		if m := servingURL.FindStringSubmatch(p.stdout.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case <-p.done:
			t.Fatalf("sumkeep serve exited early: %v\nstdout:\n%s\nstderr:\n%s", p.err, p.stdout, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sumkeep serve did not print its URL within 20s\nstdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		}
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(url + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/healthz not 200 within 20s (last: %v)\nstderr:\n%s", url, err, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit, failing the test if the
// process does not exit 0 within timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("sumkeep %s exited before it was stopped: %v\nstderr:\n%s", strings.Join(p.cmd.Args[1:], " "), p.err, p.stderr)
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, timeout); code != 0 {
		t.Errorf("sumkeep %s: exit %d after SIGTERM\nstderr:\n%s", strings.Join(p.cmd.Args[1:], " "), code, p.stderr)
	}
}

// newUpstream returns a started hermetic upstream holding n synthetic
// records, closed when the test ends.
func newUpstream(t *testing.T, n int) *sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.NewSynthetic("sumdb.test", n)
	if err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// openStore opens the Postgres store at dsn for inspection, closed when the
// test ends.
func openStore(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// pgConn connects to the database dsn for a test's own queries, bounded by
// the context it returns; both end with the test.
func pgConn(t *testing.T, dsn string) (context.Context, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return ctx, conn
}

// waitFor polls cond every 50ms until it returns true or timeout passes,
// then fails the test with what() describing the last state.
func waitFor(t *testing.T, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, what())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// servedSize returns the size of the store's served head of log (0: none).
func servedSize(t *testing.T, st store.Store, log string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := st.ServedHead(ctx, log)
	if err != nil {
		if isNotFound(err) {
			return 0
		}
		t.Fatalf("reading served head: %v", err)
	}
	return h.Size
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// newDB returns a fresh, empty store location of the given kind: a Postgres
// URL, or a SQLite file path in the test's temporary directory.
func newDB(t *testing.T, kind string) string {
	t.Helper()
	if kind == "sqlite" {
		return filepath.Join(t.TempDir(), "sumkeep.db")
	}
	return pgtest.NewDSN(t)
}

// openDB opens the store at db (either kind) for inspection.
func openDB(t *testing.T, db string) store.Store {
	t.Helper()
	if strings.HasPrefix(db, "postgres://") {
		return openStore(t, db)
	}
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// execDB runs one SQL statement on the store at db behind its back (to
// forge data) and returns the number of rows it changed.
func execDB(t *testing.T, db, query string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if strings.HasPrefix(db, "postgres://") {
		tag, err := openStore(t, db).Pool().Exec(ctx, query, args...)
		if err != nil {
			t.Fatal(err)
		}
		return tag.RowsAffected()
	}
	sdb, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	res, err := sdb.ExecContext(ctx, query, args...)
	if err != nil {
		t.Fatal(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// forgeRecord flips a bit of the stored hashes of path@version behind the
// store's back and returns the number of records changed.
func forgeRecord(t *testing.T, db, path, version string) int64 {
	t.Helper()
	if strings.HasPrefix(db, "postgres://") {
		return execDB(t, db, `UPDATE records SET hashes = set_byte(hashes, 0, get_byte(hashes, 0) # 1)
			WHERE path = $1 AND version = $2`, path, version)
	}
	sdb, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var h []byte
	if err := sdb.QueryRow(`SELECT hashes FROM records WHERE path = ? AND version = ?`, path, version).Scan(&h); err != nil {
		t.Fatal(err)
	}
	h[0] ^= 1
	return execDB(t, db, `UPDATE records SET hashes = ? WHERE path = ? AND version = ?`, h, path, version)
}
