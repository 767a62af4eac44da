package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
)

// sameLog returns a started Upstream holding u's log (same key and
// records), refusing data tiles as a proxy's /sumdb/ does.
func sameLog(t *testing.T, u *sumdbtest.Upstream) *sumdbtest.Upstream {
	t.Helper()
	c, err := u.Fork(u.Size())
	if err != nil {
		t.Fatal(err)
	}
	c.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	c.Start()
	t.Cleanup(c.Close)
	return c
}

// TestGoCommandUpstreams: a lazy mirror reading three upstreams of one log
// (one lying in each way in turn, one answering 503, one honest and slow)
// lets the real go command verify modules; the evidence names the liar.
// Then, with the fast honest upstream killed mid-run, the go command still
// verifies through the slow one.
func TestGoCommandUpstreams(t *testing.T) {
	w := newGoWorld(t, "example.com/alpha", "example.com/beta", "example.org/gamma")
	u := w.log(t, 2000)
	if err := u.AddSynthetic(500); err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Close)
	key, log := u.VerifierKey(), u.Name()
	u.SetLatency(30 * time.Millisecond)
	firstID, _ := u.Lookup(w.sums[0].Path, w.sums[0].Version)

	for _, tc := range []struct {
		name  string
		fault sumdbtest.Fault
		kind  string
	}{
		{"BadSignature", sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature}, store.EvidenceBadSig},
		{"FlipTileByte", sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 0, N: -1, Offset: 9}, store.EvidenceBadTile},
		{"AlterRecord", sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: firstID}, store.EvidenceBadRecord},
		{"WrongLookup", sumdbtest.Fault{Kind: sumdbtest.FaultWrongLookup}, store.EvidenceWrongAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The honest upstream answers far later than the liar even
			// on a busy machine, so the liar's answers arrive first and
			// the lie is met (with it at 30 ms, a liar starved of CPU
			// for that long was hedged, then outrun, and lied to no one:
			// no evidence, 2 runs in 16 under load).
			u.SetLatency(500 * time.Millisecond)
			defer u.SetLatency(30 * time.Millisecond)
			liar, failing := sameLog(t, u), sameLog(t, u)
			liar.SetFault(tc.fault)
			failing.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError})
			dsn := pgtest.NewDSN(t)
			srv, mirror := startServe(t, dsn, key, "--mode", "lazy", "--upstream", liar.URL()+","+failing.URL()+","+u.URL())
			lines, out, code, _ := w.tidy(t, "", key, mirror, 0, 1, 2)
			if code != 0 || !slices.Equal(lines, w.want(0, 1, 2)) {
				t.Fatalf("go mod tidy through three upstreams, one lying: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
			}
			st := openStore(t, dsn)
			es, err := st.Evidence(context.Background(), log)
			if err != nil {
				t.Fatal(err)
			}
			// Lookups in flight at once may each catch the liar before it
			// is quarantined: one row per object lied about.
			if len(es) == 0 {
				t.Fatalf("no evidence\nmirror stderr:\n%s", srv.stderr)
			}
			for _, e := range es {
				if e.Kind != tc.kind || e.Source != liar.URL() {
					t.Fatalf("evidence %+v, want only of kind %s from %s\nmirror stderr:\n%s", es, tc.kind, liar.URL(), srv.stderr)
				}
			}
			if !strings.Contains(srv.stderr.String(), "upstream quarantined") {
				t.Errorf("the mirror did not say it quarantined the liar:\n%s", srv.stderr)
			}
		})
	}

	// A captive portal in front of the first upstream answers every
	// request with its login page, or a broken proxy answers lookups with
	// a JSON error and status 200: the mirror asks the next upstream and
	// keeps no evidence (they are not lies), and the go command verifies
	// through the other; alone, the go command is told what came instead.
	for _, tc := range []struct {
		name, said, reason string
		fault              sumdbtest.Fault
		mode               string
	}{
		// Auto mode: its probe of a data tile meets the page too.
		{"CaptivePortal", "the answer is an HTML page", "the upstream's address answered an HTML page",
			sumdbtest.Fault{Kind: sumdbtest.FaultHTMLPage}, "auto"},
		// Lazy mode: the fault replaces broken's refusal of data tiles,
		// which auto mode would otherwise find served.
		{"BrokenProxy", "malformed answer", "the upstream's answer was not a checksum database answer (malformed)",
			sumdbtest.Fault{Kind: sumdbtest.FaultMalformed, Prefix: "/lookup/"}, "lazy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := sameLog(t, u)
			broken.SetFault(tc.fault)
			dsn := pgtest.NewDSN(t)
			srv, mirror := startServe(t, dsn, key, "--mode", tc.mode, "--upstream", broken.URL()+","+u.URL())
			lines, out, code, _ := w.tidy(t, "", key, mirror, 0, 1)
			if code != 0 || !slices.Equal(lines, w.want(0, 1)) {
				t.Fatalf("go mod tidy with it first: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
			}
			if es, err := openStore(t, dsn).Evidence(context.Background(), log); err != nil || len(es) != 0 {
				t.Errorf("evidence: %+v (%v), want none", es, err)
			}

			dsn = pgtest.NewDSN(t)
			srv, mirror = startServe(t, dsn, key, "--mode", tc.mode, "--upstream", broken.URL())
			_, out, code, _ = w.tidy(t, "", key, mirror, 2)
			if want := "server response: not found: " + tc.reason; code == 0 || !strings.Contains(out, want) {
				t.Fatalf("alone: exit %d, want the go command to print %q:\n%s\nmirror stderr:\n%s", code, want, out, srv.stderr)
			}
			if !strings.Contains(srv.stderr.String(), tc.said) {
				t.Errorf("the mirror did not say %q:\n%s", tc.said, srv.stderr)
			}
		})
	}

	t.Run("FastOneKilled", func(t *testing.T) {
		fast := sameLog(t, u)
		dsn := pgtest.NewDSN(t)
		srv, mirror := startServe(t, dsn, key, "--mode", "lazy", "--upstream", fast.URL()+","+u.URL())
		lines, out, code, _ := w.tidy(t, "", key, mirror, 0)
		if code != 0 || !slices.Equal(lines, w.want(0)) {
			t.Fatalf("before: exit %d\n%s\nmirror stderr:\n%s", code, out, srv.stderr)
		}
		fast.Close()
		u.ResetRequests()
		lines, out, code, _ = w.tidy(t, "", key, mirror, 0, 1, 2)
		if code != 0 || !slices.Equal(lines, w.want(0, 1, 2)) {
			t.Fatalf("with the fast upstream killed: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
		}
		if u.Requests("/lookup/") == 0 {
			t.Error("the remaining upstream answered no lookup")
		}
	})
}

// TestStatusUpstreams: status probes each upstream once and shows its
// state: one answering, one down.
func TestStatusUpstreams(t *testing.T) {
	u, err := sumdbtest.NewSynthetic("sumdb.test", 300)
	if err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Close)
	down := sameLog(t, u)
	down.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError})
	dsn := pgtest.NewDSN(t)
	mustSync(t, dsn, u.URL(), u.VerifierKey())
	code, stdout, stderr := runSumkeep(t, 60*time.Second, "status", "--db", dsn, "--key", u.VerifierKey(), "--upstream", u.URL()+","+down.URL())
	if code != 0 {
		t.Fatalf("status: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"healthy     " + u.URL() + ": answered in", "down        " + down.URL() + ": ", "503"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status does not say %q:\n%s", want, stdout)
		}
	}
}
