package main

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/internal/pgtest"
)

// TestReadOnlyCommands (issue 15): the commands that only read a store
// (verify, status, export's source) create nothing and change nothing. A
// path with no file, another application's SQLite file or a Postgres
// database without sumkeep's schema is an environment error (exit 2) that
// says so, and is left as it was.
func TestReadOnlyCommands(t *testing.T) {
	u := newUpstream(t, 300)
	key := u.VerifierKey()
	dir := t.TempDir()
	goSum := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(goSum, u.Record(7), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.db")
	commands := func(db string) [][]string {
		return [][]string{
			{"verify", "--db", db, "--key", key, goSum},
			{"status", "--db", db, "--key", key},
			{"export", "--db", db, "--key", key, "--go-sum", goSum, "-o", bundle},
		}
	}
	// exit2 runs args and fails the test unless it exits 2 with a message
	// holding want.
	exit2 := func(args []string, want string) {
		t.Helper()
		code, stdout, stderr := runIn(t, map[string]string{}, args...)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("sumkeep %q: exit %d, want 2 and a message with %q\nstdout:\n%s\nstderr:\n%s", args, code, want, stdout, stderr)
		}
		if _, err := os.Stat(bundle); err == nil {
			t.Errorf("sumkeep %q wrote the bundle", args)
			os.Remove(bundle)
		}
	}

	// No file there: nothing is created, not even the directory.
	for _, db := range []string{filepath.Join(dir, "typo.db"), filepath.Join(dir, "sub", "typo.db")} {
		for _, args := range commands(db) {
			exit2(args, "no sumkeep store there")
		}
		if _, err := os.Stat(db); err == nil {
			t.Errorf("%s was created", db)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); err == nil {
		t.Error("the directory of the missing store was created")
	}

	// Another application's SQLite file, and a file that is no database:
	// byte for byte as they were, with nothing beside them.
	other := filepath.Join(dir, "other.sqlite")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('keep me')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, bytes.Repeat([]byte("not a database\n"), 300), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{other, text} {
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range commands(path) {
			exit2(args, "not a sumkeep store")
			if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
				t.Errorf("sumkeep %q changed %s (%v)", args, filepath.Base(path), err)
				break
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 {
		t.Errorf("the directory holds %q, want only go.sum, notes.txt and other.sqlite", names)
	}

	// A Postgres database without sumkeep's schema: no table is made.
	dsn := pgtest.NewDSN(t)
	for _, args := range commands(dsn) {
		exit2(args, "run sumkeep migrate")
	}
	ctx, conn := pgConn(t, dsn)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the read-only commands made %d tables in an empty database", n)
	}

	// A store they read as before: status and export work on a migrated,
	// synced one (verify's own tests cover it).
	if code, stdout, stderr := runIn(t, map[string]string{}, "migrate", "--db", dsn); code != 0 {
		t.Fatalf("migrate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runIn(t, map[string]string{}, "status", "--db", dsn); code != 0 || !strings.Contains(stdout, "no log yet") {
		t.Errorf("status of an empty store: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	mustSync(t, dsn, u.URL(), key)
	if code, stdout, stderr := runIn(t, map[string]string{}, "export", "--db", dsn, "--key", key, "--go-sum", goSum, "-o", bundle); code != 0 {
		t.Errorf("export: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runIn(t, map[string]string{}, "verify", "--db", bundle, "--key", key, goSum); code != 0 {
		t.Errorf("verify of the bundle: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
