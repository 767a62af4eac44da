package replica_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/trillian/types"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/internal/trilliantest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/replica"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

// replicated is a store synced from an upstream with a replica.
type replicated struct {
	u   *sumdbtest.Upstream
	st  *postgres.Store
	r   *replica.Replica
	s   *mirror.Syncer
	log string
}

func newMirror(t *testing.T, tr *trilliantest.Trillian, tree int64, u *sumdbtest.Upstream) *replicated {
	t.Helper()
	url := u.Start()
	t.Cleanup(u.Close)
	st, err := postgres.Open(context.Background(), pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	r, err := replica.New(replica.Config{Conn: dial(t, tr), Addr: tr.Addr(), TreeID: tree, Records: st, Log: u.Name()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(),
		Mode: mirror.ModeFull, Replica: r, BatchTiles: 16, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	return &replicated{u: u, st: st, r: r, s: s, log: u.Name()}
}

func (m *replicated) served(t *testing.T) store.Head {
	t.Helper()
	h, err := m.st.ServedHead(context.Background(), m.log)
	if errors.Is(err, store.ErrNotFound) {
		return store.Head{}
	}
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestSyncWithReplica: a full sync of 100,000 records with the replica on
// ends with Trillian's root equal to the served head's; a second sync after
// the log grows extends it; a sync with nothing new leaves it alone.
func TestSyncWithReplica(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{})
	conn := dial(t, tr)
	tree := createTree(t, conn)
	m := newMirror(t, tr, tree, newUpstream(t, 100_000))

	for i, grow := range []int{0, 3000, 0} {
		if grow > 0 {
			if err := m.u.AddSynthetic(grow); err != nil {
				t.Fatal(err)
			}
		}
		res, err := m.s.Once(ctx)
		if err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		want := m.u.Tree()
		h := m.served(t)
		if res.Served.Size != want.N || h.Size != want.N || h.Hash != want.Hash {
			t.Fatalf("sync %d serves %d %v, want %d %v", i, h.Size, h.Hash, want.N, want.Hash)
		}
		root, err := m.r.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if root.Tree != h.Tree() {
			t.Fatalf("sync %d: Trillian's tree is %d %v, the served head %d %v", i, root.Tree.N, root.Tree.Hash, h.Size, h.Hash)
		}
		t.Logf("sync %d: served %d, Trillian agrees (%d leaves sent)", i, h.Size, m.r.Sent())
	}
	if got, want := m.r.Sent(), m.u.Size(); got != want {
		t.Errorf("sent %d leaves for %d records", got, want)
	}
	if rows, idx := leafRows(t, tr, tree); rows != m.u.Size() || idx != m.u.Size() {
		t.Errorf("Trillian holds %d leaves at %d indexes, want %d once each", rows, idx, m.u.Size())
	}
}

// TestSyncCatchesUpNewReplica: a replica added to a synced store is caught
// up from the store on the next sync, even with nothing new upstream.
func TestSyncCatchesUpNewReplica(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{})
	conn := dial(t, tr)
	u := newUpstream(t, 5000)
	m := newMirror(t, tr, createTree(t, conn), u)
	plain, err := mirror.New(mirror.Config{Store: m.st, Upstream: upstream.NewClient(u.URL(), nil), Key: u.VerifierKey(), Mode: mirror.ModeFull})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	root, err := m.r.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if root.Tree != u.Tree() {
		t.Fatalf("Trillian's tree is %v, want %v", root.Tree, u.Tree())
	}
}

// checkRefused checks that a sync refused the upstream's head because the
// replica disagrees: nothing new served, one piece of evidence with both
// roots and Trillian's signed log root.
func checkRefused(t *testing.T, m *replicated, err error, servedBefore int64) {
	t.Helper()
	var me *mirror.ReplicaMismatchError
	if !errors.As(err, &me) || me.KeepErr != nil {
		t.Fatalf("sync with a disagreeing replica: %v, want a *ReplicaMismatchError with its evidence kept", err)
	}
	t.Logf("refused: %v", err)
	if got := m.served(t).Size; got != servedBefore {
		t.Fatalf("after the replica disagreed the store serves %d, want %d", got, servedBefore)
	}
	es, err := m.st.Evidence(context.Background(), m.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Kind != store.EvidenceReplicaMismatch {
		t.Fatalf("evidence = %+v, want one %s", es, store.EvidenceReplicaMismatch)
	}
	var lr types.LogRootV1
	if err := lr.UnmarshalBinary(es[0].Data); err != nil {
		t.Fatalf("the evidence's data is not Trillian's log root: %v", err)
	}
	want := m.u.Tree()
	if int64(lr.TreeSize) != want.N || tlog.Hash(lr.RootHash) == want.Hash {
		t.Fatalf("evidence holds Trillian's root of size %d %x; want size %d and a root other than %v", lr.TreeSize, lr.RootHash, want.N, want.Hash)
	}
	if len(es[0].NoteA) == 0 {
		t.Fatal("evidence lacks the signed head")
	}
}

// TestReplicaWrongTree: leaves sent to a tree that holds another log's
// leaves. Trillian's root differs; the head is not served, the evidence is
// kept once however often sync tries again.
func TestReplicaWrongTree(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{})
	conn := dial(t, tr)
	tree := createTree(t, conn)
	other := newMirror(t, tr, tree, newUpstream(t, 1000))
	if _, err := other.s.Once(ctx); err != nil {
		t.Fatal(err)
	}

	m := newMirror(t, tr, tree, newUpstream(t, 2000))
	for range 2 {
		_, err := m.s.Once(ctx)
		checkRefused(t, m, err, 0)
	}
	// The tree held 1000 leaves: the replica took them for this log's and
	// sent the rest; the roots tell.
	if got, refused := m.r.Sent(), m.r.Refused(); got != 1000 || refused != 0 {
		t.Errorf("sent %d leaves (%d refused), want the 1000 the tree lacked", got, refused)
	}
}

// TestReplicaAlteredLeaf: a leaf altered in Trillian's storage before it
// was integrated. Trillian's root differs; a head that grew is not served.
func TestReplicaAlteredLeaf(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{})
	conn := dial(t, tr)
	tree := createTree(t, conn)
	m := newMirror(t, tr, tree, newUpstream(t, 3000))
	if _, err := m.s.Once(ctx); err != nil {
		t.Fatal(err)
	}

	// The log grows; its new records reach Trillian, the signer is down.
	if err := m.u.AddSynthetic(2000); err != nil {
		t.Fatal(err)
	}
	tr.StopSigner()
	if err := m.r.Append(ctx, records(m.u, 3000, 5000)); err != nil {
		t.Fatal(err)
	}
	// Record 4321's leaf hash is altered in Trillian's database.
	pg, err := pgx.Connect(ctx, tr.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	forged := sha256.Sum256(append([]byte{0}, "example.com/forged v1.0.0 h1:x\n"...))
	tag, err := pg.Exec(ctx, `UPDATE sequencedleafdata SET merkleleafhash = $1 WHERE treeid = $2 AND sequencenumber = 4321`, forged[:], tree)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("altering leaf 4321: %v (%d rows)", err, tag.RowsAffected())
	}
	if err := tr.StartSigner(ctx); err != nil {
		t.Fatal(err)
	}

	_, err = m.s.Once(ctx)
	checkRefused(t, m, err, 3000)
}

// TestReplicaNeedsFullMode: lazy mode and a replica do not go together.
func TestReplicaNeedsFullMode(t *testing.T) {
	u := newUpstream(t, 10)
	url := u.Start()
	t.Cleanup(u.Close)
	st, err := postgres.Open(context.Background(), pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	conn, err := replica.Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r, err := replica.New(replica.Config{Conn: conn, Addr: "127.0.0.1:1", TreeID: 1, Records: st, Log: u.Name()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeLazy, Replica: r})
	if err == nil {
		t.Fatal("a lazy syncer with a replica was made")
	}
	t.Log(err)
}
