package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
)

// TestStatusAfterFailedFullSync: a first full sync that fails before it
// stores a record leaves a log with a head and no record; status says so,
// not "0 stored on demand (lazy mode)".
func TestStatusAfterFailedFullSync(t *testing.T) {
	u := newUpstream(t, 700)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError, Prefix: "/tile/8/data/"})
	db := newDB(t, "sqlite")
	none := map[string]string{}
	code, stdout, stderr := runIn(t, none, "sync", "--once", "--mode", "full", "--db", db, "--upstream", u.URL(), "--key", u.VerifierKey())
	if code != 1 {
		t.Fatalf("full sync from an upstream refusing data tiles: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runIn(t, none, "status", "--db", db)
	if code != 0 || !strings.Contains(stdout, "records:      none stored yet") || strings.Contains(stdout, "stored on demand") {
		t.Errorf("status after a failed first full sync: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestStatusShowsBadSignature: an upstream whose signed heads do not verify
// leaves evidence that status shows, naming the upstream; the same lie
// again is counted, not kept again.
func TestStatusShowsBadSignature(t *testing.T) {
	u := newUpstream(t, 700)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature})
	db := newDB(t, "sqlite")
	none := map[string]string{}
	for i := range 3 {
		code, stdout, stderr := runIn(t, none, "sync", "--once", "--db", db, "--upstream", u.URL(), "--key", u.VerifierKey())
		if code != 1 || !strings.Contains(stderr, "does not verify") {
			t.Fatalf("sync #%d from an upstream with bad signatures: exit %d\nstdout:\n%s\nstderr:\n%s", i+1, code, stdout, stderr)
		}
	}
	code, stdout, stderr := runIn(t, none, "status", "--db", db)
	if code != 1 || !strings.Contains(stdout, "EVIDENCE "+store.EvidenceBadSig) || !strings.Contains(stdout, "(from "+u.URL()+")") ||
		!strings.Contains(stdout, "seen 3 times") || strings.Count(stdout, "EVIDENCE") != 1 {
		t.Errorf("status after three syncs refused for bad signatures: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	es, err := openDB(t, db).Evidence(context.Background(), u.Name())
	if err != nil || len(es) != 1 || es[0].Count != 3 {
		t.Errorf("evidence = %+v, %v; want one, seen three times", es, err)
	}
}
