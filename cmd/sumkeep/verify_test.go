package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/realsum"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/server"
)

func h1Of(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "h1:" + base64.StdEncoding.EncodeToString(sum[:])
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyEnv is a hermetic environment for verify: no go env file, so the
// host's GOPRIVATE and the like do not matter.
func verifyEnv(kv ...string) map[string]string {
	env := map[string]string{"GOENV": "off"}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// flipHash changes the first character of the hash of a go.sum line.
func flipHash(line string) string {
	i := strings.Index(line, "h1:") + 3
	c := "A"
	if line[i] == 'A' {
		c = "B"
	}
	return line[:i] + c + line[i+1:]
}

// syncedUpstream returns an upstream with n records (and a toolchain
// record) synced into a new Postgres database, and the database's DSN.
func syncedUpstream(t *testing.T, n int) (*sumdbtest.Upstream, string) {
	t.Helper()
	u := newUpstream(t, n)
	if err := u.AddModule("golang.org/toolchain", "v0.0.1-go1.22.0.linux-amd64", h1Of("tz"), h1Of("tm")); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDSN(t)
	if code, _, stderr := runIn(t, verifyEnv(), "sync", "--once", "--db", dsn, "--upstream", u.URL(), "--key", u.VerifierKey()); code != 0 {
		t.Fatalf("sync: exit %d\n%s", code, stderr)
	}
	return u, dsn
}

// TestVerifyCLI checks the command's contract: exit statuses, the problem
// lines (FILE:LINE: module@version: reason), the formats, GitHub
// annotations, skipping and the usage and environment errors.
func TestVerifyCLI(t *testing.T) {
	u, dsn := syncedUpstream(t, 1200)
	key := u.VerifierKey()
	dir := t.TempDir()
	var good bytes.Buffer
	for id := int64(0); id < 1200; id += 3 {
		good.Write(u.Record(id))
	}
	tcID, _ := u.Lookup("golang.org/toolchain", "v0.0.1-go1.22.0.linux-amd64")
	good.Write(u.Record(tcID))
	goodSum := writeFile(t, dir, "go.sum", good.Bytes())
	goodLines := bytes.Count(good.Bytes(), []byte("\n"))

	// bad.sum: good lines around one line of each kind of problem.
	p5, v5, _ := u.Module(5)
	h1Line, _, _ := strings.Cut(string(u.Record(7)), "\n")
	_, modLine, _ := strings.Cut(strings.TrimSuffix(string(u.Record(8)), "\n"), "\n")
	bad := []struct{ line, want string }{
		{string(u.Record(1)), ""},
		{flipHash(h1Line), "h1 hash mismatch"},
		{flipHash(modLine), "go.mod hash mismatch"},
		{p5 + " " + missingVersion(v5) + " " + h1Of("v") + "\n", "not in the checksum database"},
		{"example.com/never/published v1.0.0 " + h1Of("m") + "\n", "not in the checksum database"},
		{"example.com/m v1.0.0\n", "malformed line: 2 fields"},
		{"example.com/m v1.0.0 h2:" + h1Of("x")[3:] + "\n", `unknown hash algorithm "h2"`},
		{string(u.Record(2)), ""},
	}
	var badData bytes.Buffer
	var wantProblems []string // "bad.sum:LINE: ...: reason"
	line := 1
	for _, b := range bad {
		if !strings.HasSuffix(b.line, "\n") {
			b.line += "\n"
		}
		badData.WriteString(b.line)
		if b.want != "" {
			wantProblems = append(wantProblems, fmt.Sprintf("%s:%d: ", filepath.Join(dir, "bad.sum"), line)+"\x00"+b.want)
		}
		line += strings.Count(b.line, "\n")
	}
	badSum := writeFile(t, dir, "bad.sum", badData.Bytes())
	env := verifyEnv()

	// Success.
	code, stdout, stderr := runIn(t, env, "verify", "--db", dsn, "--key", key, goodSum)
	wantSummary := fmt.Sprintf("ok: %d lines in 1 file: %d verified, 0 skipped, 0 failed (sumdb.test, signed tree %d)\n", goodLines, goodLines, u.Size())
	if code != 0 || stdout != wantSummary {
		t.Fatalf("verify go.sum: exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, stdout, wantSummary, stderr)
	}

	// Failure: one line per problem, in order, then the summary; exit 1.
	code, stdout, stderr = runIn(t, env, "verify", "--db", dsn, "--key", key, goodSum, badSum)
	out := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 1 || len(out) != len(wantProblems)+1 || !strings.Contains(stderr, "6 of") {
		t.Fatalf("verify bad.sum: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for i, w := range wantProblems {
		loc, reason, _ := strings.Cut(w, "\x00")
		if !strings.HasPrefix(out[i], loc) || !strings.Contains(out[i], reason) {
			t.Errorf("problem %d = %q, want %q…%q", i, out[i], loc, reason)
		}
	}
	if want := fmt.Sprintf("FAIL: %d lines in 2 files: %d verified, 0 skipped, 6 failed", goodLines+10, goodLines+4); !strings.HasPrefix(out[len(out)-1], want) {
		t.Errorf("summary = %q, want %q…", out[len(out)-1], want)
	}

	// JSON, to a file, configured by SUMKEEP_ variables.
	jsonOut := filepath.Join(dir, "report.json")
	code, stdout, _ = runIn(t, verifyEnv("SUMKEEP_FORMAT", "json", "SUMKEEP_DB", dsn, "SUMKEEP_KEY", key, "SUMKEEP_OUTPUT", jsonOut), "verify", badSum)
	data, _ := os.ReadFile(jsonOut)
	var doc struct {
		SchemaVersion int `json:"schema_version"`
		Summary       struct{ Failed int }
		Results       []struct {
			Line    int
			Status  string
			Kind    string
			Module  string
			Version string
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil || code != 1 || stdout != "" {
		t.Fatalf("json report: exit %d, stdout %q, %v\n%s", code, stdout, err, data)
	}
	kinds := []string{}
	for _, r := range doc.Results {
		kinds = append(kinds, fmt.Sprintf("%d:%s", r.Line, r.Kind))
	}
	wantKinds := []string{"1:", "2:", "3:hash-mismatch", "4:go-mod-hash-mismatch", "5:not-found", "6:not-found", "7:malformed", "8:unknown-algorithm", "9:", "10:"}
	if doc.SchemaVersion != 1 || doc.Summary.Failed != 6 || !slices.Equal(kinds, wantKinds) {
		t.Errorf("json: schema %d, failed %d, kinds %v; want %v", doc.SchemaVersion, doc.Summary.Failed, kinds, wantKinds)
	}

	// JUnit.
	code, stdout, _ = runIn(t, env, "verify", "--db", dsn, "--key", key, "--format", "junit", badSum)
	var ju struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(stdout), &ju); err != nil || code != 1 {
		t.Fatalf("junit: exit %d, %v\n%s", code, err, stdout)
	}
	if ju.Tests != 8 || ju.Failures != 6 || !strings.HasPrefix(ju.Suites[0].Cases[1].Failure.Message, badSum+":3: ") {
		t.Errorf("junit: %d tests, %d failures:\n%s", ju.Tests, ju.Failures, stdout)
	}

	// GitHub Actions: annotations on stderr (GitHub reads both streams);
	// standard output is exactly the report, in every format.
	code, stdout, stderr = runIn(t, verifyEnv("GITHUB_ACTIONS", "true"), "verify", "--db", dsn, "--key", key, badSum)
	ann := 0
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "::error file="+badSum+",line=") {
			ann++
		}
	}
	if code != 1 || ann != 6 || !strings.Contains(stderr, "::error file="+badSum+",line=3,") || !strings.Contains(stdout, "FAIL: 10 lines") || strings.Contains(stdout, "::error") {
		t.Errorf("GitHub annotations: exit %d, %d annotations on stderr:\n%s\nstdout:\n%s", code, ann, stderr, stdout)
	}
	code, stdout, stderr = runIn(t, verifyEnv("GITHUB_ACTIONS", "true"), "verify", "--db", dsn, "--key", key, badSum, "--format", "json") // flags after files too
	var ghaDoc struct {
		Summary struct{ Failed int }
	}
	if err := json.Unmarshal([]byte(stdout), &ghaDoc); code != 1 || err != nil || ghaDoc.Summary.Failed != 6 || !strings.Contains(stderr, "::error file=") {
		t.Errorf("--format json under GitHub Actions: exit %d, report does not parse (%v):\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	code, stdout, _ = runIn(t, verifyEnv("GITHUB_ACTIONS", "true"), "verify", "--db", dsn, "--key", key, "--format", "junit", badSum)
	if err := xml.Unmarshal([]byte(stdout), new(struct{})); code != 1 || err != nil || !strings.HasPrefix(stdout, "<?xml") {
		t.Errorf("--format junit under GitHub Actions: exit %d, report does not parse (%v):\n%s", code, err, stdout)
	}

	// Skipping, from the environment and from a go env file.
	private := writeFile(t, dir, "private.sum", []byte(string(u.Record(3))+
		"corp.example.com/app v1.0.0 "+h1Of("a")+"\ncorp.example.com/app v1.0.0/go.mod "+h1Of("b")+"\n"))
	code, stdout, stderr = runIn(t, verifyEnv("GONOSUMDB", "corp.example.com"), "verify", "--db", dsn, "--key", key, private)
	if code != 0 || !strings.Contains(stdout, "2 verified, 2 skipped, 0 failed") {
		t.Errorf("GONOSUMDB: exit %d\n%s%s", code, stdout, stderr)
	}
	goenv := writeFile(t, dir, "goenv", []byte("GOPRIVATE=*.example.com/app\n"))
	code, stdout, stderr = runIn(t, map[string]string{"GOENV": goenv}, "verify", "--db", dsn, "--key", key, private)
	if code != 0 || !strings.Contains(stdout, "2 verified, 2 skipped, 0 failed") {
		t.Errorf("GOPRIVATE from the go env file: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runIn(t, env, "verify", "--db", dsn, "--key", key, private)
	if code != 1 || !strings.Contains(stdout, "corp.example.com/app@v1.0.0: not in the checksum database") {
		t.Errorf("without GONOSUMDB: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = runIn(t, verifyEnv("GOSUMDB", "off"), "verify", "--db", dsn, "--key", key, goodSum)
	if code != 0 || !strings.Contains(stdout, "2 verified, "+fmt.Sprint(goodLines-2)+" skipped") || !strings.Contains(stderr, "GOSUMDB=off") {
		t.Errorf("GOSUMDB=off (the toolchain's 2 lines still verified): exit %d\n%s%s", code, stdout, stderr)
	}

	// Usage errors: exit 2.
	for _, args := range [][]string{
		{"verify", "--db", dsn},
		{"verify", "--db", dsn, "--mirror", "http://127.0.0.1:1", goodSum},
		{"verify", "--db", dsn, "--format", "xml", goodSum},
		{"verify", "--db", dsn, "--state", filepath.Join(dir, "s"), goodSum},
		{"verify", "--db", dsn, "--concurrency", "0", goodSum},
		{"verify", "--bogus", goodSum},
	} {
		if code, _, stderr := runIn(t, env, args...); code != 2 || !strings.Contains(stderr, "sumkeep verify") {
			t.Errorf("sumkeep %q: exit %d, want 2\n%s", args, code, stderr)
		}
	}
	if code, _, stderr := runIn(t, verifyEnv("SUMKEEP_DB", dsn), "verify", "--mirror", "http://127.0.0.1:1", goodSum); code != 2 || !strings.Contains(stderr, "mutually exclusive") {
		t.Errorf("SUMKEEP_DB with --mirror: exit %d\n%s", code, stderr)
	}

	// Environment errors: exit 2.
	_, otherKey, _ := note.GenerateKey(rand.Reader, u.Name())
	_, otherLog, _ := note.GenerateKey(rand.Reader, "other.test")
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--db", dsn, "--key", otherKey, goodSum}, "does not verify with the key"},
		{[]string{"--db", dsn, "--key", otherLog, goodSum}, `--key names the log other.test, but the store (--db) holds only "sumdb.test"`},
		{[]string{"--db", dsn, "--key", "not-a-key", goodSum}, "not-a-key"},
		{[]string{"--db", dsn, "--key", key, filepath.Join(dir, "missing.sum")}, "missing.sum"},
		{[]string{"--db", dsn, "--key", key, dir}, dir},
		{[]string{"--db", filepath.Join(dir, "no.db"), "--key", key, goodSum}, "no.db"},
		{[]string{"--db", "postgres://postgres@127.0.0.1:1/nope?sslmode=disable&connect_timeout=5", "--key", key, goodSum}, "127.0.0.1"},
	} {
		code, stdout, stderr := runIn(t, env, append([]string{"verify"}, tt.args...)...)
		if code != 2 || !strings.Contains(stderr, tt.msg) || stdout != "" {
			t.Errorf("sumkeep verify %q: exit %d, stdout %q\nstderr:\n%s\nwant exit 2 and %q", tt.args, code, stdout, stderr, tt.msg)
		}
	}

	// Through the binary, for main's exit status.
	for _, tt := range []struct {
		file string
		code int
	}{{goodSum, 0}, {badSum, 1}} {
		if code, stdout, stderr := runSumkeep(t, 30*time.Second, "verify", "--db", dsn, "--key", key, tt.file); code != tt.code {
			t.Errorf("binary sumkeep verify %s: exit %d, want %d\n%s%s", tt.file, code, tt.code, stdout, stderr)
		}
	}
}

// TestVerifyCLIMirror verifies through a sumkeep server over the store, and
// catches a log that forks between two runs.
func TestVerifyCLIMirror(t *testing.T) {
	u, dsn := syncedUpstream(t, 800)
	key := u.VerifierKey()
	dir := t.TempDir()
	var good bytes.Buffer
	for id := int64(0); id < 500; id += 5 {
		good.Write(u.Record(id))
	}
	goodSum := writeFile(t, dir, "go.sum", good.Bytes())

	srv := httptest.NewServer(server.New(server.Config{Store: openStore(t, dsn), Log: u.Name()}).Handler())
	t.Cleanup(srv.Close)
	state := filepath.Join(dir, "state", "latest")
	code, stdout, stderr := runIn(t, verifyEnv(), "verify", "--mirror", srv.URL, "--key", key, "--state", state, goodSum)
	if code != 0 || !strings.Contains(stdout, "200 verified") {
		t.Fatalf("verify --mirror: exit %d\n%s%s", code, stdout, stderr)
	}
	if data, err := os.ReadFile(state); err != nil || !bytes.Contains(data, []byte(fmt.Sprintf("\n%d\n", u.Size()))) {
		t.Fatalf("state file: %v\n%s", err, data)
	}
	// The default state file is under the user cache directory.
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache) // os.UserCacheDir reads the process environment
	code, _, stderr = runIn(t, verifyEnv(), "verify", "--mirror", srv.URL, "--key", key, goodSum)
	if _, err := os.Stat(filepath.Join(cache, "sumkeep", "verify", u.Name(), "latest")); code != 0 || err != nil {
		t.Errorf("default state file: exit %d, %v\n%s", code, err, stderr)
	}

	// The upstream's log forks: a run against it with the same state file
	// fails, and says why.
	if code, _, stderr := runIn(t, verifyEnv(), "verify", "--mirror", u.URL(), "--key", key, "--state", state, goodSum); code != 0 {
		t.Fatalf("verify --mirror upstream: exit %d\n%s", code, stderr)
	}
	fork, err := u.Fork(600)
	if err != nil {
		t.Fatal(err)
	}
	if err := fork.AddSynthetic(500); err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: fork})
	code, stdout, stderr = runIn(t, verifyEnv(), "verify", "--mirror", u.URL(), "--key", key, "--state", state, goodSum)
	if code != 1 || !strings.Contains(stdout, "fork of the log") || !strings.Contains(stderr, "SECURITY ERROR") {
		t.Errorf("verify --mirror after a fork: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// A wrong key is an environment error.
	_, otherKey, _ := note.GenerateKey(rand.Reader, u.Name())
	code, _, stderr = runIn(t, verifyEnv(), "verify", "--mirror", srv.URL, "--key", otherKey, "--state", filepath.Join(dir, "other"), goodSum)
	if code != 2 || !strings.Contains(stderr, "does not verify with the key") {
		t.Errorf("verify --mirror with another key: exit %d\n%s", code, stderr)
	}
}

// TestVerifyRealGoSum verifies a real project's go.sum (recorded
// sum.golang.org data, its real key: the default) with the sumkeep binary.
func TestVerifyRealGoSum(t *testing.T) {
	dsn := pgtest.NewDSN(t)
	st := openStore(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := realsum.Load(ctx, st, realsum.Name); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gosum := realsum.GoSum()
	file := writeFile(t, dir, "go.sum", gosum)
	lines := bytes.Count(gosum, []byte("\n"))

	// With and without the go env lookup (skipped when GONOSUMDB, GOPRIVATE
	// and GOSUMDB are all set). How long it takes is measured by make bench
	// (bench/realdata), never asserted here: the machines are shared.
	for _, extra := range [][]string{nil, {"GONOSUMDB=none.invalid", "GOPRIVATE=none.invalid", "GOSUMDB=sum.golang.org"}} {
		p := startSumkeepEnv(t, extra, "verify", "--db", dsn, file)
		code := p.wait(t, 5*time.Minute)
		if code != 0 || !strings.Contains(p.stdout.String(), fmt.Sprintf("ok: %d lines in 1 file: %d verified", lines, lines)) {
			t.Fatalf("sumkeep verify (real go.sum, env %v): exit %d\n%s%s", extra, code, p.stdout, p.stderr)
		}
	}

	// Altered lines are reported at their line.
	all := strings.SplitAfter(string(gosum), "\n")
	all[1000] = flipHash(all[1000])
	altered := writeFile(t, dir, "altered.sum", []byte(strings.Join(all, "")))
	code, stdout, _ := runIn(t, verifyEnv(), "verify", "--db", dsn, altered)
	if code != 1 || !strings.HasPrefix(stdout, altered+":1001: ") || !strings.Contains(stdout, "hash mismatch") {
		t.Errorf("altered real go.sum: exit %d\n%s", code, stdout)
	}
}

// TestVerifyCLISQLite verifies against the embedded SQLite store: the
// hermetic upstream's records, then the real go.sum.
func TestVerifyCLISQLite(t *testing.T) {
	u := newUpstream(t, 700)
	dir := t.TempDir()
	db := filepath.Join(dir, "sumkeep.db")
	if code, _, stderr := runIn(t, verifyEnv(), "sync", "--once", "--db", db, "--upstream", u.URL(), "--key", u.VerifierKey()); code != 0 {
		t.Fatalf("sync into SQLite: exit %d\n%s", code, stderr)
	}
	var good bytes.Buffer
	for id := int64(0); id < 700; id += 7 {
		good.Write(u.Record(id))
	}
	goodSum := writeFile(t, dir, "go.sum", good.Bytes())
	if code, stdout, stderr := runIn(t, verifyEnv(), "verify", "--db", db, "--key", u.VerifierKey(), goodSum); code != 0 || !strings.Contains(stdout, "200 verified") {
		t.Fatalf("verify against SQLite: exit %d\n%s%s", code, stdout, stderr)
	}
	h1Line, _, _ := strings.Cut(string(u.Record(3)), "\n")
	badSum := writeFile(t, dir, "bad.sum", append(good.Bytes(), flipHash(h1Line)+"\n"...))
	code, stdout, _ := runIn(t, verifyEnv(), "verify", "--db", db, "--key", u.VerifierKey(), badSum)
	if code != 1 || !strings.HasPrefix(stdout, badSum+":201: ") {
		t.Fatalf("verify a bad line against SQLite: exit %d\n%s", code, stdout)
	}

	// "-" is standard input, named so in the report, beside a file.
	bad := append(good.Bytes(), flipHash(h1Line)+"\n"...)
	code, stdout, stderr := runStdin(t, verifyEnv(), string(bad), "verify", "--db", db, "--key", u.VerifierKey(), goodSum, "-")
	if code != 1 || !strings.HasPrefix(stdout, "<standard input>:201: ") || !strings.Contains(stdout, "400 verified") {
		t.Fatalf("verify a bad line from standard input: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runStdin(t, verifyEnv(), string(bad), "verify", "--db", db, "--key", u.VerifierKey(), "-", "-"); code != 2 || !strings.Contains(stderr, "- is named twice") {
		t.Fatalf("verify - -: exit %d, want 2 saying - is named twice\n%s", code, stderr)
	}

	// The real go.sum against the real data in SQLite.
	realDB := filepath.Join(dir, "real.db")
	st, err := (&env{db: realDB}).openStore(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err = realsum.Load(ctx, st, realsum.Name)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, dir, "real.sum", realsum.GoSum())
	p := startSumkeep(t, "verify", "--db", realDB, file)
	if code := p.wait(t, 5*time.Minute); code != 0 {
		t.Fatalf("verify the real go.sum against SQLite: exit %d\n%s%s", code, p.stdout, p.stderr)
	}
}

// missingVersion returns a valid version of the same module as v that no
// synthetic upstream publishes: a pre-release of a higher minor version,
// before any +incompatible (which must stay last). Which synthetic module
// a test gets depends on how many upstreams the tests before it made.
func missingVersion(v string) string {
	v = strings.Replace(v, ".", ".9", 1)
	if base, ok := strings.CutSuffix(v, "+incompatible"); ok {
		return base + "-missing+incompatible"
	}
	return v + "-missing"
}
