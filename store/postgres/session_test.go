package postgres

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sumkeep/sumkeep/internal/pgtest"
)

// TestPlainOnLoopback (issue 19): with no sslmode anywhere, a server on
// loopback is tried without TLS first; any sslmode, TLS key or service, a
// remote host, or PGSSLMODE leaves pgx's order (TLS first) alone.
func TestPlainOnLoopback(t *testing.T) {
	for _, c := range []struct {
		dsn       string
		env       map[string]string
		plainOnly bool // want the first try without TLS
	}{
		{dsn: "postgres://u@127.0.0.1:5432/db", plainOnly: true},
		{dsn: "postgres://u@localhost/db", plainOnly: true},
		{dsn: "host=127.0.0.1,::1 port=5432 user=u dbname=db", plainOnly: true},
		{dsn: "postgres://u@127.0.0.1/db?sslmode=prefer"},
		{dsn: "postgres://u@127.0.0.1/db?sslmode=require"},
		{dsn: "postgres://u@127.0.0.1/db?sslrootcert=/nonexistent/ca.pem&sslmode=prefer"},
		{dsn: "host=127.0.0.1 user=u sslmode=prefer"},
		{dsn: "host=127.0.0.1 user=u password='x sslmode=y'"},
		{dsn: "postgres://u@db.example.internal/db"},
		{dsn: "postgres://u@127.0.0.1,db.example.internal/db"},
		{dsn: "postgres://u@127.0.0.1/db", env: map[string]string{"PGSSLMODE": "prefer"}},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		cfg, err := pgconn.ParseConfig(c.dsn)
		if err != nil {
			if c.plainOnly {
				t.Fatalf("%s: %v", c.dsn, err)
			}
			continue
		}
		before := cfg.TLSConfig != nil
		plainOnLoopback(c.dsn, cfg)
		if c.plainOnly {
			if cfg.TLSConfig != nil {
				t.Errorf("%s: first try uses TLS, want plain", c.dsn)
			}
			// TLS stays as the fallback, for a server that requires it.
			tls := false
			for _, f := range cfg.Fallbacks {
				tls = tls || f.TLSConfig != nil
			}
			if !tls {
				t.Errorf("%s: no TLS fallback left", c.dsn)
			}
		} else if (cfg.TLSConfig != nil) != before {
			t.Errorf("%s (env %v): first try changed", c.dsn, c.env)
		}
		for k := range c.env {
			t.Setenv(k, "")
		}
	}
}

// TestSessionOnLoopback: a store opened on the test server with no sslmode
// in its connection string talks to it without TLS, and with the session
// settings that keep its plans on the indexes.
func TestSessionOnLoopback(t *testing.T) {
	u, err := url.Parse(pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("sslmode")
	u.RawQuery = q.Encode()
	t.Setenv("PGSSLMODE", "")
	for _, open := range []func(context.Context, string) (*Store, error){Open, OpenReadOnly} {
		s, err := open(context.Background(), u.String())
		if err != nil {
			t.Fatal(err)
		}
		var ssl bool
		var seqscan, jit, plan string
		err = s.pool.QueryRow(context.Background(), `SELECT ssl, current_setting('enable_seqscan'), current_setting('jit')
			FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &seqscan, &jit)
		if err == nil {
			// The records table has never been analyzed: only the
			// session settings keep an id range off a sequential scan.
			err = s.pool.QueryRow(context.Background(), `EXPLAIN (FORMAT JSON) `+recordRangeSQL, int16(1), int64(256), int64(512)).Scan(&plan)
		}
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ssl || seqscan != "off" || jit != "off" {
			t.Errorf("session: ssl %v, enable_seqscan %s, jit %s; want false, off, off", ssl, seqscan, jit)
		}
		if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "records_id") {
			t.Errorf("an id range of an unanalyzed table is not read through the BRIN index:\n%s", plan)
		}
	}
}
