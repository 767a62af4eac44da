package mirror_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

// bundleCells are the cells FuzzBundleImport overwrites in a real bundle:
// a record's hashes and its path, a level-0 and a level-1 tile's hashes,
// and the newest head's note and root hash.
var bundleCells = []struct{ table, col, where string }{
	{"records", "hashes", "id = 5"},
	{"records", "path", "id = 5"},
	{"tiles", "hashes", "level = 0 AND idx = 0"},
	{"tiles", "hashes", "level = 1 AND idx = 0"},
	{"heads", "note", "size = (SELECT max(size) FROM heads)"},
	{"heads", "hash", "size = (SELECT max(size) FROM heads)"},
}

// FuzzBundleImport imports, into a fresh store each time, a real bundle
// (two records of a log of 600, with their tiles and heads) with one cell
// overwritten by arbitrary bytes: which picks the cell (see bundleCells).
// The seeds are each cell as exported and with one byte flipped. Whatever
// the bytes, the import is refused and the store left empty, or every head
// it holds is the log's and every record the log's own, provable under the
// served head from the stored tiles.
func FuzzBundleImport(f *testing.F) {
	u, real := fuzzLog(f, "FuzzBundleImport")
	ctx := context.Background()
	from, s := fuzzSyncer(f, real, u.VerifierKey(), mirror.ModeLazy)
	if _, err := s.Once(ctx); err != nil {
		f.Fatal(err)
	}
	ms := mods(f, u, 5, 300)
	for _, m := range ms {
		if err := s.Fetch(ctx, m.Path, m.Version); err != nil {
			f.Fatal(err)
		}
	}
	bundlePath := filepath.Join(f.TempDir(), "bundle.db")
	b, err := sqlite.Open(ctx, bundlePath)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := mirror.Export(ctx, from, u.VerifierKey(), ms, b); err != nil {
		f.Fatal(err)
	}
	b.Close()
	bundle, err := os.ReadFile(bundlePath)
	if err != nil {
		f.Fatal(err)
	}
	db, err := sql.Open("sqlite", bundlePath)
	if err != nil {
		f.Fatal(err)
	}
	for i, c := range bundleCells {
		var v []byte
		if err := db.QueryRow(`SELECT ` + c.col + ` FROM ` + c.table + ` WHERE ` + c.where).Scan(&v); err != nil {
			f.Fatalf("reading %s.%s where %s: %v", c.table, c.col, c.where, err)
		}
		f.Add(uint8(i), v)
		flipped := append([]byte{}, v...)
		flipped[len(flipped)/2] ^= 0x20
		f.Add(uint8(i), flipped)
	}
	db.Close()

	f.Fuzz(func(t *testing.T, which uint8, value []byte) {
		c := bundleCells[int(which)%len(bundleCells)]
		path := filepath.Join(t.TempDir(), "bundle.db")
		if err := os.WriteFile(path, bundle, 0o666); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		var arg any = value
		if c.col == "path" {
			arg = string(value)
		}
		_, err = db.Exec(`UPDATE `+c.table+` SET `+c.col+` = ? WHERE `+c.where, arg)
		db.Close()
		if err != nil {
			return // the schema refuses the value: no such bundle exists
		}
		input := fmt.Sprintf("%s.%s where %s = %q", c.table, c.col, c.where, value)
		b, err := sqlite.Open(ctx, path)
		if err != nil {
			return
		}
		defer b.Close()
		st, imp := fuzzSyncer(t, nil, u.VerifierKey(), mirror.ModeLazy)
		before := lazyState(t, st)
		if _, err := imp.Import(ctx, b, "fuzzed"); err != nil {
			if after := lazyState(t, st); after != before {
				t.Fatalf("%s: the import was refused (%v), but it changed the store:\n%s\n%s", input, err, before, after)
			}
			return
		}
		wantLogHeads(t, st, u, input)
		checkProvable(t, st, u)
	})
}
