package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

func TestMain(m *testing.M) {
	// Test-only: keep gin's route listing off the test output. The package
	// itself never touches gin's global mode.
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// testLog is an in-memory checksum database log: the data source for the
// store under test and for the reference golang.org/x/mod/sumdb.Server.
type testLog struct {
	name   string
	offset int // record i of the log is testRecord(offset+i)
	signer note.Signer
	vkey   string

	recs   [][]byte
	mods   []module.Version
	ids    map[module.Version]int64
	hashes []tlog.Hash

	mu    sync.Mutex
	notes map[int64][]byte
}

func newTestLog(t testing.TB, name string) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{name: name, signer: signer, vkey: vkey,
		ids: make(map[module.Version]int64), notes: make(map[int64][]byte)}
}

func (l *testLog) size() int64 { return int64(len(l.recs)) }

func (l *testLog) hashReader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(l.hashes)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

func h1(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "h1:" + base64.StdEncoding.EncodeToString(sum[:])
}

// testRecord returns record i of a test log: a mix of the module paths and
// versions a real log holds (upper case, major version suffixes, gopkg.in,
// +incompatible, pseudo-versions) and some records that are not in the
// canonical two-line form (trailing white space, one line, three lines).
func testRecord(i int) (module.Version, []byte) {
	var m module.Version
	switch i % 9 {
	case 0:
		m = module.Version{Path: fmt.Sprintf("github.com/Owner%d/Repo", i), Version: fmt.Sprintf("v1.%d.0", i)}
	case 1:
		m = module.Version{Path: fmt.Sprintf("example.com/m%d/v2", i), Version: fmt.Sprintf("v2.0.%d", i)}
	case 2:
		m = module.Version{Path: fmt.Sprintf("gopkg.in/pkg%d.v3", i), Version: "v3.0.1"}
	case 3:
		m = module.Version{Path: fmt.Sprintf("example.com/inc%d", i), Version: fmt.Sprintf("v2.%d.0+incompatible", i)}
	case 4:
		m = module.Version{Path: fmt.Sprintf("example.com/pseudo%d", i), Version: fmt.Sprintf("v0.0.0-20240102030405-abcdef%06d", i)}
	default:
		m = module.Version{Path: fmt.Sprintf("example.com/mod%d", i), Version: fmt.Sprintf("v1.0.%d-rc.1", i)}
	}
	a, b := h1(fmt.Sprint("zip", i)), h1(fmt.Sprint("mod", i))
	var data string
	switch i % 97 {
	case 5: // trailing white space on the first line
		data = fmt.Sprintf("%s %s %s  \n%s %s/go.mod %s\n", m.Path, m.Version, a, m.Path, m.Version, b)
	case 6: // trailing white space on the last line
		data = fmt.Sprintf("%s %s %s\n%s %s/go.mod %s   \n", m.Path, m.Version, a, m.Path, m.Version, b)
	case 7: // one line
		data = fmt.Sprintf("%s %s %s\n", m.Path, m.Version, a)
	case 8: // three lines
		data = fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n%s %s/extra h1:Ω\n", m.Path, m.Version, a, m.Path, m.Version, b, m.Path, m.Version)
	default:
		data = fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", m.Path, m.Version, a, m.Path, m.Version, b)
	}
	return m, []byte(data)
}

// grow appends records until the log holds n.
func (l *testLog) grow(t testing.TB, n int64) {
	t.Helper()
	for id := l.size(); id < n; id++ {
		m, data := testRecord(l.offset + int(id))
		hs, err := tlog.StoredHashes(id, data, l.hashReader())
		if err != nil {
			t.Fatal(err)
		}
		l.hashes = append(l.hashes, hs...)
		l.recs = append(l.recs, data)
		l.mods = append(l.mods, m)
		l.ids[m] = id
	}
}

// note returns the signed head of the tree of size n.
func (l *testLog) note(t testing.TB, n int64) []byte {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.notes[n]; ok {
		return b
	}
	h, err := tlog.TreeHash(n, l.hashReader())
	if err != nil {
		t.Fatal(err)
	}
	b, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: n, Hash: h}))}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	l.notes[n] = b
	return b
}

func (l *testLog) head(t testing.TB, n int64) store.Head {
	t.Helper()
	h, err := tlog.TreeHash(n, l.hashReader())
	if err != nil {
		t.Fatal(err)
	}
	return store.Head{Size: n, Hash: h, Note: l.note(t, n)}
}

// batch is what a sync would commit for records [from, to): the records and
// every tile that changes, at the width the tree of size to gives it.
func (l *testLog) batch(t testing.TB, from, to int64) store.Batch {
	t.Helper()
	b := store.Batch{Synced: to}
	for id := from; id < to; id++ {
		b.Records = append(b.Records, store.Record{ID: id, Path: l.mods[id].Path, Version: l.mods[id].Version, Data: l.recs[id]})
	}
	for _, tile := range tlog.NewTiles(store.TileHeight, from, to) {
		data, err := tlog.ReadTileData(tile, l.hashReader())
		if err != nil {
			t.Fatal(err)
		}
		b.Tiles = append(b.Tiles, store.Tile{Tile: tile, Data: data})
	}
	return b
}

// sync commits records [from, to) in batches of at most step, adds the
// head of size to and, if serve is set, makes it the served head.
func (l *testLog) sync(t testing.TB, st store.Store, from, to, step int64, serve bool) {
	t.Helper()
	ctx := context.Background()
	if err := st.AddHead(ctx, l.name, l.head(t, to)); err != nil {
		t.Fatal(err)
	}
	for lo := from; lo < to; lo += step {
		hi := min(lo+step, to)
		b := l.batch(t, lo, hi)
		if serve && hi == to {
			b.Serve = to
		}
		if err := st.Commit(ctx, l.name, b); err != nil {
			t.Fatal(err)
		}
	}
}

// reference returns golang.org/x/mod/sumdb.Server serving the tree of size n.
func (l *testLog) reference(t testing.TB, n int64) http.Handler {
	return sumdb.NewServer(&refOps{t: t, l: l, n: n})
}

type refOps struct {
	t testing.TB
	l *testLog
	n int64
}

func (o *refOps) Signed(ctx context.Context) ([]byte, error) { return o.l.note(o.t, o.n), nil }

func (o *refOps) ReadRecords(ctx context.Context, id, n int64) ([][]byte, error) {
	if id < 0 || n < 0 || id+n > o.n {
		return nil, os.ErrNotExist
	}
	return o.l.recs[id : id+n], nil
}

func (o *refOps) Lookup(ctx context.Context, m module.Version) (int64, error) {
	id, ok := o.l.ids[m]
	if !ok || id >= o.n {
		return 0, os.ErrNotExist
	}
	return id, nil
}

func (o *refOps) ReadTileData(ctx context.Context, t tlog.Tile) ([]byte, error) {
	// The tile's last hash must be stored once the tree has o.n records.
	if t.L*t.H > 62 {
		return nil, os.ErrNotExist
	}
	last := tlog.StoredHashIndex(t.L*t.H, t.N<<uint(t.H)+int64(t.W)-1)
	if last >= tlog.StoredHashCount(o.n) {
		return nil, os.ErrNotExist
	}
	return tlog.ReadTileData(t, o.l.hashReader())
}

// openStore returns a Postgres store in a fresh database.
func openStore(t testing.TB) (st *postgres.Store, dsn string) {
	t.Helper()
	dsn = pgtest.NewDSN(t)
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, dsn
}

func newServer(t testing.TB, st store.Store, log string) *Server {
	t.Helper()
	s := New(Config{Store: st, Log: log})
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func do(h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

// same requests path from both handlers and fails the test unless the
// status codes match and, for 200, the bodies and content types are
// identical. It returns our response.
func same(t testing.TB, ours, ref http.Handler, oursPath, refPath string) *httptest.ResponseRecorder {
	t.Helper()
	o, r := do(ours, "GET", oursPath), do(ref, "GET", refPath)
	if o.Code != r.Code {
		t.Errorf("GET %s: status %d, reference %d (%q)", oursPath, o.Code, r.Code, strings.TrimSpace(r.Body.String()))
		return o
	}
	if o.Code != http.StatusOK {
		return o
	}
	sameBody(t, oursPath, o, r)
	return o
}

// sameBody fails the test unless our answer o and the reference's r to
// GET path have the same content type and body.
func sameBody(t testing.TB, path string, o, r *httptest.ResponseRecorder) {
	t.Helper()
	if oc, rc := o.Header().Get("Content-Type"), r.Header().Get("Content-Type"); oc != rc {
		t.Errorf("GET %s: Content-Type %q, reference %q", path, oc, rc)
	}
	if ob, rb := o.Body.Bytes(), r.Body.Bytes(); string(ob) != string(rb) {
		t.Errorf("GET %s: body differs from reference:\n%s\nreference:\n%s", path, clip(ob), clip(rb))
	}
}

func clip(b []byte) string {
	if len(b) > 300 {
		return fmt.Sprintf("%q... (%d bytes)", b[:300], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func lookupPath(t testing.TB, m module.Version) string {
	t.Helper()
	p, err := module.EscapePath(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		t.Fatal(err)
	}
	return "/lookup/" + p + "@" + v
}

func body(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	b, err := io.ReadAll(w.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
