// Package backend opens the store a --db value names: Postgres for a
// postgres:// (or postgresql://) URL, otherwise the SQLite file at that path.
// It is the one package outside tests that names a backend; everything else
// holds a store.Store.
package backend

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

// ErrKeyValueDSN reports a Postgres connection string in keyword=value form.
// It would otherwise be taken for a SQLite file path, created under that
// name, and its password printed in every message naming the file; the
// error does not repeat it.
var ErrKeyValueDSN = errors.New("--db looks like a keyword=value Postgres connection string (not repeated here: it may hold a password); give Postgres as a postgres:// URL, e.g. postgres://user:password@host:5432/database")

// ErrDSN reports a Postgres URL that does not parse. Its message does not
// repeat the URL, which may hold a password.
var ErrDSN = postgres.ErrDSN

// IsPostgres reports whether dsn names a Postgres database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// keyValueDSN matches a Postgres connection string in keyword=value form.
var keyValueDSN = regexp.MustCompile(`(?i)(^|\s)(host|hostaddr|port|dbname|user|password|passfile|sslmode|service)\s*=`)

func check(dsn string) error {
	if !IsPostgres(dsn) && keyValueDSN.MatchString(dsn) {
		return ErrKeyValueDSN
	}
	return nil
}

// Open opens the store dsn names, creating it if need be, and brings its
// schema up to date.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	if err := check(dsn); err != nil {
		return nil, err
	}
	if IsPostgres(dsn) {
		return postgres.Open(ctx, dsn)
	}
	return sqlite.Open(ctx, dsn)
}

// OpenReadOnly opens the existing store dsn names for reading only. It
// creates and migrates nothing. A store that is not there is an error
// wrapping fs.ErrNotExist; a database that is not a sumkeep store
// store.ErrNotStore; a schema of another version store.ErrSchemaVersion.
func OpenReadOnly(ctx context.Context, dsn string) (store.Store, error) {
	if err := check(dsn); err != nil {
		return nil, err
	}
	if IsPostgres(dsn) {
		return postgres.OpenReadOnly(ctx, dsn)
	}
	return sqlite.OpenReadOnly(ctx, dsn)
}

// ErrReplicaDSN reports a --db-read value that is not a postgres:// URL: a
// read replica is a Postgres hot standby.
// Its message does not repeat the value, which may hold a password.
var ErrReplicaDSN = errors.New("a read replica is a Postgres hot standby of --db: give it as a postgres:// URL")

// OpenReplica opens a read replica of a Postgres store (a hot standby) for
// serving: read-only, creating and migrating nothing. A replica that does
// not answer within openTimeout, or that has not replayed this sumkeep's
// schema yet, is no reason not to serve: it is returned all the same,
// connecting on first use, with the reason in waiting (reads fall back to
// the primary until it answers; see store/readreplica). Other failures (a
// bad URL, a refused login, a database that is not a sumkeep store) are
// returned as err.
func OpenReplica(ctx context.Context, dsn string, openTimeout time.Duration) (st store.Store, waiting, err error) {
	if !IsPostgres(dsn) {
		return nil, nil, ErrReplicaDSN
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	pg, err := postgres.OpenReadOnly(octx, dsn)
	cancel()
	if err == nil {
		return pg, nil, nil
	}
	if ctx.Err() != nil || !store.Unavailable(err) && !errors.Is(err, store.ErrSchemaVersion) {
		return nil, nil, err
	}
	pg, cerr := postgres.ConnectReadOnly(ctx, dsn)
	if cerr != nil {
		return nil, nil, cerr
	}
	return pg, err, nil
}

// OpenBundle opens an air-gap bundle (a SQLite file written by export)
// read-only: a bundle is hostile input, never migrated or written.
func OpenBundle(ctx context.Context, path string) (store.Store, error) {
	return sqlite.OpenReadOnly(ctx, path)
}

// OnThisMachine reports whether st is a database server on this machine
// (over a Unix socket or loopback), which shares its cores with the caller.
// An embedded store is not a server.
func OnThisMachine(st store.Store) bool {
	local, ok := st.(interface{ OnThisMachine() bool })
	return ok && local.OnThisMachine()
}
