package mirror_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/upstream"
)

// hostileLookups is an upstream that serves a real log's heads and tiles
// but answers every lookup with the same bytes, whatever was asked.
type hostileLookups struct {
	mirror.Upstream
	body []byte
}

func (h hostileLookups) Lookup(context.Context, string, string) ([]byte, error) {
	return h.body, nil
}

// FuzzLookupAnswer fetches through a lazy mirror whose upstream answers the
// lookup with arbitrary bytes (the seeds are real answers of the log), into
// a fresh store each time. It asks for the module@version the answer's
// record names, if it names one, and else for one the log holds. Whatever
// the bytes, the fetch fails, or it stores exactly the log's own record of
// what was asked for: never another's, never a record the log lacks.
func FuzzLookupAnswer(f *testing.F) {
	u, err := sumdbtest.NewSynthetic(logName, 600)
	if err != nil {
		f.Fatal(err)
	}
	url := u.Start()
	f.Cleanup(u.Close)
	real := upstream.NewClient(url, nil)
	ctx := context.Background()
	for _, id := range []int64{0, 5, 299, 599} {
		p, v, _ := u.Module(id)
		body, err := real.Lookup(ctx, p, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte("5\nexample.com/m v1.0.0 h1:x\n\n"))
	fallbackPath, fallbackVersion, _ := u.Module(5)
	f.Fuzz(func(t *testing.T, body []byte) {
		path, version := fallbackPath, fallbackVersion
		if _, text, _, err := tlog.ParseRecord(body); err == nil {
			if p, v := store.RecordModule(text); module.CheckPath(p) == nil && v != "" {
				path, version = p, v
			}
		}
		st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "fuzz.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		s, err := mirror.New(mirror.Config{Store: st, Upstream: hostileLookups{real, body}, Key: u.VerifierKey(), Mode: mirror.ModeLazy})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Fetch(ctx, path, version); err != nil {
			return
		}
		id, ok := u.Lookup(path, version)
		if !ok {
			t.Fatalf("answer %q: stored %s@%s, which the log does not hold", body, path, version)
		}
		head, err := st.ServedHead(ctx, logName)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := st.Lookup(ctx, logName, path, version, head.Size)
		if err != nil {
			t.Fatalf("answer %q: the fetch succeeded, but %s@%s is not served: %v", body, path, version, err)
		}
		if rec.ID != id || !bytes.Equal(rec.Data, u.Record(id)) {
			t.Fatalf("answer %q: stored record %d %q for %s@%s, the log's is %d %q", body, rec.ID, rec.Data, path, version, id, u.Record(id))
		}
	})
}
