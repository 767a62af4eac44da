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
