package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

// seedUpstream returns a started hermetic upstream holding 300 synthetic
// records and then the modules named, each with made-up hashes.
func seedUpstream(t *testing.T, paths ...string) *sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.NewSynthetic("sumdb.test", 300)
	if err != nil {
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
	// verify against the bundle, with the private module checked: it
	// is not in the bundle, which says nothing of the log.
	code, stdout, stderr = runIn(t, map[string]string{"GOENV": "off"}, "verify", "--db", bundle, "--key", u.VerifierKey(), gosum)
	if want := private + "@v1.0.0: not in this store/bundle (tree "; code != 1 || !strings.Contains(stdout, want) || !strings.Contains(stdout, "it may still be in the log") {
		t.Errorf("verify against the bundle: exit %d\nstdout:\n%s\nwant %q…it may still be in the log\nstderr:\n%s", code, stdout, want, stderr)
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

// refusingUpstream serves u, except lookups of modules under three hosts:
// refused.example.com gets a module proxy's 403, host.example.com a 400
// "Go module host not permitted", down.example.com a 502.
func refusingUpstream(t *testing.T, u *sumdbtest.Upstream) string {
	t.Helper()
	h := u.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/lookup/refused.example.com/"):
			http.Error(w, "Go module path not permitted", http.StatusForbidden)
		case strings.HasPrefix(p, "/lookup/host.example.com/"):
			http.Error(w, "Go module host not permitted\x1b[31m", http.StatusBadRequest)
		case strings.HasPrefix(p, "/lookup/down.example.com/"):
			http.Error(w, "upstream connect error", http.StatusBadGateway)
		default:
			h.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSeedNamesWhatItDidNotFetch: seed names each module@version it did not
// fetch and why, on stderr and in --format json; a refusal is not "not in
// the log". And the mirror's 404 for such a lookup says why in its body,
// which the go command prints.
func TestSeedNamesWhatItDidNotFetch(t *testing.T) {
	u := seedUpstream(t, "example.com/public")
	url := refusingUpstream(t, u)
	gosum := goSumOf(t, u, "example.com/public", "example.com/absent", "refused.example.com/m", "host.example.com/m", "down.example.com/m")
	db := filepath.Join(t.TempDir(), "seed.db")
	args := []string{"seed", "--db", db, "--upstream", url, "--key", u.VerifierKey(), "--concurrency", "2", gosum}
	env := map[string]string{"GOENV": "off"}

	code, stdout, stderr := runIn(t, env, args...)
	want := "6 module@versions: 2 fetched, 0 already present, 1 not in the log, 2 refused by the upstream, 1 unreachable, 0 skipped (GONOSUMDB/GOPRIVATE), 0 failed"
	if code != 1 || !strings.Contains(stdout, want) {
		t.Errorf("seed: exit %d\nstdout:\n%s\nwant exit 1 and %q\nstderr:\n%s", code, stdout, want, stderr)
	}
	for _, w := range []string{
		"example.com/absent@v1.0.0: not fetched: not in the log: ",
		"refused.example.com/m@v1.0.0: not fetched: refused by the upstream: the upstream refused it: 403 Forbidden: Go module path not permitted\n",
		"host.example.com/m@v1.0.0: not fetched: refused by the upstream: the upstream refused it: 400 Bad Request: Go module host not permitted?[31m\n",
		"down.example.com/m@v1.0.0: not fetched: upstream unreachable: the upstream failed: 502 Bad Gateway: upstream connect error\n",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("seed's stderr lacks %q:\n%s", w, stderr)
		}
	}
	// The last line counts only what went wrong.
	if w := "sumkeep seed: 3 module@versions could not be fetched (listed above)\n"; !strings.HasSuffix(stderr, w) {
		t.Errorf("seed's stderr does not end with %q:\n%s", w, stderr)
	}

	code, stdout, stderr = runIn(t, env, append(args, "--format", "json")...)
	var doc struct {
		OK         bool
		Fetched    int
		Present    int
		NotInLog   int `json:"not_in_log"`
		Refused    int
		NotFetched []struct{ Module, Version, Kind, Reason string } `json:"not_fetched"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 1 || doc.OK || doc.Present != 2 || doc.NotInLog != 1 || doc.Refused != 2 {
		t.Fatalf("seed --format json: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	var kinds []string
	for _, f := range doc.NotFetched {
		kinds = append(kinds, f.Module+" "+f.Kind)
	}
	wantKinds := []string{"down.example.com/m unreachable", "example.com/absent not-in-log", "host.example.com/m refused", "refused.example.com/m refused"}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("not_fetched = %q, want %q", kinds, wantKinds)
	}

	// The mirror, fetching through, says why in its 404; verify --mirror
	// passes it on.
	_, mirror := startServe(t, db, u.VerifierKey(), "--upstream", url, "--mode", "lazy")
	code, stdout, stderr = runIn(t, env, "verify", "--mirror", mirror, "--state", filepath.Join(t.TempDir(), "state"), "--key", u.VerifierKey(), gosum)
	if want := "refused.example.com/m@v1.0.0: not in the checksum database as far as the server at " + mirror + " knows: it answered 404 Not Found: not found: the upstream refused it: 403 Forbidden: Go module path not permitted\n"; code != 1 || !strings.Contains(stdout, want) {
		t.Errorf("verify --mirror: exit %d\nstdout:\n%s\nwant %q\nstderr:\n%s", code, stdout, want, stderr)
	}
	for path, want := range map[string]string{
		"refused.example.com/m": "not found: the upstream refused it: 403 Forbidden: Go module path not permitted\n",
		"host.example.com/m":    "not found: the upstream refused it: 400 Bad Request: Go module host not permitted?[31m\n",
		"example.com/absent":    "not found: the upstream checksum database has no record of example.com/absent@v1.0.0",
		"down.example.com/m":    "not found: the upstream failed: 502 Bad Gateway: upstream connect error\n",
	} {
		resp, err := http.Get(mirror + "/lookup/" + path + "@v1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(string(body), want) || strings.Contains(string(body), url) {
			t.Errorf("mirror's lookup of %s: %d %q, want 404 %q (and no upstream URL)", path, resp.StatusCode, body, want)
		}
	}
}
