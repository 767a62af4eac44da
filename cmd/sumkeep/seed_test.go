package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

// seedUpstream returns a started hermetic upstream holding 300 synthetic
// records and then the modules named, each with made-up hashes.
func seedUpstream(t *testing.T, paths ...string) *sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.New("sumdb.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if err := u.AddModule(p, "v1.0.0", h1Of(p+" zip"), h1Of(p+" mod")); err != nil {
			t.Fatal(err)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// goSumOf writes a go.sum naming synthetic record 7 and the modules at
// v1.0.0, with the upstream's hashes.
func goSumOf(t *testing.T, u *sumdbtest.Upstream, paths ...string) string {
	t.Helper()
	var b strings.Builder
	b.Write(u.Record(7))
	for _, p := range paths {
		fmt.Fprintf(&b, "%s v1.0.0 %s\n%s v1.0.0/go.mod %s\n", p, h1Of(p+" zip"), p, h1Of(p+" mod"))
	}
	return writeFile(t, t.TempDir(), "go.sum", []byte(b.String()))
}

// goEnvFile returns a go env file (GOENV) holding GOPRIVATE=private, written
// by 'go env -w' as a user would.
func goEnvFile(t *testing.T, private string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "goenv")
	cmd := exec.Command("go", "env", "-w", "GOPRIVATE="+private)
	cmd.Env = append(os.Environ(), "GOENV="+file, "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go env -w: %v\n%s", err, out)
	}
	return file
}

// TestSeedExportGoEnvPolicy: seed and export honour GOPRIVATE set with
// 'go env -w', as verify and the go command do: a private module is never
// asked of the upstream, nor carried in a bundle.
func TestSeedExportGoEnvPolicy(t *testing.T) {
	const private = "corp.example.com/app"
	u := seedUpstream(t, private, "example.com/public")
	gosum := goSumOf(t, u, private, "example.com/public")
	goenv := goEnvFile(t, "corp.example.com")
	db := filepath.Join(t.TempDir(), "seed.db")
	common := []string{"--db", db, "--upstream", u.URL(), "--key", u.VerifierKey()}

	code, stdout, stderr := runIn(t, map[string]string{"GOENV": goenv}, append([]string{"seed", gosum}, common...)...)
	if code != 0 || !strings.Contains(stdout, "2 fetched") || !strings.Contains(stdout, "1 skipped (GONOSUMDB/GOPRIVATE)") {
		t.Fatalf("seed with GOPRIVATE from go env: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if n := u.Requests("/lookup/" + private); n != 0 {
		t.Fatalf("seed asked the upstream for the private module %d times (GOPRIVATE set with go env -w)", n)
	}

	// The store holds the private module too (seeded without the policy);
	// a bundle exported under the policy does not carry it.
	if code, stdout, stderr := runIn(t, map[string]string{"GOENV": "off"}, append([]string{"seed", gosum}, common...)...); code != 0 || !strings.Contains(stdout, "1 fetched") {
		t.Fatalf("seed without the policy: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.db")
	code, stdout, stderr = runIn(t, map[string]string{"GOENV": goenv}, "export", "--db", db, "--key", u.VerifierKey(), "--go-sum", gosum, "-o", bundle)
	if code != 0 || !strings.Contains(stdout, "2 records") || !strings.Contains(stdout, "1 skipped") {
		t.Fatalf("export with GOPRIVATE from go env: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	b, err := sqlite.OpenReadOnly(context.Background(), bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if r, err := b.Lookup(context.Background(), u.Name(), private, "v1.0.0", 1<<40); err == nil {
		t.Fatalf("the bundle carries the private module's record %d", r.ID)
	}
}
