package verifier_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/verifier"
)

// mirrorVerifier returns a verifier asking the server at url.
func mirrorVerifier(t testing.TB, url, key, state string) (*verifier.Verifier, *verifier.MirrorSource) {
	t.Helper()
	src, err := verifier.NewMirrorSource(verifier.MirrorConfig{URL: url, Key: key, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	return &verifier.Verifier{Source: src}, src
}

// stateTree returns the tree of the signed head in a state file.
func stateTree(t testing.TB, state, key string) tlog.Tree {
	t.Helper()
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(data, note.VerifierList(v))
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestMirror verifies through a sumkeep server over the Postgres store, at
// the root and in the proxy form: good lines verify, bad ones fail as they
// do offline, and the verified head is kept in the state file.
func TestMirror(t *testing.T) {
	f := newFixture(t, 1500, nil)
	srv := httptest.NewServer(server.New(server.Config{Store: f.st, Log: logName}).Handler())
	t.Cleanup(srv.Close)
	good := f.goSum(spread(1500, 100)...)
	for _, base := range []string{srv.URL, srv.URL + "/sumdb/" + logName + "/"} {
		state := filepath.Join(t.TempDir(), "latest")
		v, _ := mirrorVerifier(t, base, f.u.VerifierKey(), state)
		rep := verify(t, v, good)
		if !rep.OK || rep.Summary.Verified != 200 {
			t.Fatalf("%s: summary %+v, failures %v", base, rep.Summary, failures(rep))
		}
		if db := rep.Database; db.Source != "mirror" || db.Tree != f.u.Tree() || db.Name != logName {
			t.Errorf("database = %+v, want tree %+v", db, f.u.Tree())
		}
		if got := stateTree(t, state, f.u.VerifierKey()); got != f.u.Tree() {
			t.Errorf("state file holds tree %+v, want %+v", got, f.u.Tree())
		}
	}

	v, _ := mirrorVerifier(t, srv.URL, f.u.VerifierKey(), "")
	for _, bl := range badLines(f) {
		rep := verify(t, v, append(append([]byte(nil), good...), bl.line+"\n"...))
		r := resultAt(t, rep, "go.sum", 201)
		if r.Kind != bl.kind || !strings.Contains(r.Message, bl.msg) || rep.Summary.Failed != 1 {
			t.Errorf("%s: go.sum:201 = %s %q, want %s %q; failures %v", bl.name, r.Kind, r.Message, bl.kind, bl.msg, failures(rep))
		}
	}
}

// TestMirrorFork runs the verifier twice against an upstream whose log
// forks in between (same key, another history): the second run must fail
// with a misbehaviour report, and keep the first run's head.
func TestMirrorFork(t *testing.T) {
	for _, tt := range []struct {
		name      string
		keep, add int
		splitView bool
		kind      string
	}{
		// The server's tiles for the first run's head do not hash to its
		// signed root.
		{"ForkLarger", 300, 400, false, verifier.KindMisbehaviour},
		// The fork is smaller than the head of the first run: the server
		// cannot even serve the tiles of that head.
		{"ForkSmaller", 300, 100, false, verifier.KindProofFailed},
		// A split view: the tiles of the first run's head as they were,
		// everything else from the fork, so the client links the old head
		// and then sees a signed head that does not contain it.
		{"SplitView", 300, 400, true, verifier.KindMisbehaviour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := sumdbtest.NewSynthetic(logName, 500)
			if err != nil {
				t.Fatal(err)
			}
			upstreamURL := u.Start()
			t.Cleanup(u.Close)
			gosum := []byte{}
			for _, id := range spread(int64(tt.keep), 30) {
				gosum = append(gosum, u.Record(id)...)
			}
			state := filepath.Join(t.TempDir(), "state", "latest")

			v, _ := mirrorVerifier(t, upstreamURL, u.VerifierKey(), state)
			if rep := verify(t, v, gosum); !rep.OK {
				t.Fatalf("first run: %v", failures(rep))
			}
			first, _ := os.ReadFile(state)

			fork, err := u.Fork(int64(tt.keep))
			if err != nil {
				t.Fatal(err)
			}
			if err := fork.AddSynthetic(tt.add); err != nil {
				t.Fatal(err)
			}
			url := upstreamURL
			if tt.splitView {
				old := tileSet(t, u.Tree())
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if old[strings.TrimPrefix(r.URL.Path, "/")] {
						u.Handler().ServeHTTP(w, r)
					} else {
						fork.Handler().ServeHTTP(w, r)
					}
				}))
				t.Cleanup(srv.Close)
				url = srv.URL
			} else {
				u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: fork})
			}

			v, src := mirrorVerifier(t, url, u.VerifierKey(), state)
			rep := verify(t, v, gosum)
			if rep.OK || rep.Summary.Failed != rep.Summary.Lines {
				t.Fatalf("second run, against the fork: summary %+v", rep.Summary)
			}
			for _, r := range rep.Results {
				if r.Kind != tt.kind {
					t.Fatalf("go.sum:%d: %s %q, want %s", r.Line, r.Kind, r.Message, tt.kind)
				}
			}
			t.Logf("go.sum:1: %s", rep.Results[0].Message)
			if sec := src.SecurityErrors(); tt.kind == verifier.KindMisbehaviour && (len(sec) == 0 || !strings.Contains(sec[0], "SECURITY ERROR")) {
				t.Errorf("security errors = %q", sec)
			} else if tt.splitView && !strings.Contains(sec[0], "misbehavior detected") {
				t.Errorf("split view: the client's consistency check did not report: %q", sec)
			}
			if now, _ := os.ReadFile(state); string(now) != string(first) {
				t.Errorf("the state file moved to the fork's head:\n%s", now)
			}

			// The fork on its own is consistent: a run without the first
			// run's head accepts it. The state file is what catches it.
			v, _ = mirrorVerifier(t, url, u.VerifierKey(), filepath.Join(t.TempDir(), "latest"))
			if rep := verify(t, v, gosum); !rep.OK {
				t.Fatalf("a fresh run against the fork: %v", failures(rep))
			}
		})
	}
}

// tileSet returns the paths of the tiles a client reads to authenticate
// tree.
func tileSet(t testing.TB, tree tlog.Tree) map[string]bool {
	t.Helper()
	rec := &recordingReader{paths: map[string]bool{}}
	if _, err := tlog.TileHashReader(tree, rec).ReadHashes(nil); err == nil {
		t.Fatal("recording reader read hashes")
	}
	return rec.paths
}

type recordingReader struct{ paths map[string]bool }

func (r *recordingReader) Height() int { return 8 }
func (r *recordingReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	for _, t := range tiles {
		r.paths[t.Path()] = true
	}
	return nil, errors.New("recorded")
}
func (r *recordingReader) SaveTiles([]tlog.Tile, [][]byte) {}

// TestMirrorErrors: a wrong key, an unreachable server and a bad state file
// are errors of the environment, not reports.
func TestMirrorErrors(t *testing.T) {
	u, err := sumdbtest.NewSynthetic(logName, 100)
	if err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	t.Cleanup(u.Close)
	ctx := context.Background()
	gosum := []verifier.Input{{Name: "go.sum", Data: u.Record(7)}}

	_, otherKey, _ := note.GenerateKey(rand.Reader, logName)
	v, _ := mirrorVerifier(t, url, otherKey, "")
	if _, err := v.Verify(ctx, gosum); !errors.Is(err, verifier.ErrHeadNotVerified) {
		t.Errorf("wrong key: err = %v, want ErrHeadNotVerified", err)
	}

	srv := httptest.NewServer(nil)
	dead := srv.URL
	srv.Close()
	v, _ = mirrorVerifier(t, dead, u.VerifierKey(), "")
	if _, err := v.Verify(ctx, gosum); err == nil || !strings.Contains(err.Error(), "reading from") {
		t.Errorf("unreachable server: err = %v", err)
	}

	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError, Prefix: "/tile/"})
	v, _ = mirrorVerifier(t, url, u.VerifierKey(), "")
	if _, err := v.Verify(ctx, gosum); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("server errors: err = %v", err)
	}
	u.SetFault(sumdbtest.Fault{})

	state := filepath.Join(t.TempDir(), "latest")
	os.WriteFile(state, []byte("go.sum database tree\n5\nAAAA\n"), 0o644)
	if _, err := verifier.NewMirrorSource(verifier.MirrorConfig{URL: url, Key: u.VerifierKey(), StateFile: state}); !errors.Is(err, verifier.ErrBadState) {
		t.Errorf("bad state file: err = %v, want ErrBadState", err)
	}
	if _, err := verifier.NewMirrorSource(verifier.MirrorConfig{URL: "ftp://x", Key: u.VerifierKey()}); err == nil {
		t.Error("an ftp:// URL was accepted")
	}
}

// TestMirrorLies: answers that do not verify fail as proof errors.
func TestMirrorLies(t *testing.T) {
	u, err := sumdbtest.NewSynthetic(logName, 600)
	if err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	t.Cleanup(u.Close)
	for _, fault := range []sumdbtest.Fault{
		{Kind: sumdbtest.FaultFlipTileByte, L: 0, N: -1, Offset: 100},
		{Kind: sumdbtest.FaultAlterRecord, ID: 7},
		{Kind: sumdbtest.FaultWrongLookup},
		{Kind: sumdbtest.FaultBadSignature},
	} {
		t.Run(fault.Kind.String(), func(t *testing.T) {
			u.SetFault(fault)
			defer u.SetFault(sumdbtest.Fault{})
			v, _ := mirrorVerifier(t, url, u.VerifierKey(), "")
			rep := verify(t, v, u.Record(7))
			if rep.Summary.Failed != 2 {
				t.Fatalf("summary %+v", rep.Summary)
			}
			for _, r := range rep.Results {
				if r.Kind != verifier.KindProofFailed {
					t.Errorf("go.sum:%d: %s %q, want proof-failed", r.Line, r.Kind, r.Message)
				}
			}
		})
	}
}
