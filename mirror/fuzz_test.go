package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/upstream"
)

// fuzzLog starts a log of 600 records signed with a key fixed by seed
// (the seeds' signed heads must verify in every fuzzing worker, each of
// which builds its own log), and returns it with a client of it.
func fuzzLog(f *testing.F, seed string) (*sumdbtest.Upstream, mirror.Upstream) {
	u, err := sumdbtest.NewFixedKey(logName, seed)
	if err != nil {
		f.Fatal(err)
	}
	if err := u.AddSynthetic(600); err != nil {
		f.Fatal(err)
	}
	url := u.Start()
	f.Cleanup(u.Close)
	return u, upstream.NewClient(url, nil)
}

// fuzzSyncer returns a syncer in mode over a fresh SQLite store, reading
// up.
func fuzzSyncer(t testing.TB, up mirror.Upstream, key, mode string) (store.Store, *mirror.Syncer) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fuzz.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s, err := mirror.New(mirror.Config{Store: st, Upstream: up, Key: key, Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return st, s
}

// wantServed fails t unless st serves record id of u, under the tree of
// size size, as the log has it: input names what was fuzzed.
func wantServed(t *testing.T, st store.Store, u *sumdbtest.Upstream, size, id int64, input string) {
	t.Helper()
	path, version, _ := u.Module(id)
	rec, err := st.Lookup(context.Background(), logName, path, version, size)
	if err != nil {
		t.Fatalf("%s: it succeeded, but %s@%s is not served: %v", input, path, version, err)
	}
	if rec.ID != id || !bytes.Equal(rec.Data, u.Record(id)) {
		t.Fatalf("%s: stored record %d %q for %s@%s, the log's is %d %q", input, rec.ID, rec.Data, path, version, id, u.Record(id))
	}
}

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
	u, real := fuzzLog(f, "FuzzLookupAnswer")
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
		st, s := fuzzSyncer(t, hostileLookups{real, body}, u.VerifierKey(), mirror.ModeLazy)
		if err := s.Fetch(ctx, path, version); err != nil {
			return
		}
		id, ok := u.Lookup(path, version)
		if !ok {
			t.Fatalf("answer %q: stored %s@%s, which the log does not hold", body, path, version)
		}
		wantServed(t, st, u, servedSize(t, st), id, fmt.Sprintf("answer %q", body))
	})
}

// hostileTiles is an upstream that serves a real log's heads, lookups and
// tiles, but answers every request for the first level-0 tile, at any
// width, with the same bytes.
type hostileTiles struct {
	mirror.Upstream
	data []byte
}

func (h hostileTiles) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if t.L == 0 && t.N == 0 {
		return h.data, nil
	}
	return h.Upstream.Tile(ctx, t)
}

// FuzzTileAnswer fetches one record through a lazy mirror whose upstream
// answers its level-0 tile with arbitrary bytes (the seeds are the real
// tile, another tile, and the real one cut short or run long), into a
// fresh store each time. Whatever the bytes, the fetch fails, or it stores
// exactly the log's record and the log's own tile: the proof reader
// authenticates every tile it reads before anything is kept.
func FuzzTileAnswer(f *testing.F) {
	u, real := fuzzLog(f, "FuzzTileAnswer")
	ctx := context.Background()
	const id = 5
	tile := tlog.Tile{H: store.TileHeight, L: 0, N: 0, W: 1 << store.TileHeight} // the one record 5 is in
	want, err := tlog.ReadTileData(tile, u.HashReader())
	if err != nil {
		f.Fatal(err)
	}
	other, err := tlog.ReadTileData(tlog.Tile{H: store.TileHeight, L: 0, N: 2, W: 600 - 512}, u.HashReader())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(want)
	f.Add(other)
	f.Add(want[:len(want)-tlog.HashSize])
	f.Add(append(append([]byte{}, want...), want[:tlog.HashSize]...))
	path, version, _ := u.Module(id)
	f.Fuzz(func(t *testing.T, data []byte) {
		st, s := fuzzSyncer(t, hostileTiles{real, data}, u.VerifierKey(), mirror.ModeLazy)
		if err := s.Fetch(ctx, path, version); err != nil {
			return
		}
		wantServed(t, st, u, servedSize(t, st), id, fmt.Sprintf("tile %d bytes", len(data)))
		got, err := st.ReadTiles(ctx, logName, []tlog.Tile{tile})
		if err != nil {
			t.Fatalf("tile %d bytes: the fetch succeeded, but %s is not stored: %v", len(data), tile.Path(), err)
		}
		if !bytes.Equal(got[0], want) {
			t.Fatalf("tile %d bytes: stored %s differs from the log's", len(data), tile.Path())
		}
	})
}

// hostileData is an upstream that serves a real log's heads, lookups and
// tiles, but answers every request for the first data tile, at any width,
// with the same bytes.
type hostileData struct {
	mirror.Upstream
	data []byte
}

func (h hostileData) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if t.L == -1 && t.N == 0 {
		return h.data, nil
	}
	return h.Upstream.Tile(ctx, t)
}

// FuzzDataTile runs a full sync, into a fresh store each time, from an
// upstream that answers the first data tile with arbitrary bytes (the seeds
// are the real tile, the next one, the real one without its last blank
// line, and the real one with two records swapped). Whatever the bytes,
// the sync fails, or every record stored is the log's own, under its own
// id.
func FuzzDataTile(f *testing.F) {
	u, real := fuzzLog(f, "FuzzDataTile")
	ctx := context.Background()
	full := func(n int64) []byte {
		data, err := real.Tile(ctx, tlog.Tile{H: store.TileHeight, L: -1, N: n, W: 1 << store.TileHeight})
		if err != nil {
			f.Fatal(err)
		}
		return data
	}
	want := full(0)
	f.Add(want)
	f.Add(full(1))
	f.Add(want[:len(want)-1])
	first, second := u.Record(0), u.Record(1)
	swapped := append(append(append(append([]byte{}, second...), '\n'), first...), '\n')
	f.Add(append(swapped, want[len(first)+len(second)+2:]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, s := fuzzSyncer(t, hostileData{real, data}, u.VerifierKey(), mirror.ModeFull)
		if _, err := s.Once(ctx); err != nil {
			return
		}
		size := servedSize(t, st)
		for id := range u.Size() {
			wantServed(t, st, u, size, id, fmt.Sprintf("data tile %d bytes", len(data)))
		}
	})
}

// hostileLatest is an upstream that serves a real log's lookups and tiles,
// but answers /latest with whatever note holds.
type hostileLatest struct {
	mirror.Upstream
	note *atomic.Pointer[[]byte]
}

func (h hostileLatest) Latest(context.Context) ([]byte, error) {
	return *h.note.Load(), nil
}

// FuzzLatestAnswer runs a lazy sync, into a fresh store each time, from an
// upstream whose /latest answers arbitrary bytes, after the store has
// served the log's head of 400 records and fetched a record (whose lookup
// came with the log's newest head, 600). The seeds are the log's heads of
// 600, 400 and 200 records, a head of another history signed with the
// same key (a fork), and a note that is not signed. Whether the sync
// succeeds or fails, every head the store holds, the served one included,
// is a head of the log (its size and root hash the log's), no larger than
// the log, and every stored record is the log's own, provable under the
// served head.
func FuzzLatestAnswer(f *testing.F) {
	u, real := fuzzLog(f, "FuzzLatestAnswer")
	ctx := context.Background()
	at := func(n int64) []byte {
		b, err := u.SignedHeadAt(n)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	fork, err := u.Fork(300)
	if err != nil {
		f.Fatal(err)
	}
	if err := fork.AddSynthetic(300); err != nil {
		f.Fatal(err)
	}
	f.Add(at(600))
	f.Add(at(400))
	f.Add(at(200))
	f.Add(fork.SignedHead())
	f.Add([]byte("go.sum database tree\n600\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n"))
	start := at(400)
	path, version, _ := u.Module(5)
	f.Fuzz(func(t *testing.T, note []byte) {
		var latest atomic.Pointer[[]byte]
		latest.Store(&start)
		st, s := fuzzSyncer(t, hostileLatest{real, &latest}, u.VerifierKey(), mirror.ModeLazy)
		if _, err := s.Once(ctx); err != nil {
			t.Fatalf("the first sync, to the log's head of 400: %v", err)
		}
		if err := s.Fetch(ctx, path, version); err != nil {
			t.Fatalf("fetching %s@%s: %v", path, version, err)
		}
		latest.Store(&note)
		_, err := s.Once(ctx)
		input := fmt.Sprintf("/latest %q (sync: %v)", note, err)
		wantLogHeads(t, st, u, input)
		wantServed(t, st, u, servedSize(t, st), 5, input)
		checkProvable(t, st, u)
	})
}

// wantLogHeads fails t unless every head st holds, the served one
// included, is a head of u's log: no larger than it, with its root hash.
// input names what was fuzzed.
func wantLogHeads(t *testing.T, st store.Store, u *sumdbtest.Upstream, input string) {
	t.Helper()
	ctx := context.Background()
	heads, err := st.Heads(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	if served, err := st.ServedHead(ctx, logName); err == nil {
		heads = append(heads, served)
	} else if !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	for _, h := range heads {
		if h.Size > u.Size() {
			t.Fatalf("%s: the store holds a head of %d records; the log has %d", input, h.Size, u.Size())
		}
		want, err := tlog.TreeHash(h.Size, u.HashReader())
		if err != nil {
			t.Fatal(err)
		}
		if h.Hash != want {
			t.Fatalf("%s: the store holds a head of %d records that is not the log's", input, h.Size)
		}
	}
}
