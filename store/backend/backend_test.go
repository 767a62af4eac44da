package backend_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store/backend"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Chdir(dir)

	// A keyword=value Postgres string is refused, and nothing is made
	// under its name.
	kv := "host=127.0.0.1 user=postgres password=pw-s3cr3t dbname=x"
	for _, open := range []func(context.Context, string) (any, error){
		func(ctx context.Context, d string) (any, error) { return backend.Open(ctx, d) },
		func(ctx context.Context, d string) (any, error) { return backend.OpenReadOnly(ctx, d) },
	} {
		if _, err := open(ctx, kv); !errors.Is(err, backend.ErrKeyValueDSN) {
			t.Errorf("open %q: %v, want ErrKeyValueDSN", kv, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused opens left %v", ents)
	}

	// SQLite: read-only needs a store; Open makes one.
	path := filepath.Join(dir, "sk.db")
	if _, err := backend.OpenReadOnly(ctx, path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only open of a missing file: %v", err)
	}
	st, err := backend.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if backend.OnThisMachine(st) {
		t.Error("an embedded store counts as a server on this machine")
	}
	st.Close()
	ro, err := backend.OpenBundle(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()

	// Postgres, by URL.
	dsn := pgtest.NewDSN(t)
	if !backend.IsPostgres(dsn) || backend.IsPostgres(path) {
		t.Fatalf("IsPostgres(%q) or IsPostgres(%q) is wrong", dsn, path)
	}
	pg, err := backend.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if !backend.OnThisMachine(pg) {
		t.Error("a Postgres server on 127.0.0.1 is not on this machine")
	}
}
