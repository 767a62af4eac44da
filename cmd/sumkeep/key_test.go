package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// newVerifierKey returns the verifier key of a new signing key for log name.
func newVerifierKey(t *testing.T, name string) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

// TestWrongKey: a wrong key is an environment error (exit 2) in every
// command, and a key naming another log says which logs the store holds.
func TestWrongKey(t *testing.T) {
	u := seedUpstream(t, "example.com/public")
	gosum := goSumOf(t, u, "example.com/public")
	dir := t.TempDir()
	db := filepath.Join(dir, "seeded.db")
	env := map[string]string{"GOENV": "off"}
	key, url := u.VerifierKey(), u.URL()
	sameName := newVerifierKey(t, u.Name()) // the same log name, another key
	otherLog := newVerifierKey(t, "other.example")

	if code, stdout, stderr := runIn(t, env, "seed", "--db", db, "--upstream", url, "--key", key, gosum); code != 0 {
		t.Fatalf("seed: exit %d\n%s%s", code, stdout, stderr)
	}
	bundle := filepath.Join(dir, "bundle.db")
	if code, stdout, stderr := runIn(t, env, "export", "--db", db, "--key", key, "--go-sum", gosum, "-o", bundle); code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}

	for _, tt := range []struct {
		name   string
		args   []string
		stderr string // a piece of the message
	}{
		{"seed into an empty store", []string{"seed", "--db", filepath.Join(dir, "empty.db"), "--upstream", url, "--key", sameName, gosum}, "not signed by that key at all"},
		{"seed into the seeded store", []string{"seed", "--db", db, "--upstream", url, "--key", sameName, gosum}, "not signed by --key"},
		{"import", []string{"import", "--db", filepath.Join(dir, "import.db"), "--key", sameName, bundle}, "not signed by --key"},
		{"import, another log", []string{"import", "--db", filepath.Join(dir, "import.db"), "--key", otherLog, bundle}, `--key names the log other.example, but bundle ` + bundle + ` holds only "sumdb.test"`},
		{"status", []string{"status", "--db", db, "--key", sameName}, "not signed by --key"},
		{"status, another log", []string{"status", "--db", db, "--key", otherLog}, `--key names the log other.example, but the store (--db) holds only "sumdb.test"`},
		{"verify", []string{"verify", "--db", db, "--key", sameName, gosum}, "not signed by --key"},
		{"verify, another log", []string{"verify", "--db", db, "--key", otherLog, gosum}, `--key names the log other.example, but the store (--db) holds only "sumdb.test"`},
		{"export, another log", []string{"export", "--db", db, "--key", otherLog, "--go-sum", gosum, "-o", filepath.Join(dir, "other.db")}, `holds only "sumdb.test"`},
	} {
		code, stdout, stderr := runIn(t, env, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.stderr) || strings.Contains(stdout, "1 failed") || strings.Contains(stderr, "sync the mirror first") {
			t.Errorf("%s: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 2 and %q", tt.name, code, stdout, stderr, tt.stderr)
		}
	}
	// The right key, given explicitly, is fine for status.
	if code, stdout, stderr := runIn(t, env, "status", "--db", db, "--key", key); code != 0 {
		t.Errorf("status with the right key: exit %d\n%s%s", code, stdout, stderr)
	}

	// A rejected import leaves nothing where there was nothing: neither a
	// store nor its directory. Here the bundle's record is altered.
	bad := filepath.Join(dir, "bad.db")
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := forgeRecord(t, bad, "example.com/public", "v1.0.0"); n != 1 {
		t.Fatalf("forged %d records", n)
	}
	for _, k := range []string{key, sameName} {
		target := filepath.Join(dir, "new", "dir", "sumkeep.db")
		code, _, stderr := runIn(t, env, "import", "--db", target, "--key", k, bad)
		if code == 0 {
			t.Fatalf("import of an altered bundle: exit 0\n%s", stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
			t.Errorf("a rejected import (exit %d) left %s behind (%v)\n%s", code, filepath.Join(dir, "new"), err, stderr)
		}
	}
	// An empty store's status names every way to fill it, import included.
	empty := filepath.Join(dir, "fresh.db")
	if code, _, stderr := runIn(t, env, "migrate", "--db", empty); code != 0 {
		t.Fatalf("migrate: exit %d\n%s", code, stderr)
	}
	if code, stdout, _ := runIn(t, env, "status", "--db", empty); code != 0 || !strings.Contains(stdout, "sumkeep import BUNDLE") {
		t.Errorf("status of an empty store: exit %d\n%s", code, stdout)
	}
}
