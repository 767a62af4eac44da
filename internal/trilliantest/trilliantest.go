// Package trilliantest runs a real Trillian log server and log signer for
// tests and benchmarks: the binaries are built with the go command from the
// github.com/google/trillian version this module pins, cached per version,
// and run on PostgreSQL storage in a fresh database, on loopback ports.
//
// Building the binaries takes minutes on a small machine, so they are kept
// in $XDG_CACHE_HOME/sumkeep/trillian-VERSION (default ~/.cache/...; set
// SUMKEEP_TRILLIAN_CACHE to choose another directory) and built once: a
// file lock makes parallel test processes wait for the one that builds.
package trilliantest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sumkeep/sumkeep/internal/filelock"
	"github.com/sumkeep/sumkeep/internal/pgtest"
)

// Module is the Go module the binaries are built from.
const Module = "github.com/google/trillian"

// Binaries the package builds.
const (
	LogServer = "trillian_log_server"
	LogSigner = "trillian_log_signer"
)

// moduleInfo returns the pinned version of Trillian and the directory of its
// source in the module cache, as the go command reports them for the module
// the current directory belongs to.
func moduleInfo(ctx context.Context) (version, dir string, err error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", Module)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", "", fmt.Errorf("go list -m %s: %w", Module, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return "", "", fmt.Errorf("go list -m %s: unexpected output %q (is the module downloaded? run go mod download)", Module, out)
	}
	return f[0], f[1], nil
}

// CacheDir returns where the binaries of version are kept.
func CacheDir(version string) (string, error) {
	if d := os.Getenv("SUMKEEP_TRILLIAN_CACHE"); d != "" {
		return filepath.Join(d, "trillian-"+version), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for Trillian's binaries (set SUMKEEP_TRILLIAN_CACHE): %w", err)
	}
	return filepath.Join(base, "sumkeep", "trillian-"+version), nil
}

// Built describes the binaries.
type Built struct {
	Version string
	Dir     string        // holds LogServer and LogSigner
	Schema  string        // path of Trillian's PostgreSQL schema
	Took    time.Duration // how long building took; 0 when they were cached
}

// Build returns the binaries of the pinned Trillian version, building them
// into the cache directory first if they are not there. logw, if not nil,
// receives the go command's output.
func Build(ctx context.Context, logw io.Writer) (Built, error) {
	version, src, err := moduleInfo(ctx)
	if err != nil {
		return Built{}, err
	}
	b := Built{Version: version, Schema: filepath.Join(src, "storage", "postgresql", "schema", "storage.sql")}
	if _, err := os.Stat(b.Schema); err != nil {
		return b, fmt.Errorf("Trillian's PostgreSQL schema: %w", err)
	}
	b.Dir, err = CacheDir(version)
	if err != nil {
		return b, err
	}
	if complete(b.Dir) {
		return b, nil
	}
	if err := os.MkdirAll(filepath.Dir(b.Dir), 0o755); err != nil {
		return b, err
	}
	lock, err := os.OpenFile(b.Dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return b, err
	}
	defer lock.Close()
	if err := filelock.Lock(ctx, lock); err != nil {
		return b, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	if complete(b.Dir) { // another process built them while we waited
		return b, nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(b.Dir), filepath.Base(b.Dir)+".tmp-")
	if err != nil {
		return b, err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	args := []string{"install"}
	for _, name := range []string{LogServer, LogSigner} {
		args = append(args, Module+"/cmd/"+name+"@"+version)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = tmp // outside any module: pkg@version builds with Trillian's own go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=")
	if logw != nil {
		cmd.Stdout, cmd.Stderr = logw, logw
		fmt.Fprintf(logw, "building Trillian %s binaries into %s (once per version; takes minutes)\n", version, b.Dir)
	}
	var out strings.Builder
	if logw == nil {
		cmd.Stdout, cmd.Stderr = &out, &out
	}
	if err := cmd.Run(); err != nil {
		return b, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	os.RemoveAll(b.Dir) // a partial directory left by hand
	if err := os.Chmod(tmp, 0o755); err != nil {
		return b, err
	}
	if err := os.Rename(tmp, b.Dir); err != nil {
		return b, err
	}
	b.Took = time.Since(start)
	return b, nil
}

func complete(dir string) bool {
	for _, name := range []string{LogServer, LogSigner} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// buildOnce builds at most once per test process.
var buildOnce = sync.OnceValues(func() (Built, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	return Build(ctx, os.Stderr)
})

// Options adjust how a Trillian is started.
type Options struct {
	// SequencerInterval is the signer's --sequencer_interval (default 50ms).
	SequencerInterval time.Duration
	// BatchSize is the signer's --batch_size: leaves integrated per pass
	// (default 20000).
	BatchSize int
	// NoSigner starts the log server only; StartSigner starts the signer.
	NoSigner bool
}

// Trillian is a running log server (and signer) on a database of its own.
type Trillian struct {
	built  Built
	opts   Options
	dsn    string
	addr   string // log server's gRPC address
	logDir string

	mu     sync.Mutex
	server *proc
	signer *proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string // file with its output
}

// Start starts a log server (and, unless opts.NoSigner, a signer) on the
// database dsn, which must be empty: Trillian's schema is applied to it.
// logDir receives the processes' output. Close stops them.
func Start(ctx context.Context, b Built, dsn, logDir string, opts Options) (*Trillian, error) {
	if opts.SequencerInterval <= 0 {
		opts.SequencerInterval = 50 * time.Millisecond
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 20000
	}
	if err := applySchema(ctx, dsn, b.Schema); err != nil {
		return nil, err
	}
	t := &Trillian{built: b, opts: opts, dsn: dsn, logDir: logDir}
	if err := t.startServer(ctx); err != nil {
		return nil, err
	}
	if !opts.NoSigner {
		if err := t.StartSigner(ctx); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// New starts a Trillian for a test on a fresh database, stopped when the
// test ends. Under CI (CI=true) it never skips; elsewhere it skips when
// Postgres or the go command cannot provide what it needs.
func New(tb testing.TB, opts Options) *Trillian {
	tb.Helper()
	b, err := buildOnce()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("building Trillian's binaries: %v", err)
		}
		tb.Skipf("Trillian's binaries cannot be built here: %v", err)
	}
	dsn := pgtest.NewDSN(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t, err := Start(ctx, b, dsn, tb.TempDir(), opts)
	if err != nil {
		tb.Fatalf("starting Trillian: %v", err)
	}
	tb.Cleanup(func() {
		t.Close()
		if tb.Failed() {
			tb.Logf("%s", t.Logs())
		}
	})
	return t
}

// Addr returns the log server's gRPC address (host:port).
func (t *Trillian) Addr() string { return t.addr }

// DSN returns Trillian's database.
func (t *Trillian) DSN() string { return t.dsn }

// Version returns the Trillian version running.
func (t *Trillian) Version() string { return t.built.Version }

// Dial returns a gRPC connection to the log server.
func (t *Trillian) Dial() (*grpc.ClientConn, error) {
	return grpc.NewClient(t.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func applySchema(ctx context.Context, dsn, schema string) error {
	sql, err := os.ReadFile(schema)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to Trillian's database: %w", err)
	}
	defer conn.Close(context.Background())
	// With no arguments Exec uses the simple protocol, which runs the
	// whole file (several statements, PL/pgSQL bodies) at once.
	if _, err := conn.Exec(ctx, string(sql)); err != nil {
		return fmt.Errorf("applying %s: %w", schema, err)
	}
	return nil
}

// freePort returns a loopback address that was free a moment ago. A
// process that then fails to bind it is started again on another.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (t *Trillian) storageFlags() []string {
	return []string{"--storage_system=postgresql", "--quota_system=postgresql", "--postgresql_uri=" + t.dsn}
}

func (t *Trillian) startServer(ctx context.Context) error {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		rpc, err1 := freePort()
		web, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		args := append([]string{"--rpc_endpoint=" + rpc, "--http_endpoint=" + web}, t.storageFlags()...)
		p, err := t.spawn(LogServer, args)
		if err != nil {
			return err
		}
		t.addr = rpc
		err = t.waitServing(ctx, p)
		if err == nil {
			t.mu.Lock()
			t.server = p
			t.mu.Unlock()
			return nil
		}
		p.stop()
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("starting %s: %w", LogServer, lastErr)
}

// waitServing waits until the log server answers an RPC, or exits.
func (t *Trillian) waitServing(ctx context.Context, p *proc) error {
	conn, err := t.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	admin := trillian.NewTrillianAdminClient(conn)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := admin.ListTrees(cctx, &trillian.ListTreesRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before serving:\n%s", p.name, p.err, tail(p.log))
		case <-ctx.Done():
			return fmt.Errorf("%s is not serving at %s: %v (last error: %v)\n%s", p.name, t.addr, ctx.Err(), err, tail(p.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartSigner starts the log signer (if it is not running): it integrates
// the leaves added to every tree of the database.
func (t *Trillian) StartSigner(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.signer != nil {
		return nil
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		rpc, err1 := freePort()
		web, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		args := append([]string{"--rpc_endpoint=" + rpc, "--http_endpoint=" + web,
			"--force_master",
			"--sequencer_interval=" + t.opts.SequencerInterval.String(),
			fmt.Sprintf("--batch_size=%d", t.opts.BatchSize),
		}, t.storageFlags()...)
		p, err := t.spawn(LogSigner, args)
		if err != nil {
			return err
		}
		// The signer has no RPC to ask whether it runs: it is up once its
		// HTTP endpoint answers.
		if err = waitListening(ctx, p, web); err == nil {
			t.signer = p
			return nil
		}
		p.stop()
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("starting %s: %w", LogSigner, lastErr)
}

func waitListening(ctx context.Context, p *proc, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before listening on %s:\n%s", p.name, p.err, addr, tail(p.log))
		case <-ctx.Done():
			return fmt.Errorf("%s is not listening on %s: %v\n%s", p.name, addr, ctx.Err(), tail(p.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopSigner stops the log signer: leaves added from then on are held, not
// integrated, until StartSigner.
func (t *Trillian) StopSigner() {
	t.mu.Lock()
	p := t.signer
	t.signer = nil
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Close stops the processes.
func (t *Trillian) Close() {
	t.StopSigner()
	t.mu.Lock()
	p := t.server
	t.server = nil
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Logs returns the end of each process's output, for a failing test.
func (t *Trillian) Logs() string {
	var b strings.Builder
	entries, _ := os.ReadDir(t.logDir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log") {
			fmt.Fprintf(&b, "--- %s\n%s\n", e.Name(), tail(filepath.Join(t.logDir, e.Name())))
		}
	}
	return b.String()
}

var spawnSeq struct {
	sync.Mutex
	n int
}

func (t *Trillian) spawn(name string, args []string) (*proc, error) {
	spawnSeq.Lock()
	spawnSeq.n++
	n := spawnSeq.n
	spawnSeq.Unlock()
	logPath := filepath.Join(t.logDir, fmt.Sprintf("%s-%d.log", name, n))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(t.built.Dir, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to end, and kills it if it has not within 2s
// (Trillian's servers wait 5s and more for their RPCs to drain; their
// state is in the database, in transactions, so a kill loses nothing).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last lines of a file.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > 40 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
