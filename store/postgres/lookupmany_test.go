package postgres

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/sumkeep/sumkeep/store"
)

// TestLookupMany (issue 19): looking up many records at once answers each
// as Lookup does (found, not stored, or above maxID), across the chunks
// of one query each, in the order asked.
func TestLookupMany(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	commitFiltered(t, s, 1500)
	var paths, versions []string
	for i := 2000; i >= 0; i -= 1 { // 1500..2000 are not stored
		r := filterRecord(i, 0)
		paths, versions = append(paths, r.Path), append(versions, r.Version)
	}
	const maxID = 1200 // records 1200.. are above the tree asked about
	got, errs, err := s.LookupMany(ctx, "log", paths, versions, maxID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range paths {
		want, wantErr := s.Lookup(ctx, "log", paths[i], versions[i], maxID)
		if !errors.Is(errs[i], store.ErrNotFound) != !errors.Is(wantErr, store.ErrNotFound) || (errs[i] == nil) != (wantErr == nil) {
			t.Fatalf("%s: LookupMany error %v, Lookup %v", paths[i], errs[i], wantErr)
		}
		if got[i].ID != want.ID || !bytes.Equal(got[i].Data, want.Data) {
			t.Fatalf("%s: LookupMany %d %q, Lookup %d %q", paths[i], got[i].ID, got[i].Data, want.ID, want.Data)
		}
	}
	if n := countFound(errs); n != maxID {
		t.Errorf("found %d records, want %d", n, maxID)
	}
	if _, _, err := s.LookupMany(ctx, "nolog", paths[:1], versions[:1], maxID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown log: err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.LookupMany(ctx, "log", paths[:2], versions[:1], maxID); err == nil {
		t.Error("mismatched paths and versions: no error")
	}
}

func countFound(errs []error) int {
	n := 0
	for _, e := range errs {
		if e == nil {
			n++
		}
	}
	return n
}
