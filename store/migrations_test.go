package store_test

import (
	"testing"
	"testing/fstest"

	"github.com/sumkeep/sumkeep/store"
)

func TestMigrations(t *testing.T) {
	fsys := fstest.MapFS{
		"s/0002_b.sql":  {Data: []byte("B")},
		"s/0010_c.sql":  {Data: []byte("C")},
		"s/0001_a.sql":  {Data: []byte("A")},
		"s/README.txt":  {Data: []byte("not a migration")},
		"other/9_x.sql": {Data: []byte("X")},
	}
	ms, err := store.Migrations(fsys, "s")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, m := range ms {
		got += m.Name + "=" + m.SQL + " "
	}
	if got != "0001_a.sql=A 0002_b.sql=B 0010_c.sql=C " {
		t.Errorf("migrations in order: %q", got)
	}
	for name, bad := range map[string]fstest.MapFS{
		"no number":    {"s/init.sql": {}},
		"zero":         {"s/0000_x.sql": {}},
		"same version": {"s/0001_a.sql": {}, "s/01_b.sql": {}},
		"empty":        {},
	} {
		if _, err := store.Migrations(bad, "s"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
