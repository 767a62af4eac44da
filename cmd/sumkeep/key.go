package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/sumkeep/sumkeep/store"
)

// checkKey checks --key against a store (or bundle) that what names: with
// mustHold, the store must hold the key's log, else the error says which
// logs it holds; and the served head of the key's log, if there is one,
// must be signed by the key at all. Both are environment errors (exit 2):
// the wrong key, not a lie of the data. A head that names the key but
// whose signature fails is left to the command's own checks (a forged
// head is a failure, exit 1).
func (e *env) checkKey(ctx context.Context, st store.Store, what string, mustHold bool) error {
	v, err := note.NewVerifier(e.key)
	if err != nil {
		return envError{fmt.Errorf("--key %q: %v", e.key, err)}
	}
	name := v.Name()
	logs, err := st.Logs(ctx)
	if err != nil {
		return envError{fmt.Errorf("%s: reading its logs: %w", what, err)}
	}
	if !slices.Contains(logs, name) {
		if !mustHold {
			return nil
		}
		return envError{keyNamesOtherLog(name, what, logs)}
	}
	h, err := st.ServedHead(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return envError{fmt.Errorf("%s: reading the served head of %s: %w", what, name, err)}
	}
	if _, err := note.Open(h.Note, note.VerifierList(v)); err != nil {
		if _, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
			return envError{fmt.Errorf("%s: its head of %s (tree %d) does not verify with the key: it is not signed by --key %s at all (the wrong key for this log)", what, name, h.Size, e.key)}
		}
	}
	return nil
}

// keyNamesOtherLog says that the key names a log the store does not hold,
// and which it does hold.
func keyNamesOtherLog(name, what string, logs []string) error {
	if len(logs) == 0 {
		return fmt.Errorf("--key names the log %s, and %s holds no log at all (fill it with sumkeep sync, seed or import)", name, what)
	}
	quoted := make([]string, len(logs))
	for i, l := range logs {
		quoted[i] = strconv.Quote(l)
	}
	return fmt.Errorf("--key names the log %s, but %s holds only %s: give the key of that log (--key or SUMKEEP_KEY)", name, what, strings.Join(quoted, ", "))
}
