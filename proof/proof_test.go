package proof_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/sqlite"
)

const logName = "proof.test"

func newUpstream(t *testing.T, n int) *sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.NewSynthetic(logName, n)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func verifier(t *testing.T, u *sumdbtest.Upstream) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(u.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// source serves the upstream's hash tiles, optionally flipping a byte of
// one, and counts requests.
type source struct {
	u     *sumdbtest.Upstream
	flip  *tlog.Tile
	asked atomic.Int64
}

func (s *source) Tile(_ context.Context, t tlog.Tile) ([]byte, error) {
	s.asked.Add(1)
	d, err := tlog.ReadTileData(t, s.u.HashReader())
	if err != nil {
		return nil, err
	}
	if s.flip != nil && *s.flip == t {
		d = bytes.Clone(d)
		d[5] ^= 1
	}
	return d, nil
}

func TestOpenHead(t *testing.T) {
	u := newUpstream(t, 1000)
	v := verifier(t, u)
	h, err := proof.OpenHead(u.SignedHead(), v)
	if err != nil || h.Size != 1000 || h.Hash != u.Tree().Hash || !bytes.Equal(h.Note, u.SignedHead()) {
		t.Fatalf("OpenHead = %+v, %v", h, err)
	}

	other := newUpstream(t, 10) // same name, another key
	if _, err := proof.OpenHead(other.SignedHead(), v); !errors.Is(err, proof.ErrBadSignature) {
		t.Errorf("head signed by another key: %v, want ErrBadSignature", err)
	}
	bad := bytes.Clone(u.SignedHead())
	bad[len("go.sum database tree\n")] ^= 1 // the size
	if _, err := proof.OpenHead(bad, v); !errors.Is(err, proof.ErrBadSignature) {
		t.Errorf("altered head: %v, want ErrBadSignature", err)
	}

	if _, err := proof.CheckHead(store.Head{Size: 999, Hash: h.Hash, Note: h.Note}, v); err == nil {
		t.Error("CheckHead accepted a stored size that is not the signed one")
	}
	if got, err := proof.CheckHead(h, v); err != nil || got.Size != h.Size {
		t.Errorf("CheckHead(good) = %+v, %v", got, err)
	}
}

// TestReader: tiles come from the batch, then the store, then the source;
// only authenticated source tiles are reported; a flipped tile is an
// *InconsistentTileError naming tiles that include it; a tile that nobody
// has is the store's not-found, unchanged.
func TestReader(t *testing.T) {
	ctx := context.Background()
	const n = 70000
	u := newUpstream(t, n)
	tree := u.Tree()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	src := &source{u: u}

	// Prove a record with an empty store: every tile comes from the
	// source, and those the proof used are verified.
	r := proof.NewReader(ctx, proof.ReaderConfig{Store: st, Log: logName, Source: src})
	head := store.Head{Size: n, Hash: tree.Hash, Note: u.SignedHead()}
	rec := store.Record{ID: 12345, Data: u.Record(12345)}
	rec.Path, rec.Version = store.RecordModule(rec.Data)
	if err := proof.Record(r.HashReader(tree), head, rec); err != nil {
		t.Fatal(err)
	}
	verified := r.Verified()
	if len(verified) == 0 || int64(len(verified)) != src.asked.Load() {
		t.Fatalf("%d tiles verified of %d fetched", len(verified), src.asked.Load())
	}
	for _, vt := range verified {
		want, _ := tlog.ReadTileData(vt.Tile, u.HashReader())
		if !bytes.Equal(vt.Data, want) {
			t.Fatalf("verified tile %s holds other bytes", vt.Tile.Path())
		}
	}

	// Store them: a new reader proves the same record from the store alone.
	if err := st.AddHead(ctx, logName, head); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, logName, store.Batch{Records: []store.Record{rec}, Tiles: verified, Synced: -1, Serve: n}); err != nil {
		t.Fatal(err)
	}
	asked := src.asked.Load()
	r2 := proof.NewReader(ctx, proof.ReaderConfig{Store: st, Log: logName, Source: src})
	if err := proof.Record(r2.HashReader(tree), head, rec); err != nil {
		t.Fatal(err)
	}
	if src.asked.Load() != asked || len(r2.Verified()) != 0 {
		t.Errorf("proof from stored tiles asked the source %d times and verified %d tiles", src.asked.Load()-asked, len(r2.Verified()))
	}

	// A flipped tile on another record's path is named.
	other := int64(60000)
	bad := tlog.Tile{H: store.TileHeight, L: 0, N: other >> store.TileHeight, W: 1 << store.TileHeight}
	lying := &source{u: u, flip: &bad}
	r3 := proof.NewReader(ctx, proof.ReaderConfig{Store: st, Log: logName, Source: lying})
	orec := store.Record{ID: other, Data: u.Record(other)}
	orec.Path, orec.Version = store.RecordModule(orec.Data)
	err = proof.Record(r3.HashReader(tree), head, orec)
	ite, ok := errors.AsType[*proof.InconsistentTileError](err)
	if !ok {
		t.Fatalf("proof through a flipped tile: %v, want an InconsistentTileError", err)
	}
	if !slices.Contains(ite.Tiles, bad) || len(ite.Tiles) != len(ite.Data) {
		t.Errorf("the error names tiles %v, not the flipped %s", ite.Tiles, bad.Path())
	}
	if len(r3.Verified()) != 0 {
		t.Errorf("tiles of a failed proof reported verified: %d", len(r3.Verified()))
	}

	// Without a source, a tile the store lacks is ErrNotFound, not a lie.
	r4 := proof.NewReader(ctx, proof.ReaderConfig{Store: st, Log: logName})
	err = proof.Record(r4.HashReader(tree), head, orec)
	if !errors.Is(err, store.ErrNotFound) || errors.As(err, new(*proof.InconsistentTileError)) {
		t.Errorf("proof without the tiles: %v, want ErrNotFound", err)
	}

	// A source that fails: its error, unchanged.
	errDown := errors.New("upstream down")
	r5 := proof.NewReader(ctx, proof.ReaderConfig{Log: logName, Source: failing{errDown}})
	if err := proof.Record(r5.HashReader(tree), head, orec); !errors.Is(err, errDown) {
		t.Errorf("proof from a failing source: %v", err)
	}
}

type failing struct{ err error }

func (f failing) Tile(context.Context, tlog.Tile) ([]byte, error) { return nil, f.err }

// TestTiles: the authenticate-once reader proves every record and head a
// TileHashReader proves, and names a tile that does not match its parent.
func TestTiles(t *testing.T) {
	const n = 70000
	u := newUpstream(t, n)
	tree := u.Tree()
	tr := proof.NewReader(context.Background(), proof.ReaderConfig{Log: logName, Source: &source{u: u}})
	pt := proof.NewTiles(tree, tr)
	for _, id := range []int64{0, 255, 256, 40000, n - 1} {
		p, err := tlog.ProveRecord(n, id, pt)
		if err != nil {
			t.Fatalf("record %d: %v", id, err)
		}
		if err := tlog.CheckRecord(p, n, tree.Hash, id, tlog.RecordHash(u.Record(id))); err != nil {
			t.Fatalf("record %d: %v", id, err)
		}
	}

	bad := tlog.Tile{H: store.TileHeight, L: 0, N: 3, W: 1 << store.TileHeight}
	lying := proof.NewReader(context.Background(), proof.ReaderConfig{Log: logName, Source: &source{u: u, flip: &bad}})
	pt = proof.NewTiles(tree, lying)
	_, err := tlog.ProveRecord(n, 3*256+7, pt)
	ite, ok := errors.AsType[*proof.InconsistentTileError](err)
	if !ok || !slices.Equal(ite.Tiles, []tlog.Tile{bad}) {
		t.Fatalf("proof through flipped tile %s: %v", bad.Path(), err)
	}
	if _, err := tlog.ProveRecord(n, 5*256, pt); err != nil {
		t.Errorf("a proof not through the flipped tile failed: %v", err)
	}
}

func ExampleOpenHead() {
	u, _ := sumdbtest.NewSynthetic("example.test", 3)
	v, _ := note.NewVerifier(u.VerifierKey())
	h, err := proof.OpenHead(u.SignedHead(), v)
	fmt.Println(h.Size, err)
	// Output: 3 <nil>
}
