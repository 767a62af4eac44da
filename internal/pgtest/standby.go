package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// NewStandby makes a hot standby of c, a streaming replica as a production
// read replica is made: pg_basebackup -R copies c's data directory over a
// replication connection and writes the standby's primary_conninfo, and the
// copy is started on another port of the range, where it answers read-only
// queries while it replays c's WAL. It is stopped and removed when the test
// ends. Outside CI the test is skipped when it cannot be made; under CI
// (CI=true) it fails.
//
// A standby is a Cluster: it can be paused, stopped and started like c,
// and PauseReplay, ResumeReplay and CatchUp control and follow its replay.
func (c *Cluster) NewStandby(tb testing.TB) *Cluster {
	tb.Helper()
	s, err := c.newStandby(tb)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("a hot standby of the test's own cluster is required in CI: %v", err)
		}
		tb.Skipf("cannot make a hot standby of the test's own cluster: %v", err)
	}
	return s
}

func (c *Cluster) newStandby(tb testing.TB) (*Cluster, error) {
	s, err := prepare(tb)
	if err != nil {
		return nil, err
	}
	// -X stream: the WAL written during the copy comes along, so the copy
	// is consistent on its own; --no-sync as the clusters run with fsync
	// off.
	if out, err := s.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(c.port), "-U", "postgres",
		"-D", s.data, "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"); err != nil {
		return nil, fmt.Errorf("pg_basebackup from port %d: %v\n%s", c.port, err, out)
	}
	// The copy holds the primary's postgresql.conf: its socket directory
	// is the primary's.
	if err := s.appendConf("unix_socket_directories = '" + s.dir + "'\nhot_standby = on\n"); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(s.data, "standby.signal")); err != nil {
		return nil, fmt.Errorf("pg_basebackup -R wrote no standby.signal: %w", err)
	}
	return s, s.startOnFreePort()
}

// exec runs one SQL statement on the cluster's postgres database.
func (c *Cluster) exec(sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// PauseReplay stops a standby from applying the WAL it receives
// (pg_wal_replay_pause): it keeps answering queries, from the data it had
// replayed, as a lagging replica does.
func (c *Cluster) PauseReplay() {
	c.tb.Helper()
	if err := c.exec("SELECT pg_wal_replay_pause()"); err != nil {
		c.tb.Fatalf("pausing replay on port %d: %v", c.port, err)
	}
}

// ResumeReplay lets a standby apply WAL again (pg_wal_replay_resume).
func (c *Cluster) ResumeReplay() {
	c.tb.Helper()
	if err := c.exec("SELECT pg_wal_replay_resume()"); err != nil {
		c.tb.Fatalf("resuming replay on port %d: %v", c.port, err)
	}
}

// CatchUp waits until standby c has replayed everything primary had written
// when CatchUp was called, failing the test if that takes more than two
// minutes. The target is the primary's WAL insert position, not its write
// position: the clusters commit asynchronously, so a commit may be in the
// WAL buffers still (the WAL writer flushes it, and the standby then
// receives it, within wal_writer_delay).
func (c *Cluster) CatchUp(primary *Cluster) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var target string
	if err := queryRow(ctx, primary.DSN(), "SELECT pg_current_wal_insert_lsn()::text", &target); err != nil {
		c.tb.Fatalf("reading the primary's WAL position: %v", err)
	}
	for {
		var done bool
		err := queryRow(ctx, c.DSN(), "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", &done, target)
		if err == nil && done {
			return
		}
		select {
		case <-ctx.Done():
			c.tb.Fatalf("standby on port %d did not replay up to %s within 2 minutes (last error: %v)", c.port, target, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func queryRow(ctx context.Context, dsn, sql string, dst any, args ...any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql, args...).Scan(dst)
}
