package mirror

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// Why a record was not fetched (FetchError.Kind).
const (
	// FetchNotInLog: the upstream answered 404 or 410 for the lookup.
	FetchNotInLog = "not-in-log"
	// FetchRefused: the upstream refused the lookup with a 4xx status
	// other than 404 and 410 (a module proxy's 403, a 400 "module host
	// not permitted"): the record may well be in the log.
	FetchRefused = "refused"
	// FetchUnreachable: no upstream, no answer, or a 5xx or 429.
	FetchUnreachable = "unreachable"
	// FetchUnverified: the upstream's answer did not verify (signature,
	// consistency, inclusion proof, record text).
	FetchUnverified = "failed-verification"
	// FetchNotStored: the record was fetched and verified, but the store
	// could not keep it (its disk is full, it failed or is down): nothing
	// the upstream sent is at fault.
	FetchNotStored = "not-stored"
	// FetchFailed: anything else (the store could not be read, ...).
	FetchFailed = "failed"
	// FetchFullMode: a mirror in full mode does not fetch on demand.
	FetchFullMode = "full-mode"
)

// ErrWrongKey reports a signed tree head that is not signed by the
// configured key at all (note.UnverifiedNoteError): the wrong key for the
// upstream, or another log's head. It is an environment error, not a lie
// of the upstream.
var ErrWrongKey = errors.New("not signed by that key at all (the wrong key, or another log's head)")

// A FetchError says why Fetch stored no record. It wraps the cause, so
// errors.Is(err, ErrNoRecord) and errors.As(err, *MisbehaviourError) work
// as before. A refused lookup wraps store.ErrNotFound as well: to the
// server it is, like a record not in the log, a plain 404 (with the
// reason), not a failure to warn of.
type FetchError struct {
	Kind string
	// Reason is a sentence for the clients of the mirror: what the
	// upstream said (its status and words, made printable), never its URL.
	Reason string
	Err    error
}

func (e *FetchError) Error() string { return e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

// ClientReason is Reason, for the server's 404 body.
func (e *FetchError) ClientReason() string { return e.Reason }

// StoreError reports that the store could not keep what was fetched and
// verified (a commit failed: the disk is full, the database is down or
// refused the write). The upstream is not at fault, and fetching again
// does not help until the store can be written, so a seed stops on it.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return "storing what was fetched and verified: " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// StoreFailed reports true: the store, not the upstream, failed (for
// callers that do not import this package, such as the server).
func (e *StoreError) StoreFailed() bool { return true }

// unverifiedError marks an upstream answer that did not verify.
type unverifiedError struct{ err error }

func (e *unverifiedError) Error() string { return e.err.Error() }
func (e *unverifiedError) Unwrap() error { return e.err }

func unverified(err error) error {
	if err == nil {
		return nil
	}
	return &unverifiedError{err}
}

// classifyFetch wraps an error of fetch in a FetchError.
func classifyFetch(path, version string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FetchError
	if errors.As(err, &fe) {
		return err
	}
	var (
		se  *upstream.StatusError
		mis *MisbehaviourError
		ue  *unverifiedError
		ne  net.Error
		ste *StoreError
	)
	e := &FetchError{Err: err}
	switch {
	case errors.Is(err, errFullMode):
		e.Kind, e.Reason = FetchFullMode, "not in this mirror, which copies the whole log (full mode) and does not fetch on demand"
	case errors.As(err, &ste):
		// Before the upstream's cases: a database connection that failed
		// mid-commit is a net.Error too.
		e.Kind, e.Reason = FetchNotStored, "the mirror fetched and verified it but could not store it (its log says why)"
	case errors.Is(err, ErrNoRecord):
		e.Kind, e.Reason = FetchNotInLog, "the upstream checksum database has no record of "+path+"@"+version
		if errors.As(err, &se) {
			e.Reason += " (it answered " + se.Said() + ")"
		}
	case errors.As(err, new(*upstream.MalformedError)):
		e.Kind, e.Reason = FetchUnverified, "the upstream's answer was not a checksum database answer (malformed)"
	case errors.As(err, new(*upstream.PageError)):
		e.Kind, e.Reason = FetchUnreachable, "the upstream's address answered an HTML page, not the checksum database (a captive portal or a proxy's error page in the way?)"
	case errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests:
		e.Kind, e.Reason = FetchRefused, "the upstream refused it: "+se.Said()
		e.Err = fmt.Errorf("%w (%w)", err, store.ErrNotFound)
	case errors.As(err, &se):
		e.Kind, e.Reason = FetchUnreachable, "the upstream failed: "+se.Said()
	case errors.As(err, new(*tls.CertificateVerificationError)):
		e.Kind, e.Reason = FetchUnreachable, "the upstream's TLS certificate is not trusted by the mirror (its log says why)"
	case errors.Is(err, errNoUpstream):
		e.Kind, e.Reason = FetchUnreachable, "the mirror has no upstream to fetch from"
	case errors.Is(err, context.DeadlineExceeded):
		e.Kind, e.Reason = FetchUnreachable, "the upstream did not answer in time"
	case errors.As(err, &ne):
		e.Kind, e.Reason = FetchUnreachable, "the upstream could not be reached"
	case errors.Is(err, ErrWrongKey):
		e.Kind, e.Reason = FetchUnverified, "the upstream's signed tree head is not signed by the mirror's key"
	case errors.As(err, &mis) || errors.As(err, &ue):
		e.Kind, e.Reason = FetchUnverified, "the upstream's answer did not verify (the mirror's log says why)"
	default:
		e.Kind, e.Reason = FetchFailed, "the mirror could not fetch it (its log says why)"
	}
	return e
}
