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
