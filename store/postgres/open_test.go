package postgres

import (
	"context"
	"testing"

	"github.com/sumkeep/sumkeep/internal/pgtest"
)

// openTest opens a Store on a fresh test database, closed when t ends.
func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
