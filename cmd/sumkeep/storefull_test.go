package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
)

// TestStoreCannotKeep: with a store that refuses to keep records (Postgres
// answering disk_full, as a full disk makes it, here from a trigger on the
// records table), a seed stops at the first refusal and says what to do
// instead of listing every module@version as not fetched; the mirror
// answers a lookup with a 404 that says the store, not the upstream,
// failed, and logs it as an error; and once the store takes writes again
// both go on from what is stored.
func TestStoreCannotKeep(t *testing.T) {
	w := newGoWorld(t, "example.com/alpha", "example.com/beta")
	u := w.log(t, 2000)
	u.Start()
	t.Cleanup(u.Close)
	key := u.VerifierKey()

	dsn := pgtest.NewDSN(t)
	if code, stdout, stderr := runSumkeep(t, 60*time.Second, "migrate", "--db", dsn); code != 0 {
		t.Fatalf("migrate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	ctx, conn := pgConn(t, dsn)
	if _, err := conn.Exec(ctx, `CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
		CREATE TRIGGER disk_full BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION disk_full()`); err != nil {
		t.Fatal(err)
	}

	var sum strings.Builder
	for _, s := range w.sums {
		sum.WriteString(s.Lines())
	}
	goSum := filepath.Join(t.TempDir(), "go.sum")
	if err := os.WriteFile(goSum, []byte(sum.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	seed := func() (int, string, string) {
		t.Helper()
		return runSumkeep(t, 60*time.Second, "seed", "--db", dsn, "--upstream", u.URL(), "--key", key, goSum)
	}
	code, stdout, stderr := seed()
	if code != 2 || !strings.Contains(stderr, "storing what was fetched and verified") ||
		!strings.Contains(stderr, "No space left on device") || !strings.Contains(stderr, "run seed again") {
		t.Fatalf("seed into a full store: exit %d, want 2 and the store's error with what to do\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stderr, "not fetched") {
		t.Errorf("seed into a full store listed module@versions as not fetched:\n%s", stderr)
	}

	srv, mirror := startServe(t, dsn, key, "--upstream", u.URL())
	_, out, code, _ := w.tidy(t, "", key, mirror, 0)
	if want := "server response: not found: the mirror fetched and verified it but could not store it"; code == 0 || !strings.Contains(out, want) {
		t.Fatalf("a lookup the store cannot keep: exit %d, want the go command to print %q:\n%s", code, want, out)
	}
	if want := `level=ERROR msg="storing a fetched record"`; !strings.Contains(srv.stderr.String(), want) {
		t.Errorf("the mirror did not log %s:\n%s", want, srv.stderr)
	}

	// The disk has room again.
	if _, err := conn.Exec(ctx, `DROP TRIGGER disk_full ON records`); err != nil {
		t.Fatal(err)
	}
	lines, out, code, _ := w.tidy(t, "", key, mirror, 0)
	if code != 0 || !slices.Equal(lines, w.want(0)) {
		t.Fatalf("the same lookup once the store takes writes: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
	}
	code, stdout, stderr = seed()
	if want := "1 fetched, 1 already present"; code != 0 || !strings.Contains(stdout, want) {
		t.Fatalf("seed once the store takes writes: exit %d, want %q\nstdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
	}
}

// TestStoreCannotBeMade: the commands that make or write the store, given
// a --db where no file can be made (here, under a file, as under a
// container's read-only root or another user's directory), exit 2 naming
// --db and what to do, not with the driver's error alone.
func TestStoreCannotBeMade(t *testing.T) {
	u := newUpstream(t, 300)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	goSum := filepath.Join(dir, "go.sum")
	for _, f := range []string{file, goSum} {
		if err := os.WriteFile(f, u.Record(7), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(file, "sumkeep.db")
	for _, args := range [][]string{
		{"sync", "--once"},
		{"seed", goSum},
		{"serve", "--listen", "127.0.0.1:0"},
		{"migrate"},
	} {
		args = append(args, "--db", db, "--upstream", u.URL(), "--key", u.VerifierKey())
		code, stdout, stderr := runIn(t, map[string]string{}, args...)
		if want := "--db " + db + ": the store cannot be made or written there"; code != 2 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "writable path") {
			t.Errorf("sumkeep %q: exit %d, want 2 and %q with what to do\nstdout:\n%s\nstderr:\n%s", args, code, want, stdout, stderr)
		}
	}
}
