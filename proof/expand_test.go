package proof

import (
	"bytes"
	"context"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
)

// upstreamSource serves a hermetic upstream's hash tiles.
type upstreamSource struct{ u *sumdbtest.Upstream }

func (s upstreamSource) Tile(_ context.Context, t tlog.Tile) ([]byte, error) {
	return tlog.ReadTileData(t, s.u.HashReader())
}

// TestReaderKeepsExpansions: the Tiles of several trees over one Reader
// (as a lazy fetch proves a record, links heads and advances the served
// head) expand each tile the Reader remembers once; bytes it does not
// remember as they are, a batch's own or other bytes for the same tile,
// are expanded for themselves.
func TestReaderKeepsExpansions(t *testing.T) {
	u, err := sumdbtest.NewSynthetic("expand.test", 3000)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := NewReader(ctx, ReaderConfig{Log: "expand.test", Source: upstreamSource{u}})
	tree := func(n int64) tlog.Tree {
		h, err := tlog.TreeHash(n, u.HashReader())
		if err != nil {
			t.Fatal(err)
		}
		return tlog.Tree{N: n, Hash: h}
	}
	const id = 700 // in the full level-0 tile 2
	full := tlog.Tile{H: store.TileHeight, L: 0, N: id >> store.TileHeight, W: 1 << store.TileHeight}
	var exps []*expandedTile
	for _, n := range []int64{1500, 2000, 3000} {
		tr := tree(n)
		pt := NewTiles(tr, r)
		p, err := tlog.ProveRecord(n, id, pt)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, n, tr.Hash, id, tlog.RecordHash(u.Record(id))); err != nil {
			t.Fatal(err)
		}
		e := pt.entry(full).exp
		if e == nil {
			t.Fatalf("tree %d: tile %s was not read", n, full.Path())
		}
		exps = append(exps, e)
	}
	if exps[0] != exps[1] || exps[1] != exps[2] {
		t.Errorf("three trees expanded tile %s %d times, want once", full.Path(), len(uniq(exps)))
	}

	// The same tile with other bytes (a source that answered another
	// reader otherwise): its own expansion, not the kept one.
	other := bytes.Clone(r.c.seen[full])
	other[40] ^= 1
	if e := r.expand(full, other); e == exps[0] || !bytes.Equal(e.data, other) {
		t.Error("other bytes for a tile got the expansion of the remembered bytes")
	} else if a, b := e.up[len(e.up)-1][0], exps[0].up[len(exps[0].up)-1][0]; a == b {
		t.Error("a flipped tile expanded to the same root")
	}

	// A batch's own tiles are not remembered, nor their expansions.
	batch := tlog.Tile{H: store.TileHeight, L: 0, N: 9, W: 1 << store.TileHeight}
	data, err := tlog.ReadTileData(batch, u.HashReader())
	if err != nil {
		t.Fatal(err)
	}
	local := r.WithLocal(map[tlog.Tile][]byte{batch: data})
	pt := NewTiles(tree(3000), local)
	if _, err := tlog.ProveRecord(3000, 9*256+3, pt); err != nil {
		t.Fatal(err)
	}
	if r.c.expanded[batch] != nil {
		t.Errorf("the expansion of batch tile %s was kept", batch.Path())
	}
}

func uniq(es []*expandedTile) map[*expandedTile]bool {
	m := make(map[*expandedTile]bool)
	for _, e := range es {
		m[e] = true
	}
	return m
}
