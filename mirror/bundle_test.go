package mirror_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
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

func mods(t *testing.T, u *sumdbtest.Upstream, ids ...int64) []module.Version {
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
	other, err := sumdbtest.New(logName)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.AddSynthetic(5000); err != nil {
		t.Fatal(err)
	}
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
