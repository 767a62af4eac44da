package replica_test

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/internal/trilliantest"
	"github.com/sumkeep/sumkeep/replica"
	"github.com/sumkeep/sumkeep/store"
)

// upstreamRecords reads records from a hermetic upstream: what a replica
// catches up from, standing in for a store that holds them.
type upstreamRecords struct{ u *sumdbtest.Upstream }

func (r upstreamRecords) ReadRecords(_ context.Context, _ string, start, n int64) ([]store.Record, error) {
	recs := make([]store.Record, n)
	for i := range recs {
		recs[i] = store.Record{ID: start + int64(i), Data: r.u.Record(start + int64(i))}
	}
	return recs, nil
}

func records(u *sumdbtest.Upstream, start, end int64) []store.Record {
	recs, _ := upstreamRecords{u}.ReadRecords(context.Background(), "", start, end-start)
	return recs
}

func newUpstream(t *testing.T, n int) *sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.NewSynthetic("sumdb.test", n)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func dial(t *testing.T, tr *trilliantest.Trillian) *grpc.ClientConn {
	t.Helper()
	conn, err := tr.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func createTree(t *testing.T, conn *grpc.ClientConn) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := replica.CreateTree(ctx, conn, "sumdb.test", "sumkeep test replica")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newReplica(t *testing.T, tr *trilliantest.Trillian, conn *grpc.ClientConn, tree int64, u *sumdbtest.Upstream) *replica.Replica {
	t.Helper()
	r, err := replica.New(replica.Config{Conn: conn, Addr: tr.Addr(), TreeID: tree, Records: upstreamRecords{u}, Log: "sumdb.test", Chunk: 300})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func treeAt(t *testing.T, u *sumdbtest.Upstream, n int64) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(n, u.HashReader())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// leafRows returns how many leaves Trillian's database holds for the tree,
// and how many distinct indexes.
func leafRows(t *testing.T, tr *trilliantest.Trillian, tree int64) (rows, indexes int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, tr.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT sequencenumber) FROM sequencedleafdata WHERE treeid = $1`, tree).Scan(&rows, &indexes); err != nil {
		t.Fatal(err)
	}
	return rows, indexes
}

// TestReplica feeds a tree in batches and from the store, and checks
// Trillian's roots against the log's: equal at the size asked for, and
// proven consistent when the tree holds more.
func TestReplica(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{})
	conn := dial(t, tr)
	tree := createTree(t, conn)
	u := newUpstream(t, 4000)

	r := newReplica(t, tr, conn, tree, u)
	for start := int64(0); start < 1000; start += 256 {
		if err := r.Append(ctx, records(u, start, min(start+256, 1000))); err != nil {
			t.Fatal(err)
		}
	}
	root, proof, err := r.Root(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if root.Tree.N != 1000 || root.Tree.Hash != treeAt(t, u, 1000) || len(proof) != 0 {
		t.Fatalf("Root(1000) = %d %v (proof of %d), want 1000 %v", root.Tree.N, root.Tree.Hash, len(proof), treeAt(t, u, 1000))
	}

	// Behind: Root catches up from the store. Records the tree holds are
	// skipped, and a batch past the end catches up first.
	if err := r.Append(ctx, records(u, 900, 1100)); err != nil {
		t.Fatal(err)
	}
	if err := r.Append(ctx, records(u, 1500, 1600)); err != nil {
		t.Fatal(err)
	}
	if got := r.Sent(); got != 1600 {
		t.Errorf("sent %d leaves for 1600 records", got)
	}
	root, _, err = r.Root(ctx, 2500)
	if err != nil {
		t.Fatal(err)
	}
	if root.Tree.N != 2500 || root.Tree.Hash != treeAt(t, u, 2500) {
		t.Fatalf("Root(2500) = %d %v, want 2500 %v", root.Tree.N, root.Tree.Hash, treeAt(t, u, 2500))
	}

	// Ahead: the root of the larger tree and Trillian's consistency proof,
	// which tlog checks (both follow RFC 6962).
	root, proof, err = r.Root(ctx, 1234)
	if err != nil {
		t.Fatal(err)
	}
	if root.Tree.N != 2500 {
		t.Fatalf("Root(1234) answered for size %d, want 2500", root.Tree.N)
	}
	if err := tlog.CheckTree(proof, root.Tree.N, root.Tree.Hash, 1234, treeAt(t, u, 1234)); err != nil {
		t.Fatalf("Trillian's consistency proof from 1234 to 2500: %v", err)
	}
	wrong := treeAt(t, u, 1235)
	if err := tlog.CheckTree(proof, root.Tree.N, root.Tree.Hash, 1234, wrong); err == nil {
		t.Fatal("the consistency proof accepts a wrong root")
	}

	// A second Replica (another process) learns what the tree holds and
	// sends only the rest.
	r2 := newReplica(t, tr, conn, tree, u)
	if err := r2.Append(ctx, records(u, 0, 3000)); err != nil {
		t.Fatal(err)
	}
	if got := r2.Sent(); got != 500 {
		t.Errorf("a new replica sent %d leaves, want the 500 the tree lacked", got)
	}
	root, _, err = r2.Root(ctx, 3000)
	if err != nil || root.Tree.Hash != treeAt(t, u, 3000) {
		t.Fatalf("Root(3000) = %v, %v", root.Tree, err)
	}
	if rows, idx := leafRows(t, tr, tree); rows != 3000 || idx != 3000 {
		t.Errorf("Trillian holds %d leaves at %d indexes, want 3000 once each", rows, idx)
	}
}

// TestReplicaLearnsHeldLeaves: leaves added but not integrated (the signer
// is down) are found by a new Replica and not sent again.
func TestReplicaLearnsHeldLeaves(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{})
	conn := dial(t, tr)
	tree := createTree(t, conn)
	u := newUpstream(t, 4000)

	r := newReplica(t, tr, conn, tree, u)
	if _, _, err := r.Root(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	tr.StopSigner()
	if err := r.Append(ctx, records(u, 1000, 3000)); err != nil {
		t.Fatal(err)
	}
	latest, err := r.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Tree.N != 1000 {
		t.Fatalf("with the signer stopped the tree grew to %d", latest.Tree.N)
	}

	r2 := newReplica(t, tr, conn, tree, u)
	if err := r2.Append(ctx, records(u, 1000, 3500)); err != nil {
		t.Fatal(err)
	}
	if got, refused := r2.Sent(), r2.Refused(); got != 500 || refused != 0 {
		t.Errorf("a new replica sent %d leaves (%d refused as held), want the 500 the tree lacked", got, refused)
	}
	if err := tr.StartSigner(ctx); err != nil {
		t.Fatal(err)
	}
	root, _, err := r2.Root(ctx, 3500)
	if err != nil || root.Tree.N != 3500 || root.Tree.Hash != treeAt(t, u, 3500) {
		t.Fatalf("Root(3500) = %v, %v; want %v", root.Tree, err, treeAt(t, u, 3500))
	}
	if rows, idx := leafRows(t, tr, tree); rows != 3500 || idx != 3500 {
		t.Errorf("Trillian holds %d leaves at %d indexes, want 3500 once each", rows, idx)
	}
}

// TestReplicaStalls: with no signer, Root gives up after Stall without
// progress and says what to check.
func TestReplicaStalls(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{NoSigner: true})
	conn := dial(t, tr)
	tree := createTree(t, conn)
	u := newUpstream(t, 300)
	r, err := replica.New(replica.Config{Conn: conn, Addr: tr.Addr(), TreeID: tree, Records: upstreamRecords{u}, Log: "sumdb.test", Stall: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = r.Root(ctx, 300)
	if err == nil || !strings.Contains(err.Error(), "trillian_log_signer") {
		t.Fatalf("Root without a signer: %v", err)
	}
}

// TestTreeChecks: a tree that is not a PREORDERED_LOG, or none, is named.
func TestTreeChecks(t *testing.T) {
	ctx := context.Background()
	tr := trilliantest.New(t, trilliantest.Options{})
	conn := dial(t, tr)
	u := newUpstream(t, 10)

	// The tree CreateTree makes starts as the RFC 6962 empty tree.
	id := createTree(t, conn)
	r := newReplica(t, tr, conn, id, u)
	root, err := r.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if root.Tree.N != 0 || root.Tree.Hash != tlog.Hash(sha256.Sum256(nil)) {
		t.Fatalf("new tree's root = %v", root.Tree)
	}

	logTree, err := trillian.NewTrillianAdminClient(conn).CreateTree(ctx, &trillian.CreateTreeRequest{Tree: &trillian.Tree{
		TreeState: trillian.TreeState_ACTIVE, TreeType: trillian.TreeType_LOG, MaxRootDuration: durationpb.New(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	r = newReplica(t, tr, conn, logTree.TreeId, u)
	if err := r.Append(ctx, records(u, 0, 10)); err == nil || !strings.Contains(err.Error(), "PREORDERED_LOG") {
		t.Errorf("Append to a LOG tree: %v", err)
	}
	r = newReplica(t, tr, conn, 12345, u)
	if _, _, err := r.Root(ctx, 10); err == nil || !strings.Contains(err.Error(), "create-tree") {
		t.Errorf("Root of a missing tree: %v", err)
	}
}
