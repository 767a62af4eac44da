package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/internal/realsum"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

// TestHostileBundleCLI: a bundle whose record row has a 3-byte hashes
// column (issue 15: a panic in import and in verify --db) is refused by
// both with the row named, and import leaves its target as it was.
func TestHostileBundleCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	goSum := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(goSum, realsum.GoSum(), 0o666); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src.db")
	st, err := sqlite.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := realsum.Load(ctx, st, realsum.Name); err != nil {
		t.Fatal(err)
	}
	st.Close()
	none := map[string]string{}
	bundle := filepath.Join(dir, "bundle.db")
	if code, stdout, stderr := runIn(t, none, "export", "--db", src, "--key", realsum.Key, "--go-sum", goSum, "-o", bundle); code != 0 {
		t.Fatalf("export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if n := execDB(t, bundle, `UPDATE records SET hashes = x'010203' WHERE id = (SELECT min(id) FROM records WHERE hashes IS NOT NULL)`); n != 1 {
		t.Fatalf("corrupted %d rows", n)
	}

	code, stdout, stderr := runIn(t, none, "verify", "--db", bundle, "--key", realsum.Key, goSum)
	if code == 0 || !strings.Contains(stdout+stderr, "table records") {
		t.Errorf("verify --db <bundle with a 3-byte hashes>: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	target := filepath.Join(dir, "mirror.db")
	if code, stdout, stderr := runIn(t, none, "migrate", "--db", target); code != 0 {
		t.Fatalf("migrate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	before, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runIn(t, none, "import", "--db", target, "--key", realsum.Key, bundle)
	if code != 1 || !strings.Contains(stderr, "rejected") || !strings.Contains(stderr, "table records") {
		t.Errorf("import <bundle with a 3-byte hashes>: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if after, err := os.ReadFile(target); err != nil || !bytes.Equal(after, before) {
		t.Errorf("a rejected import changed the mirror's file (%v)", err)
	}
}

// TestNotABundleCLI: a file that is not a bundle is named as such by
// import and verify --db (issue 15: "SQL logic error: no such table:
// records"), and left as it was.
func TestNotABundleCLI(t *testing.T) {
	dir := t.TempDir()
	goSum := filepath.Join(dir, "go.sum")
	data := []byte("example.com/m v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
	if err := os.WriteFile(goSum, data, 0o666); err != nil {
		t.Fatal(err)
	}
	none := map[string]string{}
	target := filepath.Join(dir, "mirror.db")
	for _, args := range [][]string{
		{"import", "--db", target, goSum},
		{"verify", "--db", goSum, goSum},
	} {
		code, stdout, stderr := runIn(t, none, args...)
		if code != 2 || !strings.Contains(stderr, goSum+" is not a sumkeep store or bundle") || strings.Contains(stderr, "no such table") {
			t.Errorf("sumkeep %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
		}
	}
	if got, err := os.ReadFile(goSum); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the go.sum was changed (%v)", err)
	}
}
