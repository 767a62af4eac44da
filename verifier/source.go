package verifier

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"
)

// A Source looks records up in a checksum database and proves them in a
// tree head signed with the key it was given.
type Source interface {
	// Records returns, for each module version, the record the checksum
	// database holds for it, proven in a signed tree head, or why there is
	// none: an error wrapping ErrNotFound, a *ProofError or a
	// *MisbehaviourError. The returned error is for failures of the
	// environment (the store or the server cannot be read, the key is
	// wrong): it aborts the whole run.
	Records(ctx context.Context, mods []module.Version) ([]Answer, error)
	// Database describes the database and the newest signed tree the
	// records were proven in (after Records).
	Database() Database
}

// An Answer is a Source's answer for one module version.
type Answer struct {
	// Record is the exact record text, proven in the signed tree.
	Record []byte
	// Err says why there is no proven record.
	Err error
}

// ErrNotFound reports that the checksum database holds no record for a
// module version.
var ErrNotFound = errors.New("not in the checksum database")

// A notFoundError is ErrNotFound with a message saying what is known: a
// store or bundle may lack a record the log holds, a server's answer is
// only its word.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

// A ProofError reports a record that could not be proven in the signed tree
// head: a record or tile that does not hash to the signed root, a missing
// tile, an answer from a server that does not verify.
type ProofError struct {
	ID  int64 // the record's id, or -1 if unknown
	Err error
}

func (e *ProofError) Error() string {
	if e.ID >= 0 {
		return fmt.Sprintf("record %d: %v", e.ID, e.Err)
	}
	return e.Err.Error()
}

func (e *ProofError) Unwrap() error { return e.Err }

// A MisbehaviourError reports that the checksum database's answers are not
// consistent with a tree head signed with the key that was verified before:
// two signed heads that are not consistent (a fork), or hash tiles that do
// not hash to the signed root of a head kept from an earlier run.
type MisbehaviourError struct {
	Msg    string // what was seen, for people
	Detail string // the evidence: the signed notes involved and the proof
}

func (e *MisbehaviourError) Error() string { return e.Msg }

// Database describes the checksum database a report was verified against.
type Database struct {
	Name   string    `json:"name"`
	Source string    `json:"source"`
	URL    string    `json:"url"`
	Tree   tlog.Tree `json:"-"`
}
