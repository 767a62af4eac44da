package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
)

// ErrUnavailable reports that the store did not answer: the database is
// down, unreachable, restarting or too slow. The request was fine; asking
// again later may work. Backends and wrappers wrap it; Unavailable
// recognises it along with the errors of the drivers that mean the same.
var ErrUnavailable = errors.New("store unavailable")

// Unavailable reports whether err means that the store could not be reached
// or did not answer in time, rather than that the request or the data was
// at fault. It looks at types only, never at text:
//
//   - ErrUnavailable, and context.DeadlineExceeded (a deadline for a store
//     call ran out);
//   - net.Error (refused, reset, timed-out connections) and an unexpected
//     end of a connection;
//   - a driver error that says it happened before anything was sent (a
//     SafeToRetry method returning true, as pgconn's connect and closed-
//     connection errors have);
//   - a server error whose SQLSTATE (an SQLState method) is of class 08
//     (connection exception), 53 (insufficient resources: too many
//     connections, out of memory or disk) or 57P (the server is shutting
//     down, crashed, or is starting up).
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var retry interface{ SafeToRetry() bool }
	if errors.As(err, &retry) && retry.SafeToRetry() {
		return true
	}
	var state interface{ SQLState() string }
	if errors.As(err, &state) {
		code := state.SQLState()
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "57P")
	}
	return false
}
