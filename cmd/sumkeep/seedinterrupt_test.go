package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
)

// TestSeedInterrupted: a seed stopped by SIGTERM while lookups are in
// flight exits 130, says how far it got and what to do, prints its summary
// of what it did (the JSON one says it was interrupted and not ok), keeps
// what it stored, and the same seed run again fetches only the rest.
func TestSeedInterrupted(t *testing.T) {
	u, err := sumdbtest.NewSynthetic("sumdb.test", 3000)
	if err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	// The first 10 lookups are answered; the others hang until the seed
	// gives up on them.
	var lookups atomic.Int64
	var block atomic.Bool
	block.Store(true)
	h := u.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/lookup/") && lookups.Add(1) > 10 && block.Load() {
			<-r.Context().Done()
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	key, log := u.VerifierKey(), u.Name()

	var sum strings.Builder
	for id := int64(0); id < 40; id++ {
		p, v, _ := u.Module(id * 70)
		fmt.Fprintf(&sum, "%s %s/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", p, v)
	}
	goSum := filepath.Join(t.TempDir(), "go.sum")
	if err := os.WriteFile(goSum, []byte(sum.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDSN(t)
	p := startSumkeep(t, "seed", "--format", "json", "--db", dsn, "--upstream", srv.URL, "--key", key, goSum)

	// Once the 10 answered are stored, interrupt.
	st := openStore(t, dsn)
	waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("the seed to store the 10 records answered\nstderr:\n%s", p.stderr) }, func() bool {
		ids, err := st.RecordIDs(context.Background(), log, -1, 100)
		return err == nil && len(ids) == 10
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t, 60*time.Second)
	stdout, stderr := p.stdout.String(), p.stderr.String()
	if want := "sumkeep seed: interrupted after 10 of 40 module@versions. What was stored stays: run seed again"; code != exitInterrupted || !strings.Contains(stderr, want) {
		t.Fatalf("interrupted seed: exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", code, exitInterrupted, want, stdout, stderr)
	}
	for _, want := range []string{`"ok": false`, `"interrupted": true`, `"fetched": 10,`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the interrupted seed's summary lacks %s:\n%s", want, stdout)
		}
	}
	if strings.Contains(stderr, "context canceled") {
		t.Errorf("the interrupted seed spoke of a cancelled context:\n%s", stderr)
	}

	block.Store(false)
	code, stdout, stderr = runSumkeep(t, 60*time.Second, "seed", "--db", dsn, "--upstream", srv.URL, "--key", key, goSum)
	if want := "30 fetched, 10 already present"; code != 0 || !strings.Contains(stdout, want) {
		t.Fatalf("seed run again: exit %d, want %q\nstdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
	}
}
