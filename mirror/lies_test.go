package mirror_test

// Tests that a lying upstream is refused: for every kind of lie, the sync
// fails with a message naming what was wrong, stores nothing of the lie,
// keeps the evidence, and the server goes on serving the last good state.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/storetest"
)

const (
	lieBase   = 1000 // records synced honestly first
	lieGrowth = 1500 // records the upstream adds before it lies
)

var ginQuiet sync.Once

// newServer returns the handler of a server over st serving logName at the
// root.
func newServer(t *testing.T, st store.Store) (*server.Server, http.Handler) {
	t.Helper()
	ginQuiet.Do(func() { gin.SetMode(gin.ReleaseMode) })
	srv := server.New(server.Config{Store: st, Log: logName})
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return srv, srv.Handler()
}

func get(h http.Handler, path string) (int, []byte) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Code, w.Body.Bytes()
}

// lookupURL returns the /lookup path for record id of u.
func lookupURL(t *testing.T, u *sumdbtest.Upstream, id int64) string {
	t.Helper()
	path, version, ok := u.Module(id)
	if !ok {
		t.Fatalf("record %d has no module", id)
	}
	ep, err := module.EscapePath(path)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := module.EscapeVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	return "/lookup/" + ep + "@" + ev
}

// goodState is what a store holds and a server answers after an honest sync.
type goodState struct {
	digest   string
	heads    []store.Head
	synced   int64
	served   store.Head
	answers  map[string][]byte // server path -> body
	newIDs   []int64           // ids of records beyond the served tree (not to be found)
	newPaths []string          // lookups of records beyond the served tree
}

// honest is an honestly synced store, its syncer and a server over it.
type honest struct {
	u    *sumdbtest.Upstream
	url  string
	st   store.Store
	s    *mirror.Syncer
	srv  *server.Server
	h    http.Handler
	good goodState
}

// newMirror syncs n honest records into a fresh store and records the good
// state: the store's digest, heads, cursor and served head, and the server's
// answers to /latest, a lookup and the right-edge tile.
func newMirror(t *testing.T, n int) *honest {
	t.Helper()
	ctx := context.Background()
	u, url := newUpstream(t, n)
	st := newStore(t)
	s := newSyncer(t, st, url, u.VerifierKey())
	if res, err := s.Once(ctx); err != nil || res.Served.Size != int64(n) {
		t.Fatalf("honest sync = %+v, %v", res, err)
	}
	checkMirror(t, st, u)
	m := &honest{u: u, url: url, st: st, s: s}
	m.srv, m.h = newServer(t, st)
	m.good = m.state(t)
	if !bytes.Equal(m.good.served.Note, u.SignedHead()) {
		t.Fatal("served note is not the upstream's signed head")
	}
	edge := tlog.Tile{H: 8, L: 0, N: int64(n-1) / 256, W: (n-1)%256 + 1}
	m.good.answers = make(map[string][]byte)
	for _, p := range []string{"/latest", lookupURL(t, u, 5), lookupURL(t, u, int64(n-1)), "/" + edge.Path()} {
		code, body := get(m.h, p)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		m.good.answers[p] = body
	}
	if !bytes.Equal(m.good.answers["/latest"], u.SignedHead()) {
		t.Fatal("/latest is not the upstream's signed head")
	}
	return m
}

func (m *honest) state(t *testing.T) goodState {
	t.Helper()
	ctx := context.Background()
	var g goodState
	var err error
	if g.digest, err = storetest.Digest(ctx, m.st, logName); err != nil {
		t.Fatal(err)
	}
	if g.heads, err = m.st.Heads(ctx, logName); err != nil {
		t.Fatal(err)
	}
	if g.synced, err = m.st.Synced(ctx, logName); err != nil {
		t.Fatal(err)
	}
	if g.served, err = m.st.ServedHead(ctx, logName); err != nil {
		t.Fatal(err)
	}
	return g
}

// grow adds k honest records to the upstream and remembers some of them as
// records the mirror must not serve until it has verified them.
func (m *honest) grow(t *testing.T, k int) {
	t.Helper()
	old := m.u.Size()
	if err := m.u.AddSynthetic(k); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{old, old + int64(k)/2, old + int64(k) - 1} {
		m.good.newIDs = append(m.good.newIDs, id)
		m.good.newPaths = append(m.good.newPaths, lookupURL(t, m.u, id))
	}
}

// expect says what a refused sync may have left in the store besides the
// good state.
type expect struct {
	// newHeads are signed heads (verified and proven consistent with the
	// stored ones) that the run stored without serving them.
	newHeads [][]byte
	// cursor is the sync cursor after the run; 0 means unchanged. Batches
	// verified completely before the lie was met are committed (unserved);
	// records [good.synced, cursor) must then be the upstream's honest ones.
	cursor int64
	// evidence is how many pieces of evidence the store holds.
	evidence int
}

// checkKept checks that the store and the server still hold and serve the
// good state, with only what exp allows added.
func (m *honest) checkKept(t *testing.T, exp expect) {
	t.Helper()
	ctx := context.Background()
	g := m.good
	now := m.state(t)

	// Heads: the old ones, plus exactly the allowed new ones.
	var notes [][]byte
	for _, h := range now.heads {
		notes = append(notes, h.Note)
	}
	var want [][]byte
	for _, h := range g.heads {
		want = append(want, h.Note)
	}
	want = append(want, exp.newHeads...)
	sortNotes := func(ns [][]byte) { slices.SortFunc(ns, bytes.Compare) }
	sortNotes(notes)
	sortNotes(want)
	if !slices.EqualFunc(notes, want, bytes.Equal) {
		t.Errorf("stored heads:\n%s\nwant:\n%s", noteSizes(notes), noteSizes(want))
	}
	if latest, err := m.st.LatestHead(ctx, logName); err == nil && len(exp.newHeads) == 0 && latest.Size != g.served.Size {
		t.Errorf("latest head %d, want %d", latest.Size, g.served.Size)
	}

	// Served head and cursor.
	if now.served.Size != g.served.Size || now.served.Hash != g.served.Hash || !bytes.Equal(now.served.Note, g.served.Note) {
		t.Errorf("served head is %d %v, want %d %v", now.served.Size, now.served.Hash, g.served.Size, g.served.Hash)
	}
	wantCursor := g.synced
	if exp.cursor != 0 {
		wantCursor = exp.cursor
	}
	if now.synced != wantCursor {
		t.Errorf("sync cursor %d, want %d", now.synced, wantCursor)
	}
	if wantCursor > g.synced {
		recs, err := m.st.ReadRecords(ctx, logName, g.synced, wantCursor-g.synced)
		if err != nil {
			t.Fatalf("verified records %d..%d: %v", g.synced, wantCursor-1, err)
		}
		for i, r := range recs {
			if id := g.synced + int64(i); !bytes.Equal(r.Data, m.u.Record(id)) {
				t.Fatalf("stored record %d = %q, want the honest %q", id, r.Data, m.u.Record(id))
			}
		}
	}
	if _, err := m.st.ReadRecords(ctx, logName, wantCursor, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record %d (at the cursor) is readable: err = %v", wantCursor, err)
	}

	// Nothing else changed: when no head and no record was added, the
	// digest is the same.
	if len(exp.newHeads) == 0 && exp.cursor == 0 && now.digest != g.digest {
		t.Error("store digest changed")
	}

	// No record beyond the verified ones is found.
	for _, id := range g.newIDs {
		if id < wantCursor {
			continue
		}
		path, version, _ := m.u.Module(id)
		if r, err := m.st.Lookup(ctx, logName, path, version, 1<<62); !errors.Is(err, store.ErrNotFound) {
			// A duplicate's module@version is found as the first record.
			if err != nil || r.ID == id {
				t.Errorf("Lookup of unverified record %d = %d, %v", id, r.ID, err)
			}
		}
	}

	es, err := m.st.Evidence(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != exp.evidence {
		t.Errorf("store holds %d pieces of evidence, want %d: %+v", len(es), exp.evidence, es)
	}

	// The server, refreshed, and a fresh one both answer as before.
	if err := m.srv.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, fresh := newServer(t, m.st)
	for name, h := range map[string]http.Handler{"server": m.h, "fresh server": fresh} {
		for p, body := range g.answers {
			if code, got := get(h, p); code != http.StatusOK || !bytes.Equal(got, body) {
				t.Errorf("%s: GET %s = %d %q, want the good answer %q", name, p, code, got, body)
			}
		}
		for _, p := range g.newPaths {
			if code, got := get(h, p); code != http.StatusNotFound {
				t.Errorf("%s: GET %s (beyond the served tree) = %d %q", name, p, code, got)
			}
		}
	}
}

func noteSizes(notes [][]byte) string {
	var b strings.Builder
	for _, n := range notes {
		lines := strings.SplitN(string(n), "\n", 4)
		if len(lines) >= 3 {
			fmt.Fprintf(&b, "  size %s root %s\n", lines[1], lines[2])
		} else {
			fmt.Fprintf(&b, "  %q\n", n)
		}
	}
	return b.String()
}

// wantError checks that err names what was wrong: it holds every substring.
func wantError(t *testing.T, err error, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("sync succeeded; want an error containing %q", substrs)
	}
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// wantEvidence checks the one piece of evidence of kind the lie left, and
// that the error returned is a MisbehaviourError carrying it.
func wantEvidence(t *testing.T, st store.Store, err error, kind string) store.Evidence {
	t.Helper()
	var me *mirror.MisbehaviourError
	if !errors.As(err, &me) || me.Evidence.Kind != kind {
		t.Errorf("error %v is not a MisbehaviourError of kind %q", err, kind)
	}
	es, err2 := st.Evidence(context.Background(), logName)
	if err2 != nil {
		t.Fatal(err2)
	}
	if len(es) != 1 || es[0].Kind != kind {
		t.Fatalf("evidence = %+v, want one of kind %q", es, kind)
	}
	e := es[0]
	if e.Message == "" || e.CreatedAt.IsZero() {
		t.Errorf("evidence without message or time: %+v", e)
	}
	if me != nil && !strings.Contains(err.Error(), e.Message) {
		t.Errorf("error %q does not carry the evidence message %q", err, e.Message)
	}
	return e
}

// TestLies makes the upstream lie in each way after an honest sync of
// lieBase records and growth by lieGrowth more. Each lie must fail the sync
// with a message naming it, store nothing of it, keep the evidence where
// there is some, and leave the server answering exactly as before. Once the
// lie stops, a sync catches up, except after signed proof of misbehaviour
// (fork, duplicate), when sync refuses to advance for good.
// TestFullSyncReadsNoLevel0Tiles (issue 19): a full sync proves a batch's
// records by authenticating the level-0 tiles their leaf hashes make, so it
// asks the upstream for none (half the requests of fetching them beside
// the data tiles): a lie in one it has no other use for never reaches it,
// and the level-0 tiles served are rebuilt from the proven records. (A
// batch that does not authenticate fetches them to name the culprit:
// TestLies, AlterRecord.)
func TestFullSyncReadsNoLevel0Tiles(t *testing.T) {
	ctx := context.Background()
	m := newMirror(t, lieBase)
	m.grow(t, lieGrowth)
	m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 0, N: 5, Offset: 100})
	m.u.ResetRequests()
	res, err := m.s.Once(ctx)
	if err != nil || res.Served.Size != m.u.Size() {
		t.Fatalf("sync = %+v, %v; want the new head served", res, err)
	}
	edge := (m.u.Size() - 1) / 256
	for k := int64(lieBase / 256); k < edge; k++ {
		// Only the tiles on the heads' right edges are read, to prove
		// the heads consistent.
		if n := m.u.Requests(fmt.Sprintf("/tile/8/0/%03d", k)); n > 0 && k != lieBase/256 {
			t.Errorf("the sync asked for level-0 tile %d %d times", k, n)
		}
	}
	if n := m.u.Requests("/tile/8/data/"); n == 0 {
		t.Error("the sync asked for no data tile")
	}
	checkMirror(t, m.st, m.u)
	if es, err := m.st.Evidence(ctx, logName); err != nil || len(es) != 0 {
		t.Errorf("evidence = %+v, %v; want none", es, err)
	}
}

func TestLies(t *testing.T) {
	type lie struct {
		fork *sumdbtest.Upstream
		id   int64 // the record the lie is about
	}
	tests := []struct {
		name string
		// grow grows the upstream (default: by lieGrowth honest records).
		grow func(t *testing.T, m *honest)
		// start makes the grown upstream lie.
		start func(t *testing.T, m *honest) lie
		// errWant are substrings of the error.
		errWant []string
		kind    string // evidence kind; "" for none
		// headStored: the new head was verified (signature, consistency)
		// before the lie was met, so it is stored (not served).
		headStored bool
		cursor     int64 // see expect.cursor
		blocking   bool
	}{
		{
			name: "FlipLevel1TileByte",
			start: func(t *testing.T, m *honest) lie {
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 1, N: 0, Offset: 3})
				return lie{}
			},
			// Caught while proving the new head consistent with the
			// stored one: the head is not stored.
			errWant: []string{"do not match the signed root", "consistent", m0URL, "tile/8/1/000"},
			kind:    store.EvidenceBadTile,
		},
		{
			name: "AlterRecordFirstBatch",
			start: func(t *testing.T, m *honest) lie {
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: 1100})
				return lie{id: 1100}
			},
			errWant:    []string{"record-mismatch", "record 1100", "does not match its leaf hash", m0URL},
			kind:       store.EvidenceBadRecord,
			headStored: true,
		},
		{
			name: "AlterRecord",
			start: func(t *testing.T, m *honest) lie {
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: 1800})
				return lie{id: 1800}
			},
			errWant:    []string{"record 1800", "does not match its leaf hash", m0URL},
			kind:       store.EvidenceBadRecord,
			headStored: true,
			cursor:     7 * 256, // records 1000..1791 verified and committed, unserved
		},
		{
			name: "BadSignature",
			start: func(t *testing.T, m *honest) lie {
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature})
				return lie{}
			},
			errWant: []string{"/latest", "does not verify", "bad-signature"},
			kind:    store.EvidenceBadSig,
		},
		{
			name: "UnknownKey",
			start: func(t *testing.T, m *honest) lie {
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultUnknownKey})
				return lie{}
			},
			errWant: []string{"/latest", "does not verify", "bad-signature"},
			kind:    store.EvidenceBadSig,
		},
		{
			name: "ForkLarger",
			start: func(t *testing.T, m *honest) lie {
				f := forkOf(t, m.u, 500, lieBase+lieGrowth+200-500)
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: f})
				return lie{fork: f}
			},
			errWant:  []string{"fork", "not consistent", "forked", "1000", "2700"},
			kind:     store.EvidenceFork,
			blocking: true,
		},
		{
			name: "ForkSmaller",
			start: func(t *testing.T, m *honest) lie {
				f := forkOf(t, m.u, 500, 300)
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: f})
				return lie{fork: f}
			},
			errWant:  []string{"forked", "1000", "800"},
			kind:     store.EvidenceFork,
			blocking: true,
		},
		{
			name: "ForkAtStoredSize",
			start: func(t *testing.T, m *honest) lie {
				f := forkOf(t, m.u, 500, lieBase-500)
				m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: f})
				return lie{fork: f}
			},
			errWant:  []string{"forked"},
			kind:     store.EvidenceFork,
			blocking: true,
		},
		{
			name: "DuplicateFirstBatch",
			grow: func(t *testing.T, m *honest) {
				// An honestly signed log holding a second record (1100)
				// for the module@version of record 10, in the first batch.
				m.grow(t, 100)
				if id, err := m.u.AddDuplicate(10); err != nil || id != 1100 {
					t.Fatalf("AddDuplicate = %d, %v", id, err)
				}
				m.grow(t, lieGrowth-101)
			},
			start:      func(t *testing.T, m *honest) lie { return lie{id: 1100} },
			errWant:    []string{"duplicate-record", "two records for", "10 and 1100"},
			kind:       store.EvidenceDuplicate,
			headStored: true,
			blocking:   true,
		},
		{
			name: "DuplicateWithinBatch",
			grow: func(t *testing.T, m *honest) {
				// Both records for one module@version are new and in one
				// batch (tiles 3..6).
				m.grow(t, 50)
				if id, err := m.u.AddDuplicate(1020); err != nil || id != 1050 {
					t.Fatalf("AddDuplicate = %d, %v", id, err)
				}
				m.grow(t, lieGrowth-51)
			},
			start:      func(t *testing.T, m *honest) lie { return lie{id: 1050} },
			errWant:    []string{"two records for", "1020 and 1050"},
			kind:       store.EvidenceDuplicate,
			headStored: true,
			blocking:   true,
		},
		{
			name: "DuplicateAcrossBatchesInFlight",
			grow: func(t *testing.T, m *honest) {
				// Record 1900 (batch 7..10) repeats record 1100 (batch
				// 3..6): a staging store writes the second batch while
				// the first is still committing.
				m.grow(t, 900)
				if id, err := m.u.AddDuplicate(1100); err != nil || id != 1900 {
					t.Fatalf("AddDuplicate = %d, %v", id, err)
				}
				m.grow(t, 1599)
			},
			start:      func(t *testing.T, m *honest) lie { return lie{id: 1900} },
			errWant:    []string{"two records for", "1100 and 1900"},
			kind:       store.EvidenceDuplicate,
			headStored: true,
			cursor:     7 * 256,
			blocking:   true,
		},
		{
			name: "DuplicateLastBatch",
			grow: func(t *testing.T, m *honest) {
				m.grow(t, lieGrowth-1)
				if id, err := m.u.AddDuplicate(10); err != nil || id != lieBase+lieGrowth-1 {
					t.Fatalf("AddDuplicate = %d, %v", id, err)
				}
			},
			start:      func(t *testing.T, m *honest) lie { return lie{id: lieBase + lieGrowth - 1} },
			errWant:    []string{"two records for", "10 and 2499"},
			kind:       store.EvidenceDuplicate,
			headStored: true,
			cursor:     7 * 256, // batch 3..6 was verified and committed, unserved
			blocking:   true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := newMirror(t, lieBase)
			if tc.grow != nil {
				tc.grow(t, m)
			} else {
				m.grow(t, lieGrowth)
			}
			l := tc.start(t, m)
			want := slices.Clone(tc.errWant)
			for i, s := range want {
				if s == m0URL {
					want[i] = m.url
				}
			}

			res, err := m.s.Once(ctx)
			wantError(t, err, want...)
			t.Logf("refused: %v", err)
			if res.Served.Size != 0 || res.Previous != lieBase {
				t.Errorf("result of the refused run = %+v", res)
			}

			exp := expect{cursor: tc.cursor}
			if tc.headStored {
				exp.newHeads = [][]byte{m.u.SignedHead()}
			}
			if tc.kind != "" {
				exp.evidence = 1
				e := wantEvidence(t, m.st, err, tc.kind)
				switch tc.kind {
				case store.EvidenceFork:
					if !bytes.Equal(e.NoteA, m.good.served.Note) {
						t.Errorf("fork evidence NoteA = %q, want the stored head %q", e.NoteA, m.good.served.Note)
					}
					if !bytes.Equal(e.NoteB, l.fork.SignedHead()) {
						t.Errorf("fork evidence NoteB = %q, want the fork's head %q", e.NoteB, l.fork.SignedHead())
					}
					if bytes.Equal(l.fork.SignedHead(), m.u.SignedHead()) {
						t.Fatal("the fork signs the same head")
					}
				case store.EvidenceBadTile:
					// The signed head the tiles failed against.
					if !bytes.Equal(e.NoteA, m.u.SignedHead()) {
						t.Errorf("tile evidence NoteA = %q, want the upstream's new head", e.NoteA)
					}
					// The tiles, named and kept.
					if !strings.Contains(e.Object, "tile/8/") || len(e.Data) == 0 || len(e.Data)%tlog.HashSize != 0 || e.Source != m.url {
						t.Errorf("tile evidence names %q from %q and keeps %d bytes; want the tiles and their bytes", e.Object, e.Source, len(e.Data))
					}
				case store.EvidenceBadSig:
					if !bytes.HasPrefix(e.NoteA, []byte("go.sum database tree\n")) || e.Source != m.url || e.Count != 1 {
						t.Errorf("signature evidence = %+v, want the upstream's note, once", e)
					}
				case store.EvidenceBadRecord:
					if !bytes.Equal(e.NoteA, m.u.SignedHead()) {
						t.Errorf("record evidence NoteA = %q, want the upstream's new head", e.NoteA)
					}
					honest := m.u.Record(l.id)
					if bytes.Equal(e.Data, honest) || len(e.Data) != len(honest) {
						t.Errorf("record evidence Data = %q; want the altered record %d (honest %q)", e.Data, l.id, honest)
					}
					if p, v := store.RecordModule(e.Data); p == "" || v == "" {
						t.Errorf("record evidence Data %q names no module", e.Data)
					}
				case store.EvidenceDuplicate:
					if !bytes.Equal(e.NoteA, m.u.SignedHead()) {
						t.Errorf("duplicate evidence NoteA = %q, want the head of the log holding it", e.NoteA)
					}
					if !bytes.Equal(e.Data, m.u.Record(l.id)) {
						t.Errorf("duplicate evidence Data = %q, want record %d %q", e.Data, l.id, m.u.Record(l.id))
					}
				}
			}
			m.checkKept(t, exp)

			// The same lie again: refused again, nothing more stored (a
			// blocking lie now stops the run before the upstream is asked).
			_, err = m.s.Once(ctx)
			if tc.blocking {
				wantError(t, err, "refusing to advance", "evidence", tc.kind)
			} else {
				wantError(t, err, want...)
				// Kept once, counted twice: a source that keeps
				// lying does not grow the store.
				if es, _ := m.st.Evidence(ctx, logName); tc.kind != "" && (len(es) != 1 || es[0].Count != 2) {
					t.Errorf("after the same lie twice, evidence = %+v; want one, seen twice", es)
				}
			}
			m.checkKept(t, exp)

			// The lie stops.
			m.u.SetFault(sumdbtest.Fault{})
			before := m.u.Requests("")
			res, err = m.s.Once(ctx)
			if tc.blocking {
				wantError(t, err, "refusing to advance", "evidence of upstream misbehaviour", tc.kind)
				if n := m.u.Requests("") - before; n != 0 {
					t.Errorf("a blocked sync made %d requests upstream", n)
				}
				m.checkKept(t, exp)
				return
			}
			if err != nil {
				t.Fatalf("sync after the lie stopped: %v", err)
			}
			if res.Previous != lieBase || res.Served.Size != m.u.Size() {
				t.Errorf("catch-up result = %+v", res)
			}
			checkMirror(t, m.st, m.u)
			if err := m.srv.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if code, body := get(m.h, "/latest"); code != http.StatusOK || !bytes.Equal(body, m.u.SignedHead()) {
				t.Errorf("after catching up, /latest = %d %q", code, body)
			}
			for _, p := range m.good.newPaths {
				if code, _ := get(m.h, p); code != http.StatusOK {
					t.Errorf("after catching up, GET %s = %d", p, code)
				}
			}
			if es, _ := m.st.Evidence(ctx, logName); len(es) != exp.evidence {
				t.Errorf("after catching up, %d pieces of evidence, want %d (kept)", len(es), exp.evidence)
			}
		})
	}
}

// m0URL in a test's errWant stands for the upstream's URL.
const m0URL = "\x00upstream-url" // replaced by the URL in TestLies

// TestStaleHead: an upstream serving an older head than the stored one (a
// caching proxy) is not a lie. The head is verified and linked, the mirror
// never goes backwards, and nothing else changes; a stale head newer than
// the stored one is synced to.
func TestStaleHead(t *testing.T) {
	ctx := context.Background()
	m := newMirror(t, lieBase)
	m.grow(t, lieGrowth)

	old500, err := m.u.SignedHeadAt(500)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{500, lieBase} {
		m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultStaleHead, N: n})
		before := m.u.Requests("/tile/8/data/")
		res, err := m.s.Once(ctx)
		if err != nil {
			t.Fatalf("stale head %d: %v", n, err)
		}
		if res.Served.Size != lieBase || res.Previous != lieBase || res.Records != 0 {
			t.Errorf("stale head %d: result %+v", n, res)
		}
		if got := m.u.Requests("/tile/8/data/") - before; got != 0 {
			t.Errorf("stale head %d: fetched %d data tiles", n, got)
		}
		// The older head is signed and consistent: it is kept (heads are
		// every verified head), but not served.
		m.checkKept(t, expect{newHeads: [][]byte{old500}})
	}

	// A stale head between the stored one and the upstream's newest is
	// synced to; then an older one again changes nothing.
	m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultStaleHead, N: 1800})
	res, err := m.s.Once(ctx)
	if err != nil || res.Served.Size != 1800 || res.Records != 800 {
		t.Fatalf("stale head 1800: %+v, %v", res, err)
	}
	note1800, _ := m.u.SignedHeadAt(1800)
	m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultStaleHead, N: 1200})
	if res, err := m.s.Once(ctx); err != nil || res.Served.Size != 1800 || res.Records != 0 {
		t.Fatalf("stale head 1200 after 1800: %+v, %v", res, err)
	}
	if h, err := m.st.ServedHead(ctx, logName); err != nil || !bytes.Equal(h.Note, note1800) {
		t.Fatalf("served head %d, %v; want 1800", h.Size, err)
	}
	if err := m.srv.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(m.h, "/latest"); code != http.StatusOK || !bytes.Equal(body, note1800) {
		t.Errorf("/latest = %d %q, want the head of 1800", code, body)
	}

	m.u.SetFault(sumdbtest.Fault{})
	if res, err := m.s.Once(ctx); err != nil || res.Served.Size != m.u.Size() || res.Previous != 1800 {
		t.Fatalf("honest sync: %+v, %v", res, err)
	}
	checkMirror(t, m.st, m.u)
	if es, _ := m.st.Evidence(ctx, logName); len(es) != 0 {
		t.Errorf("stale heads left evidence: %+v", es)
	}
}

// TestServerError: an upstream failing with 503 is not a lie. The sync
// fails (after its retries) naming the URL and the status, stores no record,
// keeps no evidence and serves the old state; once the upstream recovers, a
// sync catches up.
func TestServerError(t *testing.T) {
	tests := []struct {
		prefix string
		// headStored: the new head was verified before the failing request.
		headStored bool
	}{
		{prefix: "/latest"},
		{prefix: "/tile/8/1/"}, // needed to prove the new head consistent
		{prefix: "/tile/8/0/"}, // ditto (the right edge of both trees)
		{prefix: "/tile/8/data/", headStored: true},
	}
	for _, tc := range tests {
		t.Run(strings.Trim(strings.ReplaceAll(tc.prefix, "/", "_"), "_"), func(t *testing.T) {
			ctx := context.Background()
			m := newMirror(t, lieBase)
			m.grow(t, lieGrowth)
			m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError, Prefix: tc.prefix})
			res, err := m.s.Once(ctx)
			wantError(t, err, m.url+tc.prefix, "503 Service Unavailable")
			t.Logf("failed: %v", err)
			var me *mirror.MisbehaviourError
			if errors.As(err, &me) {
				t.Errorf("a server error was taken for misbehaviour: %v", err)
			}
			if res.Records != 0 || res.Served.Size != 0 {
				t.Errorf("result %+v", res)
			}
			exp := expect{}
			if tc.headStored {
				exp.newHeads = [][]byte{m.u.SignedHead()}
			}
			m.checkKept(t, exp)

			m.u.SetFault(sumdbtest.Fault{})
			if res, err := m.s.Once(ctx); err != nil || res.Served.Size != m.u.Size() || res.Records != lieGrowth {
				t.Fatalf("sync after recovery: %+v, %v", res, err)
			}
			checkMirror(t, m.st, m.u)
		})
	}
}

// TestLieWrongLookupUnused: a full sync reads no /lookup answers, so an
// upstream whose lookups lie (FaultWrongLookup) cannot feed it anything.
func TestLieWrongLookupUnused(t *testing.T) {
	ctx := context.Background()
	m := newMirror(t, lieBase)
	m.grow(t, lieGrowth)
	m.u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultWrongLookup})
	before := m.u.Requests("/lookup/")
	if res, err := m.s.Once(ctx); err != nil || res.Served.Size != m.u.Size() {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	if n := m.u.Requests("/lookup/") - before; n != 0 {
		t.Errorf("full sync made %d lookups", n)
	}
	checkMirror(t, m.st, m.u)
}
