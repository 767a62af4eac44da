package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCluster plays the outages other tests rely on: a paused cluster does
// not answer, a resumed one does, a stopped one refuses and a started one
// answers again.
func TestCluster(t *testing.T) {
	c := NewCluster(t)
	ping := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.DSN())
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	}
	if err := ping(30 * time.Second); err != nil {
		t.Fatalf("new cluster: %v", err)
	}
	c.Pause()
	if err := ping(time.Second); err == nil {
		t.Fatal("paused cluster answered")
	}
	c.Resume()
	if err := ping(30 * time.Second); err != nil {
		t.Fatalf("resumed cluster: %v", err)
	}
	c.Stop()
	if err := ping(30 * time.Second); err == nil {
		t.Fatal("stopped cluster answered")
	}
	c.Start()
	if err := ping(30 * time.Second); err != nil {
		t.Fatalf("restarted cluster: %v", err)
	}
}

// TestStandby makes a streaming replica of a cluster: it answers what the
// primary wrote once it has replayed it, not while its replay is paused,
// and refuses writes.
func TestStandby(t *testing.T) {
	p := NewCluster(t)
	s := p.NewStandby(t)
	if s.Port() == p.Port() {
		t.Fatalf("standby and primary share port %d", p.Port())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.exec("CREATE TABLE t (n int)"); err != nil {
		t.Fatal(err)
	}
	count := func() (int, error) {
		var n int
		err := queryRow(ctx, s.DSN(), "SELECT count(*) FROM t", &n)
		return n, err
	}
	s.CatchUp(p)
	if n, err := count(); err != nil || n != 0 {
		t.Fatalf("standby: count = %d, %v; want 0", n, err)
	}
	s.PauseReplay()
	if err := p.exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if n, err := count(); err != nil || n != 0 {
		t.Fatalf("standby with replay paused: count = %d, %v; want 0", n, err)
	}
	s.ResumeReplay()
	s.CatchUp(p)
	if n, err := count(); err != nil || n != 1 {
		t.Fatalf("standby caught up: count = %d, %v; want 1", n, err)
	}
	if err := s.exec("INSERT INTO t VALUES (2)"); err == nil {
		t.Fatal("the standby accepted a write")
	}
}
