package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
)

type sqlStateError string

func (e sqlStateError) Error() string    { return "server error" }
func (e sqlStateError) SQLState() string { return string(e) }

type retryError bool

func (e retryError) Error() string     { return "driver error" }
func (e retryError) SafeToRetry() bool { return bool(e) }

// TestUnavailable: outages are recognised by type, wrapped or not, and
// request or data errors are not.
func TestUnavailable(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("postgres: reading tile: %w", err) }
	_, dialErr := net.Dial("tcp", "127.0.0.1:1") // refused
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrUnavailable, true},
		{wrap(context.DeadlineExceeded), true},
		{wrap(io.ErrUnexpectedEOF), true},
		{wrap(dialErr), dialErr != nil},
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), true},
		{wrap(retryError(true)), true},
		{wrap(retryError(false)), false},
		{wrap(sqlStateError("57P01")), true},  // admin shutdown
		{wrap(sqlStateError("57P03")), true},  // cannot connect now
		{wrap(sqlStateError("08006")), true},  // connection failure
		{wrap(sqlStateError("53300")), true},  // too many connections
		{wrap(sqlStateError("57014")), false}, // query canceled (by us)
		{wrap(sqlStateError("42P01")), false}, // undefined table
		{wrap(sqlStateError("23505")), false}, // unique violation
		{wrap(ErrNotFound), false},
		{wrap(context.Canceled), false},
		{errors.New("connection refused"), false}, // text means nothing
	} {
		if got := Unavailable(tc.err); got != tc.want {
			t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
