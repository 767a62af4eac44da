package verifier_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/realsum"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/verifier"
)

// realStore loads the recorded sum.golang.org fixture into a new Postgres
// store.
func realStore(tb testing.TB) *postgres.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, pgtest.NewDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if err := realsum.Load(ctx, st, realsum.Name); err != nil {
		tb.Fatal(err)
	}
	return st
}

func realVerifier(tb testing.TB, st *postgres.Store) *verifier.Verifier {
	tb.Helper()
	src, err := verifier.NewStoreSource(context.Background(), st, realsum.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return &verifier.Verifier{Source: src}
}

// TestRealGoSum verifies a real project's go.sum, untouched, against real
// sum.golang.org data signed with its real key; then the same go.sum with
// lines altered, each reported at its line with the right reason.
func TestRealGoSum(t *testing.T) {
	st := realStore(t)
	v := realVerifier(t, st)
	gosum := realsum.GoSum()
	start := time.Now()
	rep := verify(t, v, gosum)
	t.Logf("%d lines verified in %v", rep.Summary.Lines, time.Since(start))
	if !rep.OK || rep.Summary.Verified != rep.Summary.Lines || rep.Summary.Lines < 2000 {
		t.Fatalf("real go.sum: summary %+v, failures %v", rep.Summary, failures(rep))
	}
	head, err := realsum.Head()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Database.Tree.N != head.Size || rep.Database.Name != "sum.golang.org" {
		t.Errorf("database = %+v, want tree %d", rep.Database, head.Size)
	}

	// Alter lines in place: line numbers stay as in the real file.
	lines := strings.SplitAfter(string(gosum), "\n")
	alterAt := func(i int, f func(string) string) []byte {
		out := append([]string(nil), lines...)
		out[i] = f(out[i])
		return []byte(strings.Join(out, ""))
	}
	flip := func(l string) string {
		i := strings.Index(l, "h1:") + 3
		c := "A"
		if l[i] == 'A' {
			c = "B"
		}
		return l[:i] + c + l[i+1:]
	}
	find := func(from int, goMod bool) int {
		for i := from; i < len(lines); i++ {
			if strings.Contains(lines[i], "/go.mod ") == goMod {
				return i
			}
		}
		t.Fatal("no such line")
		return 0
	}
	h1At, modAt := find(len(lines)/3, false), find(len(lines)/2, true)
	nf := realsum.NotFound()[0]
	for _, tt := range []struct {
		name string
		line int // 0-based
		data []byte
		kind string
	}{
		{"ChangedH1", h1At, alterAt(h1At, flip), verifier.KindHashMismatch},
		{"ChangedGoMod", modAt, alterAt(modAt, flip), verifier.KindGoModMismatch},
		{"NotFound", 100, alterAt(100, func(string) string {
			return fmt.Sprintf("%s %s %s\n", nf.Path, nf.Version, h1("nope"))
		}), verifier.KindNotFound},
		{"Malformed", 7, alterAt(7, func(l string) string { return strings.Replace(l, " ", "  extra ", 1) }), verifier.KindMalformed},
		{"UnknownAlgorithm", 8, alterAt(8, func(l string) string { return strings.Replace(l, "h1:", "h9:", 1) }), verifier.KindUnknownAlgorithm},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := verify(t, v, tt.data)
			want := []string{fmt.Sprintf("go.sum:%d %s", tt.line+1, tt.kind)}
			if got := failures(rep); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("failures = %v, want %v", got, want)
			}
		})
	}

	// A real record altered in the database fails its proof.
	m := realsum.Modules()[500]
	execSQL(t, st, `UPDATE records SET hashes = set_byte(hashes, 0, get_byte(hashes, 0) # 1) WHERE path = $1 AND version = $2`, m.Path, m.Version)
	rep = verify(t, v, gosum)
	for _, r := range rep.Results {
		want := verifier.StatusVerified
		if r.Module == m.Path && r.Version == m.Version {
			want = verifier.StatusFailed
			if r.Kind != verifier.KindProofFailed {
				t.Errorf("go.sum:%d (%s@%s): %s, want proof-failed", r.Line, r.Module, r.Version, r.Kind)
			}
		}
		if r.Status != want {
			t.Errorf("go.sum:%d (%s@%s): %s %s, want %s", r.Line, r.Module, r.Version, r.Status, r.Message, want)
		}
	}
	if rep.Summary.Failed == 0 {
		t.Error("no line failed")
	}
}

// BenchmarkVerifyRealGoSum verifies the real go.sum (2,398 lines, 2,091
// records of a 72-million-record log) against Postgres: opening the source
// (reading and verifying the served head) and verifying every line.
func BenchmarkVerifyRealGoSum(b *testing.B) {
	st := realStore(b)
	gosum := realsum.GoSum()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(gosum)))
	for b.Loop() {
		src, err := verifier.NewStoreSource(ctx, st, realsum.Key)
		if err != nil {
			b.Fatal(err)
		}
		v := &verifier.Verifier{Source: src}
		rep, err := v.Verify(ctx, []verifier.Input{{Name: "go.sum", Data: gosum}})
		if err != nil || !rep.OK {
			b.Fatalf("%v %+v", err, rep.Summary)
		}
	}
	b.ReportMetric(float64(bytes.Count(gosum, []byte("\n"))), "lines/op")
}
