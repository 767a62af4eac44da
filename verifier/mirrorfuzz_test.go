package verifier_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/verifier"
)

// FuzzMirrorLookup verifies, with --mirror, against a server that passes
// everything through to a real log except its lookups, which it answers
// with arbitrary bytes (the seeds are real answers). The go.sum verified is
// what the answer claims: its record text, if it has one. Whatever the
// bytes, a line verifies only if it is the log's own record of its
// module@version.
func FuzzMirrorLookup(f *testing.F) {
	u, target := fuzzLog(f, "FuzzMirrorLookup")
	var body atomic.Pointer[[]byte] // the lookup answer of the current input
	pass := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/lookup/") {
			w.Write(*body.Load())
			return
		}
		pass.ServeHTTP(w, r)
	}))
	f.Cleanup(srv.Close)
	for _, id := range []int64{0, 7, 300, 599} {
		rec, err := tlog.FormatRecord(id, u.Record(id))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(rec, u.SignedHead()...))
	}
	f.Add([]byte("7\nexample.com/m v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		_, text, _, err := tlog.ParseRecord(answer)
		if err != nil || len(text) == 0 {
			return // nothing claimed to verify
		}
		body.Store(&answer)
		v, _ := mirrorVerifier(t, srv.URL, u.VerifierKey(), "")
		rep, err := v.Verify(context.Background(), []verifier.Input{{Name: "go.sum", Data: text}})
		if err != nil || rep.Summary.Verified == 0 {
			return // refused: a head not signed with the key stops verify
		}
		path, version := store.RecordModule(text)
		id, ok := u.Lookup(path, version)
		if !ok || !bytes.Equal(text, u.Record(id)) {
			t.Fatalf("answer %q: %d lines of %q verified (%+v), which is not the log's record", answer, rep.Summary.Verified, text, rep.Summary)
		}
	})
}

// fuzzLog starts a log of 600 records signed with a key fixed by seed
// (the seeds' signed heads must verify in every fuzzing worker, each of
// which builds its own log), and returns it with its URL.
func fuzzLog(f *testing.F, seed string) (*sumdbtest.Upstream, *url.URL) {
	u, err := sumdbtest.NewFixedKey(logName, seed)
	if err != nil {
		f.Fatal(err)
	}
	if err := u.AddSynthetic(600); err != nil {
		f.Fatal(err)
	}
	target, err := url.Parse(u.Start())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(u.Close)
	return u, target
}
