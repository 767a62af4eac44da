package verifier_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
	"github.com/sumkeep/sumkeep/verifier"
)

const logName = "sumdb.test"

// fixture is a hermetic upstream synced into a Postgres store.
type fixture struct {
	u   *sumdbtest.Upstream
	st  *postgres.Store
	dsn string
}

// newFixture starts an upstream with n synthetic records (plus extra
// records added by add, if not nil) and syncs it into a new Postgres store.
func newFixture(t testing.TB, n int, add func(u *sumdbtest.Upstream) error) *fixture {
	t.Helper()
	u, err := sumdbtest.NewSynthetic(logName, n)
	if err != nil {
		t.Fatal(err)
	}
	if add != nil {
		if err := add(u); err != nil {
			t.Fatal(err)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	dsn := pgtest.NewDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(u.URL(), nil), Key: u.VerifierKey(), Mode: mirror.ModeFull})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	return &fixture{u: u, st: st, dsn: dsn}
}

// goSum returns the go.sum lines of records ids: each record is exactly its
// module's two go.sum lines.
func (f *fixture) goSum(ids ...int64) []byte {
	var b bytes.Buffer
	for _, id := range ids {
		b.Write(f.u.Record(id))
	}
	return b.Bytes()
}

// lines returns the go.sum lines of record id.
func (f *fixture) lines(id int64) (h1, goMod string) {
	h1, goMod, _ = strings.Cut(strings.TrimSuffix(string(f.u.Record(id)), "\n"), "\n")
	return h1, goMod
}

// storeVerifier returns a verifier over the fixture's store.
func (f *fixture) storeVerifier(t testing.TB, p verifier.Policy) *verifier.Verifier {
	t.Helper()
	src, err := verifier.NewStoreSource(context.Background(), f.st, f.u.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	return &verifier.Verifier{Source: src, Policy: p}
}

// verify runs v over one file named go.sum.
func verify(t testing.TB, v *verifier.Verifier, gosum []byte) *verifier.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := v.Verify(ctx, []verifier.Input{{Name: "go.sum", Data: gosum}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// ids returns n record ids spread over [0, size).
func spread(size int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i) * size / int64(n)
	}
	return out
}

// resultAt returns the result for line of file.
func resultAt(t testing.TB, rep *verifier.Report, file string, line int) verifier.Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.File == file && r.Line == line {
			return r
		}
	}
	t.Fatalf("no result for %s:%d", file, line)
	return verifier.Result{}
}

// failures returns "FILE:LINE kind" of every failed line.
func failures(rep *verifier.Report) []string {
	var out []string
	for _, r := range rep.Results {
		if r.Status == verifier.StatusFailed {
			out = append(out, fmt.Sprintf("%s:%d %s", r.File, r.Line, r.Kind))
		}
	}
	return out
}

// countLines returns the number of lines in b.
func countLines(b []byte) int { return bytes.Count(b, []byte("\n")) }
