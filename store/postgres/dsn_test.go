package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestOpenBadDSN (issue 15): a connection string that does not parse is
// not repeated in the error (pgx's own error quotes it, and misses a
// password holding an '@').
func TestOpenBadDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://postgres:pg@s3cr3t@127.0.0.1:bad/db",
		"postgres://postgres:pg-s3cr3t@127.0.0.1:5432/db?connect_timeout=x",
		"host=127.0.0.1 password = pg-s3cr3t port=x",
	} {
		for _, open := range []func(context.Context, string) (*Store, error){Open, OpenReadOnly} {
			_, err := open(context.Background(), dsn)
			if !errors.Is(err, ErrDSN) {
				t.Errorf("%q: err = %v, want ErrDSN", dsn, err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("%q: the error shows the password: %v", dsn, err)
			}
		}
	}
}
