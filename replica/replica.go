// Package replica is a second, independent log engine — Trillian — fed the
// verified records; a head is served only when its root agrees.
//
// sum.golang.org runs on Trillian. A Trillian tree of type PREORDERED_LOG
// takes leaves whose indexes are already assigned (AddSequencedLeaves), and
// Trillian's signer integrates them and computes the Merkle root with its own
// code and its own storage. The checksum database hashes its records as RFC
// 6962 does, and so does Trillian, so Trillian's root of the tree of size N
// must equal the root hash in the upstream's signed head of size N. A
// Replica feeds a tree the records sync has verified and committed (each
// record's exact bytes as the leaf value, its id as the leaf index) and
// reports Trillian's root of the tree of a given size; sync compares it with
// the signed head's before it serves the head.
//
// A Replica is resumable and idempotent: it learns from Trillian what the
// tree holds, catches up from the store when it is behind (a new tree, or
// one that was down) and never sends a leaf Trillian holds already. It
// needs a store holding every record below the sizes it is asked about: a
// full sync's store, never a lazy one.
package replica

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/types"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sumkeep/sumkeep/store"
)

// RecordReader reads committed records: what catching up is done from.
// store.Reader has it.
type RecordReader interface {
	// ReadRecords returns records [start, start+n), or an error if any is
	// missing.
	ReadRecords(ctx context.Context, log string, start, n int64) ([]store.Record, error)
}

// Config configures a Replica.
type Config struct {
	// Conn is a connection to a Trillian log server (see Dial).
	Conn grpc.ClientConnInterface
	// Addr names the server in messages.
	Addr string
	// TreeID is the PREORDERED_LOG tree to feed.
	TreeID int64
	// Records is where a replica that is behind catches up from, and Log
	// the log whose records it reads.
	Records RecordReader
	Log     string
	// Chunk is how many leaves go in one AddSequencedLeaves request at
	// most (default 8000: Trillian's PostgreSQL storage adds leaves faster
	// in bigger requests). A request also stops short of maxRequestBytes.
	Chunk int
	// Stall is how long Root waits for Trillian to integrate leaves
	// without any progress before it gives up (default 2 minutes).
	Stall time.Duration
	// RPCTimeout bounds each call to Trillian (default 1 minute).
	RPCTimeout time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Replica feeds one Trillian tree. Its methods may be called from several
// goroutines; they take turns.
type Replica struct {
	cfg    Config
	log    trillian.TrillianLogClient
	admin  trillian.TrillianAdminClient
	logger *slog.Logger

	mu         gosync.Mutex
	checked    bool  // the tree was found to be an active PREORDERED_LOG
	held       int64 // leaves [0, held) are known to be in the tree; -1: unknown
	integrated int64 // Trillian's tree size when last asked
	refused    int64 // leaves Trillian refused as conflicting since held was learnt
	first      int64 // index of the first such leaf
	sent       int64 // leaves sent, all told
	refusedAll int64
}

// Dial connects to a Trillian log server at addr (host:port), in plain
// text as Trillian serves by default. The connection is made lazily.
func Dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("trillian %s: %w", addr, err)
	}
	return conn, nil
}

// New returns a Replica. It makes no call to Trillian yet.
func New(cfg Config) (*Replica, error) {
	if cfg.Conn == nil {
		return nil, errors.New("replica: a connection to Trillian is required")
	}
	if cfg.TreeID == 0 {
		return nil, errors.New("replica: a Trillian tree id is required (create one with 'sumkeep trillian create-tree')")
	}
	if cfg.Records == nil || cfg.Log == "" {
		return nil, errors.New("replica: the store and log to catch up from are required")
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 8000
	}
	// A request must fit in the window, or it would wait for itself.
	cfg.Chunk = min(cfg.Chunk, Window/2)
	if cfg.Stall <= 0 {
		cfg.Stall = 2 * time.Minute
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = time.Minute
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Replica{
		cfg:    cfg,
		log:    trillian.NewTrillianLogClient(cfg.Conn),
		admin:  trillian.NewTrillianAdminClient(cfg.Conn),
		logger: logger.With("trillian", cfg.Addr, "tree", cfg.TreeID),
		held:   -1,
	}, nil
}

// String names the replica in messages.
func (r *Replica) String() string {
	return fmt.Sprintf("Trillian tree %d at %s", r.cfg.TreeID, r.cfg.Addr)
}

// Sent returns how many leaves this Replica has sent to Trillian.
func (r *Replica) Sent() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// Refused returns how many of them Trillian refused because it held a leaf
// at that index (or that leaf at another index) already.
func (r *Replica) Refused() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refusedAll
}

// Root is Trillian's latest root of the tree.
type Root struct {
	Tree tlog.Tree // size and root hash
	// Signed is Trillian's signed log root exactly as it sent it (the
	// TLS-serialised LogRootV1).
	Signed []byte
	// Time is when Trillian made it.
	Time time.Time
}

// Latest returns Trillian's latest root of the tree.
func (r *Replica) Latest(ctx context.Context) (Root, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RPCTimeout)
	defer cancel()
	resp, err := r.log.GetLatestSignedLogRoot(ctx, &trillian.GetLatestSignedLogRootRequest{LogId: r.cfg.TreeID})
	if err != nil {
		return Root{}, r.rpcError("reading the latest log root", err)
	}
	return parseRoot(resp.GetSignedLogRoot())
}

func parseRoot(slr *trillian.SignedLogRoot) (Root, error) {
	if slr == nil {
		return Root{}, errors.New("Trillian sent no log root")
	}
	var lr types.LogRootV1
	if err := lr.UnmarshalBinary(slr.LogRoot); err != nil {
		return Root{}, fmt.Errorf("Trillian's log root: %w", err)
	}
	if len(lr.RootHash) != tlog.HashSize {
		return Root{}, fmt.Errorf("Trillian's log root has a %d-byte root hash, want %d (is the tree's hasher RFC 6962 SHA-256?)", len(lr.RootHash), tlog.HashSize)
	}
	if lr.TreeSize > 1<<62 {
		return Root{}, fmt.Errorf("Trillian's log root has tree size %d", lr.TreeSize)
	}
	root := Root{Tree: tlog.Tree{N: int64(lr.TreeSize)}, Signed: slr.LogRoot, Time: time.Unix(0, int64(lr.TimestampNanos)).UTC()}
	copy(root.Tree.Hash[:], lr.RootHash)
	return root, nil
}

func (r *Replica) rpcError(doing string, err error) error {
	return fmt.Errorf("%s: %s: %w", r, doing, err)
}

// check makes sure the tree exists and takes sequenced leaves.
func (r *Replica) check(ctx context.Context) error {
	if r.checked {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RPCTimeout)
	defer cancel()
	tree, err := r.admin.GetTree(ctx, &trillian.GetTreeRequest{TreeId: r.cfg.TreeID})
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%s: there is no such tree; create one with 'sumkeep trillian create-tree --trillian %s'", r, r.cfg.Addr)
	}
	if err != nil {
		return r.rpcError("reading the tree's settings", err)
	}
	if tree.TreeType != trillian.TreeType_PREORDERED_LOG {
		return fmt.Errorf("%s is a %s tree; the replica needs a PREORDERED_LOG tree, whose leaves come with their indexes (create one with 'sumkeep trillian create-tree')", r, tree.TreeType)
	}
	if tree.TreeState != trillian.TreeState_ACTIVE {
		return fmt.Errorf("%s is %s, not ACTIVE: it takes no new leaves", r, tree.TreeState)
	}
	r.checked = true
	return nil
}

// Window is how many leaves a Replica sends ahead of those Trillian has
// integrated: a sync faster than Trillian's signer waits for it rather than
// piling leaves up in its queue, and a Replica that starts afresh (after a
// kill, say) can read back every leaf the tree holds beyond its integrated
// size, and sends none of them again.
const Window = 20000

// maxProbeBytes bounds the reply that reads them back (gRPC's default is
// 4 MiB; Window leaves of the checksum database take about 6).
const maxProbeBytes = 64 << 20

// maxRequestBytes bounds an AddSequencedLeaves request, well under the 4
// MiB a gRPC server takes by default; leafOverhead is a leaf's size in it
// beyond its value (the index and protobuf framing, generously).
const (
	maxRequestBytes = 3 << 20
	leafOverhead    = 32
)

// learn finds out how many leaves the tree holds, integrated or not, unless
// it is known.
//
// Trillian's root counts the integrated leaves. Leaves added and not yet
// integrated (by a run that ended before the signer got to them; at most
// Window) are read back with GetLeavesByRange: for a PREORDERED_LOG it
// returns the sequenced leaves from a start index inside the tree,
// integrated or not. In a tree with none integrated there is no such start:
// the leaves it holds are sent again and refused as held (see send).
// Trillian holds each leaf once either way, and the root comparison judges.
func (r *Replica) learn(ctx context.Context) error {
	if r.held >= 0 {
		return nil
	}
	if err := r.check(ctx); err != nil {
		return err
	}
	root, err := r.Latest(ctx)
	if err != nil {
		return err
	}
	held := root.Tree.N
	if held > 0 {
		leaves, err := r.leaves(ctx, held-1, Window+1)
		if err != nil {
			return err
		}
		for i, l := range leaves {
			if l.GetLeafIndex() != root.Tree.N-1+int64(i) {
				break
			}
			if i > 0 {
				held++ // leaf held-1+i, not integrated yet
			}
		}
	}
	if held > root.Tree.N {
		r.logger.Info("Trillian holds leaves it has not integrated yet", "integrated", root.Tree.N, "held", held)
	}
	r.held, r.integrated, r.refused = held, root.Tree.N, 0
	return nil
}

func (r *Replica) leaves(ctx context.Context, start, count int64) ([]*trillian.LogLeaf, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RPCTimeout)
	defer cancel()
	resp, err := r.log.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{LogId: r.cfg.TreeID, StartIndex: start, Count: count},
		grpc.MaxCallRecvMsgSize(maxProbeBytes))
	if err != nil {
		return nil, r.rpcError(fmt.Sprintf("reading leaves [%d, %d)", start, start+count), err)
	}
	return resp.Leaves, nil
}

// Append gives the replica records just committed to the store: ascending,
// contiguous ids. Those the tree holds already are not sent again; if the
// tree lacks records before them, it is first caught up from the store.
func (r *Replica) Append(ctx context.Context, recs []store.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].ID != recs[i-1].ID+1 {
			return fmt.Errorf("%s: records to append are not contiguous: %d follows %d", r, recs[i].ID, recs[i-1].ID)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.learn(ctx); err != nil {
		return err
	}
	first := recs[0].ID
	if first > r.held {
		if err := r.catchUp(ctx, first); err != nil {
			return err
		}
	}
	if skip := r.held - first; skip > 0 {
		if skip >= int64(len(recs)) {
			return nil
		}
		recs = recs[skip:]
	}
	return r.send(ctx, recs)
}

// catchUp sends the store's records [held, n).
func (r *Replica) catchUp(ctx context.Context, n int64) error {
	if r.held >= n {
		return nil
	}
	r.logger.Info("catching the replica up from the store", "from", r.held, "to", n)
	chunk := int64(r.cfg.Chunk) * 4
	for r.held < n {
		k := min(chunk, n-r.held)
		recs, err := r.cfg.Records.ReadRecords(ctx, r.cfg.Log, r.held, k)
		if err != nil {
			return fmt.Errorf("%s: reading records [%d, %d) from the store to catch up: %w", r, r.held, r.held+k, err)
		}
		if err := r.send(ctx, recs); err != nil {
			return err
		}
	}
	return nil
}

// send adds recs, which start at held, to the tree.
func (r *Replica) send(ctx context.Context, recs []store.Record) error {
	for len(recs) > 0 {
		k, size := 0, 0
		for k < min(r.cfg.Chunk, len(recs)) && (k == 0 || size+len(recs[k].Data)+leafOverhead <= maxRequestBytes) {
			size += len(recs[k].Data) + leafOverhead
			k++
		}
		part := recs[:k]
		if part[0].ID != r.held {
			return fmt.Errorf("%s: internal error: sending leaf %d, but the tree holds %d", r, part[0].ID, r.held)
		}
		if ahead := r.held + int64(k) - Window; r.integrated < ahead {
			if _, err := r.waitFor(ctx, ahead); err != nil {
				return err
			}
		}
		leaves := make([]*trillian.LogLeaf, k)
		for i, rec := range part {
			leaves[i] = &trillian.LogLeaf{LeafValue: rec.Data, LeafIndex: rec.ID}
		}
		cctx, cancel := context.WithTimeout(ctx, r.cfg.RPCTimeout)
		resp, err := r.log.AddSequencedLeaves(cctx, &trillian.AddSequencedLeavesRequest{LogId: r.cfg.TreeID, Leaves: leaves})
		cancel()
		if err != nil {
			// What this call stored is unknown: learn it again.
			r.held = -1
			return r.rpcError(fmt.Sprintf("adding leaves [%d, %d)", part[0].ID, part[0].ID+int64(k)), err)
		}
		if len(resp.Results) != k {
			r.held = -1
			return fmt.Errorf("%s: adding %d leaves: %d results came back", r, k, len(resp.Results))
		}
		for i, res := range resp.Results {
			switch c := codes.Code(res.GetStatus().GetCode()); c {
			case codes.OK:
			case codes.AlreadyExists, codes.FailedPrecondition:
				// Trillian holds a leaf at this index, or this leaf at
				// another: sent before (by a run that ended before it
				// could learn so), or the tree is not this log's. The
				// root comparison tells which.
				if r.refused == 0 {
					r.first = part[i].ID
				}
				r.refused++
				r.refusedAll++
			default:
				r.held = -1
				return fmt.Errorf("%s: adding leaf %d: %s: %s", r, part[i].ID, c, res.GetStatus().GetMessage())
			}
		}
		r.held += int64(k)
		r.sent += int64(k)
		recs = recs[k:]
	}
	return nil
}

// Root brings the tree to size n — sending the store's records it lacks —,
// waits until Trillian has integrated them, and returns Trillian's root. Its
// size is n, or larger if the tree holds more leaves than n; then proof is
// Trillian's consistency proof from the tree of size n to it.
//
// Waiting ends with an error when Trillian integrates nothing for
// Config.Stall: its signer is not running, or a leaf it refused left a gap.
func (r *Replica) Root(ctx context.Context, n int64) (root Root, proof tlog.TreeProof, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.learn(ctx); err != nil {
		return root, nil, err
	}
	if err := r.catchUp(ctx, n); err != nil {
		return root, nil, err
	}
	root, err = r.waitFor(ctx, n)
	if err != nil {
		return root, nil, err
	}
	r.logger.Info("Trillian has integrated the tree", "size", root.Tree.N, "root", root.Tree.Hash,
		"leaves_sent", r.sent, "leaves_refused", r.refusedAll)
	if root.Tree.N == n {
		return root, nil, nil
	}
	proof, err = r.consistency(ctx, n, root.Tree.N)
	return root, proof, err
}

// waitFor polls Trillian's latest root until its size reaches n.
func (r *Replica) waitFor(ctx context.Context, n int64) (Root, error) {
	delay := 10 * time.Millisecond
	last, progressed := int64(-1), time.Now()
	for {
		root, err := r.Latest(ctx)
		if err != nil {
			return root, err
		}
		r.integrated = root.Tree.N
		if root.Tree.N >= n {
			return root, nil
		}
		now := time.Now()
		if root.Tree.N > last {
			if last >= 0 {
				delay = 10 * time.Millisecond
			}
			last, progressed = root.Tree.N, now
		} else if now.Sub(progressed) > r.cfg.Stall {
			msg := fmt.Sprintf("%s: Trillian has integrated %d of %d leaves and none more for %s: is trillian_log_signer running on the same database (with --force_master, or elected master) and sequencing this tree?",
				r, root.Tree.N, n, r.cfg.Stall)
			if r.refused > 0 {
				msg += fmt.Sprintf(" Trillian refused %d leaves as held already (the first at index %d): the tree may hold another log's leaves.", r.refused, r.first)
			}
			return root, errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return root, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

func (r *Replica) consistency(ctx context.Context, n, m int64) (tlog.TreeProof, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RPCTimeout)
	defer cancel()
	resp, err := r.log.GetConsistencyProof(ctx, &trillian.GetConsistencyProofRequest{LogId: r.cfg.TreeID, FirstTreeSize: n, SecondTreeSize: m})
	if err != nil {
		return nil, r.rpcError(fmt.Sprintf("reading a consistency proof from size %d to %d", n, m), err)
	}
	var proof tlog.TreeProof
	for _, h := range resp.GetProof().GetHashes() {
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("%s: a consistency proof hash of %d bytes", r, len(h))
		}
		proof = append(proof, tlog.Hash(h))
	}
	return proof, nil
}

// RootAt is Root for sync: Trillian's tree (of size n, or larger with a
// consistency proof from n) and its signed log root.
func (r *Replica) RootAt(ctx context.Context, n int64) (tlog.Tree, tlog.TreeProof, []byte, error) {
	root, proof, err := r.Root(ctx, n)
	return root.Tree, proof, root.Signed, err
}

// emptyRoot is the RFC 6962 hash of the empty tree: SHA-256 of nothing.
var emptyRoot = sha256.Sum256(nil)

// CreateTree creates a PREORDERED_LOG tree on the Trillian at conn,
// initialises it, and checks that its empty root is RFC 6962's, as the
// checksum database's hashing needs. It returns the tree's id.
func CreateTree(ctx context.Context, conn grpc.ClientConnInterface, displayName, description string) (int64, error) {
	admin := trillian.NewTrillianAdminClient(conn)
	logc := trillian.NewTrillianLogClient(conn)
	// Trillian's storage limits the names.
	if len(displayName) > 20 {
		displayName = displayName[:20]
	}
	if len(description) > 200 {
		description = description[:200]
	}
	tree, err := admin.CreateTree(ctx, &trillian.CreateTreeRequest{Tree: &trillian.Tree{
		TreeState:       trillian.TreeState_ACTIVE,
		TreeType:        trillian.TreeType_PREORDERED_LOG,
		DisplayName:     displayName,
		Description:     description,
		MaxRootDuration: durationpb.New(time.Hour),
	}})
	if err != nil {
		return 0, fmt.Errorf("creating a Trillian tree: %w", err)
	}
	id := tree.TreeId
	if _, err := logc.InitLog(ctx, &trillian.InitLogRequest{LogId: id}); err != nil {
		return id, fmt.Errorf("initialising Trillian tree %d: %w", id, err)
	}
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		resp, err := logc.GetLatestSignedLogRoot(ctx, &trillian.GetLatestSignedLogRootRequest{LogId: id})
		if err == nil {
			root, err := parseRoot(resp.GetSignedLogRoot())
			if err != nil {
				return id, fmt.Errorf("Trillian tree %d: %w", id, err)
			}
			if root.Tree.N != 0 || root.Tree.Hash != tlog.Hash(emptyRoot) {
				return id, fmt.Errorf("Trillian tree %d starts at size %d with root %v, not the RFC 6962 empty tree (%v): its hasher cannot agree with the checksum database's", id, root.Tree.N, root.Tree.Hash, tlog.Hash(emptyRoot))
			}
			return id, nil
		}
		if status.Code(err) != codes.FailedPrecondition {
			return id, fmt.Errorf("reading Trillian tree %d's first root: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return id, fmt.Errorf("reading Trillian tree %d's first root: %w", id, ctx.Err())
		case <-time.After(delay):
		}
	}
}
