package mirror

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Replica is a second, independent log engine fed the verified records
// (package replica feeds Trillian). In full mode, sync hands it each batch
// once the batch is committed, and before it serves a head it asks the
// replica for its root of the tree of the head's size: the head is served
// only when the two agree.
type Replica interface {
	// Append gives the replica records just committed: ascending,
	// contiguous ids, possibly starting below what it holds.
	Append(ctx context.Context, recs []store.Record) error
	// RootAt brings the replica to size n (from the store, for what it
	// lacks), waits until it has integrated it, and returns its tree: of
	// size n, or larger with a consistency proof from size n. signed is the
	// replica's own statement of that root, kept as evidence if it
	// disagrees.
	RootAt(ctx context.Context, n int64) (tree tlog.Tree, proof tlog.TreeProof, signed []byte, err error)
	// String names the replica in messages.
	String() string
}

// errReplicaNeedsFull is the error of a run that would use lazy mode with a
// replica configured.
var errReplicaNeedsFull = errors.New("the replica needs full mode: a lazy store holds records with gaps, which a preordered log cannot take (sync with --mode full from an upstream that serves data tiles, or drop the replica)")

// ReplicaMismatchError reports that the replica's root disagrees with the
// signed head's: one of the two implementations (sumkeep's verification, or
// the replica) is wrong. Nothing new was served. The evidence has been kept
// in the store unless KeepErr says why it could not be.
type ReplicaMismatchError struct {
	Evidence store.Evidence
	KeepErr  error
}

func (e *ReplicaMismatchError) Error() string {
	msg := e.Evidence.Message
	if e.KeepErr != nil {
		msg += fmt.Sprintf(" (and keeping the evidence failed: %v)", e.KeepErr)
	} else {
		msg += " (evidence kept: see 'sumkeep status')"
	}
	return msg
}

// Unwrap returns why the evidence could not be kept, if it could not.
func (e *ReplicaMismatchError) Unwrap() error { return e.KeepErr }

// checkReplica returns nil when the replica's tree of head's size has head's
// root. Otherwise it keeps the evidence (once per distinct disagreement) and
// returns a *ReplicaMismatchError. served says head is served already (the
// replica was consulted late: new, or added to a synced store).
func (s *Syncer) checkReplica(ctx context.Context, head store.Head, served bool) error {
	r := s.cfg.Replica
	if head.Size == 0 {
		return nil // nothing to compare: tlog and RFC 6962 name the empty tree differently
	}
	tree, proof, signed, err := r.RootAt(ctx, head.Size)
	if err != nil {
		return fmt.Errorf("sync %s: replica: %w", s.log, err)
	}
	var msg string
	switch {
	case tree.N == head.Size && tree.Hash == head.Hash:
		s.logger.Info("the replica agrees", "replica", r.String(), "size", head.Size, "root", head.Hash)
		return nil
	case tree.N == head.Size:
		msg = fmt.Sprintf("%s computes root %v for the tree of size %d; the upstream's signed head of that size has root %v", r, tree.Hash, head.Size, head.Hash)
	case tree.N > head.Size:
		cerr := tlog.CheckTree(proof, tree.N, tree.Hash, head.Size, head.Hash)
		if cerr == nil {
			s.logger.Info("the replica agrees (it holds more: proven consistent)", "replica", r.String(), "size", head.Size, "replica_size", tree.N)
			return nil
		}
		msg = fmt.Sprintf("%s holds %d leaves with root %v, and its tree does not extend the upstream's signed head of size %d with root %v (%v)", r, tree.N, tree.Hash, head.Size, head.Hash, cerr)
	default:
		return fmt.Errorf("sync %s: replica %s answered for size %d, smaller than the %d asked for", s.log, r, tree.N, head.Size)
	}
	if served {
		msg += fmt.Sprintf("; head %d was served before the replica was consulted, and nothing newer is served", head.Size)
	} else {
		msg += fmt.Sprintf("; head %d is not served", head.Size)
	}
	e := store.Evidence{Kind: store.EvidenceReplicaMismatch, Message: "replica disagrees: " + msg, NoteA: head.Note, Data: signed}
	s.logger.Error("replica disagrees", "replica", r.String(), "size", head.Size, "replica_root", tree.Hash, "signed_root", head.Hash)
	kept, err := s.cfg.Store.Evidence(ctx, s.log)
	if err != nil {
		return &ReplicaMismatchError{Evidence: e, KeepErr: err}
	}
	for _, k := range kept {
		if k.Kind == e.Kind && k.Message == e.Message {
			return &ReplicaMismatchError{Evidence: e} // kept by an earlier run
		}
	}
	if err := s.cfg.Store.AddEvidence(ctx, s.log, e); err != nil {
		return &ReplicaMismatchError{Evidence: e, KeepErr: err}
	}
	return &ReplicaMismatchError{Evidence: e}
}
