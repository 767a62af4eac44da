package verifier_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/verifier"
)

// FuzzMirrorState verifies, with --mirror against an honest server of a
// real log, a line of that log with the state file (the newest head seen
// before, kept between runs) holding arbitrary bytes. The seeds are the
// log's heads of 600 and 300 records, a head of another history signed
// with the same key (a fork), and a head of a larger tree of that fork.
// Whatever the bytes: a state file that is not a head signed with the key
// is refused (ErrBadState) before anything is asked; a signed head that is
// not the log's never lets the run pass clean (it fails, or reports the
// server's misbehaviour); and after a clean run the state file holds a
// head of the log.
func FuzzMirrorState(f *testing.F) {
	u, target := fuzzLog(f, "FuzzMirrorState")
	url := target.String()
	fork, err := u.Fork(300)
	if err != nil {
		f.Fatal(err)
	}
	if err := fork.AddSynthetic(400); err != nil {
		f.Fatal(err)
	}
	for _, h := range []func() ([]byte, error){
		func() ([]byte, error) { return u.SignedHeadAt(600) },
		func() ([]byte, error) { return u.SignedHeadAt(300) },
		func() ([]byte, error) { return fork.SignedHeadAt(500) },
		func() ([]byte, error) { return fork.SignedHeadAt(700) },
	} {
		b, err := h()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v, err := note.NewVerifier(u.VerifierKey())
	if err != nil {
		f.Fatal(err)
	}
	// isLog reports whether b is a head signed with the key, and whether
	// it is a head of the log.
	isLog := func(b []byte) (signed, ofLog bool) {
		n, err := note.Open(b, note.VerifierList(v))
		if err != nil {
			return false, false
		}
		tree, err := tlog.ParseTree([]byte(n.Text))
		if err != nil {
			return false, false
		}
		if tree.N > u.Size() {
			return true, false
		}
		h, err := tlog.TreeHash(tree.N, u.HashReader())
		return true, err == nil && h == tree.Hash
	}
	gosum := []verifier.Input{{Name: "go.sum", Data: u.Record(5)}}
	f.Fuzz(func(t *testing.T, state []byte) {
		file := filepath.Join(t.TempDir(), "latest")
		if err := os.WriteFile(file, state, 0o644); err != nil {
			t.Fatal(err)
		}
		signed, ofLog := isLog(state)
		src, err := verifier.NewMirrorSource(verifier.MirrorConfig{URL: url, Key: u.VerifierKey(), StateFile: file})
		if err != nil {
			if signed && len(state) > 0 {
				t.Fatalf("state %q, a head signed with the key: refused: %v", state, err)
			}
			return
		}
		rep, err := (&verifier.Verifier{Source: src}).Verify(context.Background(), gosum)
		clean := err == nil && rep.OK && len(src.SecurityErrors()) == 0
		if signed && !ofLog && clean {
			t.Fatalf("state %q, a signed head that is not the log's: the run passed clean (%+v)", state, rep.Summary)
		}
		if !clean {
			return
		}
		after, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, ofLog := isLog(after); !ofLog {
			t.Fatalf("state %q: after a clean run the state file holds %q, not a head of the log", state, after)
		}
	})
}
