package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/pgtest"
)

// getRetryAfter answers the status and Retry-After of GET url, failing the test if the
// request does not return within a generous bound.
func getRetryAfter(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: time.Minute}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// servingAt waits for serve to print its URL.
func servingAt(t *testing.T, p *proc) string {
	t.Helper()
	var url string
	waitFor(t, time.Minute, func() string {
		return fmt.Sprintf("serve printed no URL\nstdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
	}, func() bool {
		select {
		case <-p.done:
			t.Fatalf("serve exited: %v\nstdout:\n%s\nstderr:\n%s", p.err, p.stdout, p.stderr)
		default:
		}
		if m := servingURL.FindStringSubmatch(p.stdout.String()); m != nil {
			url = m[1]
		}
		return url != ""
	})
	return url
}

// TestServeWaitsForDatabase: serve starts while its database is down,
// answers 503 (readiness and lookups) and says it waits; when the database
// starts it migrates the schema, syncs and serves, without a restart.
func TestServeWaitsForDatabase(t *testing.T) {
	c := pgtest.NewCluster(t)
	u := newUpstream(t, 300)
	c.Stop()

	p := startSumkeep(t, "serve", "--db", c.DSN(), "--key", u.VerifierKey(), "--upstream", u.URL(),
		"--mode", "full", "--sync-schedule", "@every 1s", "--store-timeout", "2s", "--listen", "127.0.0.1:0")
	url := servingAt(t, p)
	path, version, _ := u.Module(7)
	ep, _ := module.EscapePath(path)
	ev, _ := module.EscapeVersion(version)
	lookup := url + "/lookup/" + ep + "@" + ev
	for _, u := range []string{url + "/readyz", url + "/healthz", lookup, url + "/latest"} {
		if code, retry := getRetryAfter(t, u); code != http.StatusServiceUnavailable || retry == "" {
			t.Errorf("GET %s with the database down: %d (Retry-After %q), want 503 with Retry-After", u, code, retry)
		}
	}
	if !strings.Contains(p.stderr.String(), "the database does not answer") {
		t.Errorf("serve does not say that it waits for the database:\n%s", p.stderr)
	}

	c.Start()
	waitFor(t, 2*time.Minute, func() string {
		code, _ := getRetryAfter(t, url+"/readyz")
		return fmt.Sprintf("/readyz %d after the database started\nstderr:\n%s", code, p.stderr)
	}, func() bool {
		code, _ := getRetryAfter(t, url+"/readyz")
		return code == http.StatusOK
	})
	if code, _ := getRetryAfter(t, lookup); code != http.StatusOK {
		t.Errorf("lookup after the database started: %d", code)
	}
	// Stopping does not wait on a database that answers nothing.
	c.Pause()
	defer c.Resume()
	p.stop(t, time.Minute)
}

// TestSyncStopsWhenDatabaseHangs: a sync whose database stops answering
// (paused mid-run) fails with an error saying so instead of waiting
// forever, and the next run completes once the database is back.
func TestSyncStopsWhenDatabaseHangs(t *testing.T) {
	c := pgtest.NewCluster(t)
	u := newUpstream(t, 3000)
	key, url := u.VerifierKey(), u.URL()

	// Pause the database when the sync asks the upstream for data tiles.
	paused := make(chan struct{})
	var once sync.Once
	u.OnRequest(func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/tile/8/data/") {
			once.Do(func() {
				c.Pause()
				close(paused)
			})
		}
	})
	p := startSumkeep(t, "sync", "--once", "--db", c.DSN(), "--upstream", url, "--key", key,
		"--mode", "full", "--store-timeout", "2s", "--batch", "1")
	<-paused
	u.OnRequest(nil)
	code := p.wait(t, 2*time.Minute)
	c.Resume()
	if code == 0 || !strings.Contains(p.stderr.String(), "the store did not answer within 2s") {
		t.Errorf("sync with the database paused: exit %d\nstderr:\n%s\nwant a failure saying the store did not answer", code, p.stderr)
	}
	mustSync(t, c.DSN(), url, key, "--mode", "full")
	st := openStore(t, c.DSN())
	if got := servedSize(t, st, u.Name()); got != u.Size() {
		t.Errorf("served head %d after the next run, want %d", got, u.Size())
	}
}
