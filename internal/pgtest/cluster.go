package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster ports: a test's own cluster listens on one of these, never on the
// shared server's 5432.
const (
	clusterPortMin = 55433
	clusterPortMax = 55439
)

// Cluster is a PostgreSQL cluster of a test's own, on a port of its own, that
// the test may pause, stop and start to play an outage. It is removed when
// the test ends.
//
// It is made with the server's own initdb and pg_ctl (the newest under
// /usr/lib/postgresql/*/bin, or on PATH). Run as root (as CI does), they run
// as the postgres user, which owns the data directory.
type Cluster struct {
	tb   testing.TB
	bin  string // directory of initdb and pg_ctl
	dir  string // root of the cluster's files (data/, the socket, the log)
	data string
	port int
	user *user.User // the user the server runs as; nil: this process's

	lock *os.File // held for the cluster's lifetime: the port is taken

	mu     sync.Mutex
	paused []int // processes stopped by Pause
}

// NewCluster creates and starts a cluster of the test's own and returns it;
// it is stopped and removed when the test ends. Without PostgreSQL's server
// binaries the test is skipped, except under CI (CI=true), where it fails.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := newCluster(tb)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("a PostgreSQL cluster of the test's own is required in CI: %v", err)
		}
		tb.Skipf("cannot make a PostgreSQL cluster of the test's own: %v", err)
	}
	return c
}

func newCluster(tb testing.TB) (*Cluster, error) {
	c, err := prepare(tb)
	if err != nil {
		return nil, err
	}
	if out, err := c.run("initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "-D", c.data); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// wal_level replica and max_wal_senders 10 are the defaults, and
	// initdb's pg_hba.conf lets loopback replication connections in: a
	// standby (NewStandby) can be made of any cluster.
	conf := "listen_addresses = '127.0.0.1'\n" +
		"unix_socket_directories = '" + c.dir + "'\n" +
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" +
		"max_connections = 60\nshared_buffers = 16MB\n"
	if err := c.appendConf(conf); err != nil {
		return nil, err
	}
	return c, c.startOnFreePort()
}

// prepare makes the directory of a new cluster, removed when the test ends.
func prepare(tb testing.TB) (*Cluster, error) {
	bin, err := serverBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{tb: tb, bin: bin}
	if os.Geteuid() == 0 {
		// The server refuses to run as root.
		if c.user, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root, the cluster needs a postgres user: %w", err)
		}
	}
	// Not t.TempDir: its parent is private to this user, and the server may
	// run as another.
	if c.dir, err = os.MkdirTemp("", "sumkeep-pgtest-"); err != nil {
		return nil, err
	}
	tb.Cleanup(c.remove)
	if err := c.chown(c.dir); err != nil {
		return nil, err
	}
	c.data = filepath.Join(c.dir, "data")
	return c, nil
}

// appendConf appends settings to the cluster's postgresql.conf (a later
// line wins over an earlier one).
func (c *Cluster) appendConf(conf string) error {
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// startOnFreePort starts the cluster on a free port of the range. A lock
// file per port keeps concurrent test processes apart, and a port
// something else listens on fails the start, so the next one is tried.
func (c *Cluster) startOnFreePort() error {
	var errs []error
	for port := clusterPortMin; port <= clusterPortMax; port++ {
		lock, err := lockPort(port)
		if err != nil {
			continue
		}
		c.port, c.lock = port, lock
		c.reclaim()
		if err = c.start(); err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("port %d: %w", port, err))
		c.lock.Close()
		c.lock, c.port = nil, 0
	}
	if len(errs) == 0 {
		return fmt.Errorf("every port in %d-%d is taken by another test", clusterPortMin, clusterPortMax)
	}
	return errors.Join(errs...)
}

// serverBin returns the directory holding the newest initdb.
func serverBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no initdb under /usr/lib/postgresql/*/bin or on PATH")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func lockPort(port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("sumkeep-pgtest-%d.lock", port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// reclaim stops and removes the cluster that a test process which died
// without cleaning up (killed at a timeout, say) left on the port whose
// lock c now holds, and records c's own files in the lock file instead.
func (c *Cluster) reclaim() {
	b, _ := io.ReadAll(c.lock)
	if old := strings.TrimSpace(string(b)); strings.HasPrefix(old, filepath.Join(os.TempDir(), "sumkeep-pgtest-")) && old != c.dir {
		if _, err := os.Stat(filepath.Join(old, "data", "postmaster.pid")); err == nil {
			c.run("pg_ctl", "stop", "-w", "-t", "60", "-m", "immediate", "-D", filepath.Join(old, "data"))
		}
		os.RemoveAll(old)
	}
	c.lock.Truncate(0)
	c.lock.WriteAt([]byte(c.dir+"\n"), 0)
}

// chown gives path to the user the server runs as.
func (c *Cluster) chown(path string) error {
	if c.user == nil {
		return nil
	}
	uid, _ := strconv.Atoi(c.user.Uid)
	gid, _ := strconv.Atoi(c.user.Gid)
	return os.Chown(path, uid, gid)
}

// run runs one of the server's programs as the user the server runs as.
func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if c.user != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.user.Username, "--", filepath.Join(c.bin, prog)}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...)
	}
	cmd.Dir = c.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// DSN returns the URL of the cluster's postgres database.
func (c *Cluster) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port returns the port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

func (c *Cluster) start() error {
	out, err := c.run("pg_ctl", "start", "-w", "-t", "60", "-D", c.data, "-l", filepath.Join(c.dir, "server.log"),
		"-o", "-p "+strconv.Itoa(c.port))
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, lastLines(log, 20))
	}
	return c.waitReady()
}

// waitReady waits until the server accepts queries.
func (c *Cluster) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster on port %d does not answer: %w", c.port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Start starts the stopped cluster and waits until it answers.
func (c *Cluster) Start() {
	c.tb.Helper()
	if err := c.start(); err != nil {
		c.tb.Fatal(err)
	}
}

// Stop stops the cluster (fast shutdown: sessions are ended).
func (c *Cluster) Stop() {
	c.tb.Helper()
	c.Resume()
	if out, err := c.run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", c.data); err != nil {
		c.tb.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Pause stops the server's processes with SIGSTOP, postmaster first: it
// then accepts TCP connections (the kernel does) but answers nothing, as a
// hung or swapped-out database does.
func (c *Cluster) Pause() {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused != nil {
		return
	}
	pid, err := c.postmaster()
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		c.tb.Fatalf("pausing postmaster %d: %v", pid, err)
	}
	c.paused = []int{pid}
	// kill returns before the postmaster stops: it may still be forking a
	// backend. Once it is stopped no new backend appears, and a scan
	// that finds no child it has not stopped has them all.
	if err := waitStopped(pid); err != nil {
		c.tb.Fatal(err)
	}
	stopped := map[int]bool{}
	for {
		more := false
		for _, child := range children(pid) {
			if stopped[child] {
				continue
			}
			more = true
			stopped[child] = true
			if syscall.Kill(child, syscall.SIGSTOP) == nil {
				c.paused = append(c.paused, child)
			}
		}
		if !more {
			break
		}
	}
	for _, child := range c.paused[1:] {
		waitStopped(child) // one that exited meanwhile is fine
	}
}

// waitStopped waits until process pid is in the stopped state (or has
// exited: a zombie, as its parent is stopped too).
func waitStopped(pid int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return fmt.Errorf("process %d: %w", pid, err)
		}
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 0 && strings.ContainsAny(f[0], "TtZX") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop within 30s of SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues the processes Pause stopped.
func (c *Cluster) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.paused) - 1; i >= 0; i-- {
		syscall.Kill(c.paused[i], syscall.SIGCONT)
	}
	c.paused = nil
}

// postmaster returns the server's process id, from postmaster.pid.
func (c *Cluster) postmaster() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("cluster on port %d is not running: %w", c.port, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("postmaster.pid: bad pid %q", first)
	}
	return pid, nil
}

// children lists the processes whose parent is pid, from /proc.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, n)
		}
	}
	return kids
}

// remove stops the cluster if it runs and deletes its files.
func (c *Cluster) remove() {
	c.Resume()
	if c.data != "" {
		if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err == nil {
			c.run("pg_ctl", "stop", "-w", "-t", "60", "-m", "immediate", "-D", c.data)
		}
	}
	if c.lock != nil {
		c.lock.Close()
	}
	os.RemoveAll(c.dir)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
