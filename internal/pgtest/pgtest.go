// Package pgtest gives tests a fresh PostgreSQL database of their own.
//
// The server is found at $SUMKEEP_TEST_POSTGRES (default
// postgres://postgres@127.0.0.1:5432/postgres). When it cannot be reached the
// test is skipped, except under CI (CI=true), where Postgres tests must run
// and an unreachable server fails them.
//
// NewCluster gives a test a whole cluster of its own on another port
// (55433-55439), which it may pause, stop and start to play an outage, and
// Cluster.NewStandby a streaming replica of it on another port of the range.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultAdminDSN is the server tests use when SUMKEEP_TEST_POSTGRES is unset.
const DefaultAdminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminDSN returns the DSN of the maintenance database tests connect to.
func AdminDSN() string {
	if dsn := os.Getenv("SUMKEEP_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return DefaultAdminDSN
}

// NewDSN creates an empty database, drops it when the test ends, and returns
// its DSN.
func NewDSN(tb testing.TB) string {
	tb.Helper()
	dsn, drop, err := Create(context.Background(), "sumkeep_test")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("Postgres is required in CI: %v", err)
		}
		tb.Skipf("Postgres not available (set SUMKEEP_TEST_POSTGRES): %v", err)
	}
	tb.Cleanup(drop)
	return dsn
}

// Create makes an empty database whose name starts with prefix and returns
// its DSN and a function that drops it. Benchmarks use it directly.
func Create(ctx context.Context, prefix string) (dsn string, drop func(), err error) {
	admin := AdminDSN()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}
