package mirror_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/upstream"
)

// offline returns a syncer with no upstream, as an air-gapped site runs.
func offline(t *testing.T, st store.Store, key string) *mirror.Syncer {
	t.Helper()
	s, err := mirror.New(mirror.Config{Store: st, Key: key, Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mods(t testing.TB, u *sumdbtest.Upstream, ids ...int64) []module.Version {
	t.Helper()
	var ms []module.Version
	for _, id := range ids {
		p, v, ok := u.Module(id)
		if !ok {
			t.Fatalf("no record %d", id)
		}
		ms = append(ms, module.Version{Path: p, Version: v})
	}
	return ms
}

// modsEvery returns the module@versions of u's records from, from+step,
// ... below to.
func modsEvery(t *testing.T, u *sumdbtest.Upstream, from, to, step int64) []module.Version {
	t.Helper()
	var ids []int64
	for id := from; id < to; id += step {
		ids = append(ids, id)
	}
	return mods(t, u, ids...)
}

// export writes a bundle, a SQLite file as sumkeep export writes it.
func export(t *testing.T, from store.Store, key string, ms []module.Version) store.Store {
	t.Helper()
	b, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "bundle.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	res, err := mirror.Export(context.Background(), from, key, ms, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Missing) != 0 {
		t.Fatalf("export: missing %v", res.Missing)
	}
	return b
}

// lazyState summarizes a lazily filled store, to see that it did not change.
func lazyState(t *testing.T, st store.Store) string {
	t.Helper()
	ctx := context.Background()
	s, err := st.State(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	heads, _ := st.Heads(ctx, logName)
	ids, _ := st.RecordIDs(ctx, logName, -1, 1<<20)
	var sizes []int64
	for _, h := range heads {
		sizes = append(sizes, h.Size)
	}
	return fmt.Sprintf("state %+v heads %v records %v", s, sizes, ids)
}

// TestBundles: bundles exported at two heads import into empty mirrors in
// either order, consistency proven both ways, and everything imported is
// provable under the served head from stored tiles.
func TestBundles(t *testing.T) {
	ctx := context.Background()
	u, a, s := newLazy(t, 70000)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	first := mods(t, u, 3, 256, 40000, 69999)
	for _, m := range first {
		if err := s.Fetch(ctx, m.Path, m.Version); err != nil {
			t.Fatal(err)
		}
	}
	b1 := export(t, a, u.VerifierKey(), first)

	if err := u.AddSynthetic(80000); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	second := mods(t, u, 70000, 149000)
	for _, m := range second {
		if err := s.Fetch(ctx, m.Path, m.Version); err != nil {
			t.Fatal(err)
		}
	}
	b2 := export(t, a, u.VerifierKey(), second)

	for _, order := range [][]store.Store{{b1, b2}, {b2, b1}} {
		c := newStore(t)
		imp := offline(t, c, u.VerifierKey())
		for i, b := range order {
			res, err := imp.Import(ctx, b, fmt.Sprintf("bundle%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if res.Served.Size != max(res.Bundle.Size, res.Served.Size) {
				t.Fatalf("import %d: %+v", i, res)
			}
			checkProvable(t, c, u)
		}
		if h, _ := c.ServedHead(ctx, logName); h.Size != 150000 {
			t.Fatalf("served head %d after both bundles", h.Size)
		}
		if n := checkProvable(t, c, u); n != len(first)+len(second) {
			t.Fatalf("%d records after both bundles, want %d", n, len(first)+len(second))
		}
		// Importing again changes nothing (but the generation: it counts
		// commits).
		before := lazyState(t, c)
		if _, err := imp.Import(ctx, order[0], "again"); err != nil {
			t.Fatal(err)
		}
		if after := lazyState(t, c); after[strings.Index(after, " heads"):] != before[strings.Index(before, " heads"):] {
			t.Fatalf("re-import changed the mirror:\n%s\n%s", before, after)
		}
	}
}

// TestBundleTampered: a bundle with an altered record, an altered tile, or
// a head signed by another key is rejected whole, and the mirror is left as
// it was.
func TestBundleTampered(t *testing.T) {
	ctx := context.Background()
	u, a, s := newLazy(t, 5000)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	ms := mods(t, u, 10, 4000)
	for _, m := range ms {
		if err := s.Fetch(ctx, m.Path, m.Version); err != nil {
			t.Fatal(err)
		}
	}
	// The mirror under attack already holds one record.
	c := newStore(t)
	imp := offline(t, c, u.VerifierKey())
	if _, err := imp.Import(ctx, export(t, a, u.VerifierKey(), ms[:1]), "good"); err != nil {
		t.Fatal(err)
	}
	before := lazyState(t, c)

	// A foreign log with the same name: its own key signed it.
	other := newLog(t, 5000)
	oo := newStore(t)
	os, err := mirror.New(mirror.Config{Store: oo, Upstream: upstream.NewClient(other.Start(), nil), Key: other.VerifierKey(), Mode: mirror.ModeLazy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	if _, err := os.Once(ctx); err != nil {
		t.Fatal(err)
	}
	om := mods(t, other, 10)
	if err := os.Fetch(ctx, om[0].Path, om[0].Version); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		bundle func() store.Store
		want   string
	}{
		{"AlteredRecord", func() store.Store {
			b := export(t, a, u.VerifierKey(), ms)
			flipByte(t, b, "records", "hashes", "id = 4000", 5)
			return b
		}, "record 4000"},
		{"AlteredTile", func() store.Store {
			b := export(t, a, u.VerifierKey(), ms)
			flipByte(t, b, "tiles", "hashes", "level = 0 AND idx = 15", 40)
			return b
		}, "inconsistent"},
		{"ForeignSignature", func() store.Store {
			return export(t, oo, other.VerifierKey(), om)
		}, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := imp.Import(ctx, tc.bundle(), tc.name)
			if err == nil || !strings.Contains(err.Error(), "rejected") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import: err = %v, want a rejection mentioning %q", err, tc.want)
			}
			if after := lazyState(t, c); after != before {
				t.Fatalf("a rejected bundle changed the mirror:\n%s\n%s", before, after)
			}
		})
	}
}

// flipByte inverts one byte of a blob column in a bundle behind its back.
func flipByte(t *testing.T, st store.Store, table, col, where string, off int) {
	t.Helper()
	db, err := sql.Open("sqlite", st.(*sqlite.Store).Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b []byte
	if err := db.QueryRow(`SELECT ` + col + ` FROM ` + table + ` WHERE ` + where).Scan(&b); err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	res, err := db.Exec(`UPDATE `+table+` SET `+col+` = ? WHERE `+where, b)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("flipped a byte in %d rows", n)
	}
}

// TestBundleHostileRows: a bundle with any row that a correct export does
// not write is rejected whole, with the reason, and the mirror it was
// imported into is left byte for byte (a SQLite file) or row for row (a
// Postgres database) as it was. Among them the two issue 15 found: a record
// whose id was set to -5 (imported with the record silently dropped) and a
// tile of width 0 (accepted).
func TestBundleHostileRows(t *testing.T) {
	ctx := context.Background()
	u, a, s := newLazy(t, 5000)
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	ms := mods(t, u, 10, 300, 4000)
	for _, m := range ms {
		if err := s.Fetch(ctx, m.Path, m.Version); err != nil {
			t.Fatal(err)
		}
	}
	key := u.VerifierKey()

	// Two mirrors under attack, each holding a bundle already.
	good := export(t, a, key, ms[:1])
	litePath := filepath.Join(t.TempDir(), "mirror.db")
	lite, err := sqlite.Open(ctx, litePath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := offline(t, lite, key).Import(ctx, good, "good"); err != nil {
		t.Fatal(err)
	}
	lite.Close()
	pg := newStore(t)
	if _, err := offline(t, pg, key).Import(ctx, good, "good"); err != nil {
		t.Fatal(err)
	}

	const records = `UPDATE records SET `
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		want  []string // in the message
	}{
		{"ShortHashes", records + `hashes = ? WHERE id = 300`, []any{[]byte{1, 2, 3}}, []string{"table records, row id 300", "3 bytes"}},
		{"LongHashes", records + `hashes = ? WHERE id = 300`, []any{make([]byte, 65)}, []string{"table records, row id 300", "65 bytes"}},
		{"EmptyHashes", records + `hashes = ? WHERE id = 300`, []any{[]byte{}}, []string{"table records, row id 300"}},
		{"NegativeID", records + `id = -5 WHERE id = 300`, nil, []string{"table records, row id -5", "negative"}},
		{"RawNotARecord", records + `hashes = NULL, raw = ? WHERE id = 300`, []any{[]byte("garbage\n")}, []string{"table records, row id 300"}},
		{"WrongKey", records + `key = key + 1 WHERE id = 300`, nil, []string{"table records, row id 300", "lookup key"}},
		{"DuplicateModule", `INSERT INTO records (log_id, id, key, path, version, hashes, raw)
			SELECT log_id, 299, key, path, version, hashes, raw FROM records WHERE id = 300`, nil, []string{"table records, row id 300", "record 299 too"}},
		{"RecordBeyondHead", records + `id = 5000 WHERE id = 4000`, nil, []string{"table records, row id 5000", "beyond"}},
		{"NoteDoesNotParse", `UPDATE heads SET note = ? WHERE size = 5000`, []any{[]byte("not a signed note")}, []string{"table heads, row size 5000"}},
		{"TileWidthZero", `UPDATE tiles SET width = 0 WHERE rowid = (SELECT min(rowid) FROM tiles)`, nil, []string{"table tiles", "width 0"}},
		{"UnusedTileWidthZero", `INSERT INTO tiles (log_id, level, idx, width, hashes) SELECT id, 1, 1, 0, x'' FROM logs`, nil, []string{"table tiles, row level 1 idx 1", "width 0"}},
		{"TileBeyondHead", `INSERT INTO tiles (log_id, level, idx, width, hashes) SELECT id, 2, 0, 1, zeroblob(32) FROM logs`, nil, []string{"table tiles, row level 2 idx 0", "beyond"}},
		{"Evidence", `INSERT INTO evidence (log_id, kind, message, created_at) SELECT id, 'fork', 'x', 0 FROM logs`, nil, []string{"evidence"}},
		{"SecondLog", `INSERT INTO logs (name) VALUES ('other.log')`, nil, []string{"2 logs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := export(t, a, key, ms).(*sqlite.Store).Path()
			execBundle(t, path, tc.query, tc.args...)
			bundle, err := sqlite.OpenReadOnly(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer bundle.Close()
			check := func(err error) {
				t.Helper()
				if !errors.Is(err, mirror.ErrBundleRejected) {
					t.Fatalf("import: err = %v, want a rejection", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("import: %v; want the reason, with %q", err, w)
					}
				}
			}

			before := readFile(t, litePath)
			lite, err := sqlite.Open(ctx, litePath)
			if err != nil {
				t.Fatal(err)
			}
			_, err = offline(t, lite, key).Import(ctx, bundle, tc.name)
			lite.Close()
			check(err)
			if after := readFile(t, litePath); !bytes.Equal(after, before) {
				t.Errorf("a rejected bundle changed the SQLite mirror's file")
			}

			before = []byte(dumpRows(t, pg))
			_, err = offline(t, pg, key).Import(ctx, bundle, tc.name)
			check(err)
			if after := dumpRows(t, pg); after != string(before) {
				t.Errorf("a rejected bundle changed the Postgres mirror:\n%s\n%s", before, after)
			}
		})
	}
}

// execBundle runs one statement on a bundle file behind its store's back;
// it must change one row.
func execBundle(t *testing.T, path, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s changed %d rows", query, n)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dumpRows prints every row of a Postgres store's tables.
func dumpRows(t *testing.T, st store.Store) string {
	t.Helper()
	pool := st.(*postgres.Store).Pool()
	var b strings.Builder
	for _, table := range []string{"logs", "heads", "tiles", "records", "evidence", "schema_migrations"} {
		rows, err := pool.Query(context.Background(), `SELECT r::text FROM `+table+` r ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:\n%s\n", table, strings.Join(lines, "\n"))
	}
	return b.String()
}
