package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
)

// secret is in every password and token TestSecretsNotPrinted hands to
// sumkeep; it must appear in nothing sumkeep prints or serves.
const secret = "s3cr3t"

// TestSecretsNotPrinted (issue 15): credentials in an upstream URL (also
// one found through GOPROXY, and one that cannot be reached, so that
// errors are printed) and passwords in Postgres connection strings (also
// one that does not parse) appear in no output of serve, sync, seed,
// status or verify: not on stdout, not in the logs on stderr, not in
// errors, evidence, the status page or a report.
func TestSecretsNotPrinted(t *testing.T) {
	u := newUpstream(t, 600)
	key, name := u.VerifierKey(), u.Name()
	host := strings.TrimPrefix(u.URL(), "http://")
	upstream := "http://user:" + secret + "-token@" + host // user and password
	tokenOnly := "http://tok-" + secret + "@" + host       // a token as the user name
	dead := "http://user:" + secret + "-token@127.0.0.1:1" // nothing listens on port 1
	goproxy := "http://user:proxy-" + secret + "@" + host
	deadProxy := "http://user:proxy-" + secret + "@127.0.0.1:1"
	// Trust authentication ignores the password, so the store works.
	dsn := withPassword(t, pgtest.NewDSN(t), "pg-"+secret)
	dir := t.TempDir()

	// check runs sumkeep with extra environment variables and fails the
	// test if the secret is in its output or its exit status is not code
	// (any non-zero one for -1).
	check := func(env []string, code int, args ...string) (stdout, stderr string) {
		t.Helper()
		p := startSumkeepEnv(t, env, args...)
		got := p.wait(t, 60*time.Second)
		stdout, stderr = p.stdout.String(), p.stderr.String()
		if got != code && (code != -1 || got == 0) {
			t.Errorf("sumkeep %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, got, code, stdout, stderr)
		}
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("sumkeep %q printed a secret:\nstdout:\n%s\nstderr:\n%s", args, stdout, stderr)
		}
		return stdout, stderr
	}

	// sync, with the credentials used (the upstream is reached) and with
	// an upstream that cannot be reached.
	check(nil, 0, "sync", "--once", "--mode", "full", "--db", dsn, "--upstream", upstream, "--key", key)
	check(nil, 0, "sync", "--once", "--db", filepath.Join(dir, "token.db"), "--upstream", tokenOnly, "--key", key)
	check(nil, 1, "sync", "--once", "--db", dsn, "--upstream", dead, "--key", key)
	check(nil, 0, "status", "--db", dsn)

	// Discovery through a GOPROXY with credentials: found and used, and
	// one that cannot be reached.
	check([]string{"GOPROXY=" + goproxy + ",direct"}, 0, "sync", "--once", "--db", filepath.Join(dir, "proxy.db"), "--key", key)
	// (An unreachable proxy is kept as down, never fatal at start: the run
	// fails, exit 1, for want of any head.)
	check([]string{"GOPROXY=" + deadProxy + ",direct"}, 1, "sync", "--once", "--db", filepath.Join(dir, "proxy.db"), "--key", key)

	// seed: fetched records, and failures to fetch.
	var sum strings.Builder
	for _, id := range []int64{5, 17, 300} {
		sum.Write(u.Record(id))
	}
	okSum := filepath.Join(dir, "ok.sum")
	if err := os.WriteFile(okSum, []byte(sum.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sum.WriteString("example.com/not/in/log v1.2.3 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	goSum := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(goSum, []byte(sum.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	lazyDB := filepath.Join(dir, "lazy.db")
	check(nil, 0, "seed", "--db", lazyDB, "--upstream", upstream, "--key", key, goSum)
	check(nil, -1, "seed", "--db", filepath.Join(dir, "dead.db"), "--upstream", dead, "--key", key, goSum)

	// verify against the store, and against a server named with
	// credentials (the report names the server), reachable or not.
	check(nil, 0, "verify", "--db", dsn, "--key", key, okSum)
	check(nil, 0, "verify", "--mirror", upstream, "--key", key, "--state", filepath.Join(dir, "state"), "--format", "json", okSum)
	check(nil, 2, "verify", "--mirror", dead, "--key", key, "--state", filepath.Join(dir, "state2"), okSum)

	// serve, fetching through an upstream with credentials, and through
	// one that cannot be reached; and through a GOPROXY with credentials,
	// reachable or not.
	for _, tt := range []struct {
		env      []string
		upstream []string
		module   int64
		status   int
	}{
		{nil, []string{"--upstream", upstream}, 42, http.StatusOK},
		{nil, []string{"--upstream", dead}, 43, -1},
		{[]string{"GOPROXY=" + deadProxy}, nil, 44, -1},
		{[]string{"GOPROXY=" + goproxy}, nil, 45, http.StatusOK},
	} {
		args := append([]string{"serve", "--db", lazyDB, "--key", key, "--mode", "lazy", "--listen", "127.0.0.1:0"}, tt.upstream...)
		p, mirror := startServeEnv(t, tt.env, args...)
		path, version, _ := u.Module(tt.module)
		ep, _ := module.EscapePath(path)
		for _, page := range []string{"/lookup/" + ep + "@" + version, "/", "/status.json", "/sumdb/" + name + "/supported"} {
			code, body := get(t, mirror+page)
			if strings.HasPrefix(page, "/lookup/") && tt.status > 0 && code != tt.status {
				t.Errorf("serve %q: GET %s: %d, want %d\n%s", tt.upstream, page, code, tt.status, body)
			}
			if strings.Contains(body, secret) {
				t.Errorf("serve %q: GET %s shows a secret:\n%s", tt.upstream, page, body)
			}
		}
		p.stop(t, 20*time.Second)
		if out := p.stdout.String() + p.stderr.String(); strings.Contains(out, secret) {
			t.Errorf("serve %q with env %q printed a secret:\n%s", tt.upstream, tt.env, out)
		}
	}

	// Evidence names the upstream that lied: in status, on the status
	// page.
	liar := newUpstream(t, 600)
	liar.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: 100})
	liarURL := "http://user:" + secret + "-token@" + strings.TrimPrefix(liar.URL(), "http://")
	liarDB := filepath.Join(dir, "liar.db")
	check(nil, 1, "sync", "--once", "--mode", "full", "--db", liarDB, "--upstream", liarURL, "--key", liar.VerifierKey())
	if stdout, _ := check(nil, 1, "status", "--db", liarDB); !strings.Contains(stdout, "EVIDENCE") {
		t.Errorf("status shows no evidence of the lie:\n%s", stdout)
	}
	p, mirror := startServeEnv(t, nil, "serve", "--db", liarDB, "--key", liar.VerifierKey(), "--listen", "127.0.0.1:0")
	for _, page := range []string{"/", "/status.json"} {
		if _, body := get(t, mirror+page); strings.Contains(body, secret) {
			t.Errorf("GET %s with evidence shows a secret:\n%s", page, body)
		}
	}
	p.stop(t, 20*time.Second)

	// Connection strings with passwords that do not parse, or whose
	// server cannot be reached.
	for _, db := range []string{
		"postgres://postgres:pg@" + secret + "@127.0.0.1:bad/db",
		"postgres://postgres:pg-" + secret + "@127.0.0.1:5432/db?connect_timeout=x",
		"postgres://postgres@127.0.0.1:5432/db?password=pg-" + secret + "&port=x",
		"postgres://postgres:pg-" + secret + "@127.0.0.1:1/db?connect_timeout=5",
	} {
		check(nil, 2, "status", "--db", db)
		check(nil, 2, "sync", "--once", "--db", db, "--upstream", upstream, "--key", key)
		check(nil, 2, "verify", "--db", db, "--key", key, goSum)
	}
	// One in keyword=value form, which would be taken for a file name.
	kv := filepath.Join(dir, "host=127.0.0.1") + " password=pg-" + secret + " dbname=x"
	check(nil, 2, "status", "--db", kv)
	check(nil, 2, "sync", "--once", "--db", kv, "--upstream", upstream, "--key", key)
	if matches, _ := filepath.Glob(filepath.Join(dir, "host=*")); len(matches) > 0 {
		t.Errorf("a keyword=value connection string was taken for a file name: %q", matches)
	}
}

// withPassword returns the Postgres URL dsn with its password set to pw.
func withPassword(t *testing.T, dsn, pw string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

// get fetches url and returns the status and body (status 0 when the
// request failed).
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// startServeEnv starts "sumkeep <args>" (a serve command listening on
// 127.0.0.1:0) with extra environment variables and waits until it
// prints its URL and /healthz answers 200.
func startServeEnv(t *testing.T, env []string, args ...string) (*proc, string) {
	t.Helper()
	p := startSumkeepEnv(t, env, args...)
	var mirror string
	waitFor(t, 20*time.Second, func() string {
		return fmt.Sprintf("sumkeep %q did not print its URL\nstdout:\n%s\nstderr:\n%s", args, p.stdout, p.stderr)
	}, func() bool {
		if m := servingURL.FindStringSubmatch(p.stdout.String()); m != nil {
			mirror = m[1]
			return true
		}
		select {
		case <-p.done:
			t.Fatalf("sumkeep %q exited early: %v\nstdout:\n%s\nstderr:\n%s", args, p.err, p.stdout, p.stderr)
		default:
		}
		return false
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, 20*time.Second, func() string { return mirror + "/healthz is not 200" }, func() bool {
		resp, err := hc.Get(mirror + "/healthz")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p, mirror
}
