package proof_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
)

// placeholderPlan is how proof.Plan once worked, kept as the reference for
// the arithmetic one: prove runs over tlog.TileHashReader against tiles of
// zeros, and what counts is which tiles it asked for.
func placeholderPlan(tree tlog.Tree, prove func(tlog.HashReader) error) []tlog.Tile {
	p := &placeholders{}
	_ = prove(tlog.TileHashReader(tree, p))
	return p.tiles
}

type placeholders struct {
	mu    sync.Mutex
	tiles []tlog.Tile
}

func (p *placeholders) Height() int { return store.TileHeight }

func (p *placeholders) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	p.mu.Lock()
	p.tiles = append(p.tiles, tiles...)
	p.mu.Unlock()
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = make([]byte, t.W*tlog.HashSize)
	}
	return out, nil
}

func (p *placeholders) SaveTiles([]tlog.Tile, [][]byte) {}

// planSizes returns tree sizes around every tile boundary of the first
// three tile levels, and random ones up to 2^40.
func planSizes(r *rand.Rand) []int64 {
	var sizes []int64
	for n := int64(1); n <= 600; n++ {
		sizes = append(sizes, n)
	}
	for _, b := range []int64{1 << 16, 1 << 17, 3 << 16, 1 << 24, 5 << 24, 1 << 32} {
		for _, d := range []int64{-257, -256, -255, -2, -1, 0, 1, 2, 255, 256, 257} {
			sizes = append(sizes, b+d)
		}
	}
	for range 300 {
		sizes = append(sizes, 1+r.Int64N(int64(1)<<(1+r.IntN(40))))
	}
	return sizes
}

// TestPlanArithmetic checks the arithmetic Plan against the placeholder
// one, tile for tile and in order, for record proofs, tree proofs and tree
// hashes in many trees, and for several proofs in one plan (a proof whose
// read fails, as a plan's always does, does not stop the next).
func TestPlanArithmetic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for _, n := range planSizes(r) {
		tree := tlog.Tree{N: n, Hash: tlog.Hash{1}}
		some := func() int64 {
			switch r.IntN(4) {
			case 0:
				return 0
			case 1:
				return n - 1
			}
			return r.Int64N(n)
		}
		var proofs []func(tlog.HashReader) error
		for range 3 {
			id := some()
			proofs = append(proofs, func(hr tlog.HashReader) error {
				_, err := tlog.ProveRecord(n, id, hr)
				return err
			})
			old := some()
			proofs = append(proofs, func(hr tlog.HashReader) error {
				_, err := tlog.ProveTree(n, old, hr)
				return err
			})
			proofs = append(proofs, func(hr tlog.HashReader) error {
				_, err := tlog.TreeHash(old, hr)
				return err
			})
		}
		// Outside the tree: no tiles, both ways.
		proofs = append(proofs, func(hr tlog.HashReader) error {
			_, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, n)})
			return err
		})
		proofs = append(proofs, func(hr tlog.HashReader) error {
			for _, p := range proofs[:len(proofs)-1] {
				_ = p(hr)
			}
			return nil
		})
		for i, prove := range proofs {
			want := placeholderPlan(tree, prove)
			got := proof.Plan(tree, prove)
			if !slices.Equal(got, want) {
				t.Fatalf("tree %d, proof %d: planned %v, want %v", n, i, paths(got), paths(want))
			}
			checked++
		}
	}
	t.Logf("%d plans checked", checked)
}

func paths(ts []tlog.Tile) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Path()
	}
	return out
}

// TestPlanSuffices makes record proofs in a real log reading nothing but
// the tiles planned for them.
func TestPlanSuffices(t *testing.T) {
	u := newUpstream(t, 70_000)
	tree := u.Tree()
	for _, id := range []int64{0, 1, 255, 256, 65535, 65536, 69_999} {
		prove := func(hr tlog.HashReader) error {
			_, err := tlog.ProveRecord(tree.N, id, hr)
			return err
		}
		planned := proof.Plan(tree, prove)
		if len(planned) == 0 {
			t.Fatalf("record %d: nothing planned", id)
		}
		only := onlyTiles{hr: u.HashReader(), allowed: planned}
		if err := prove(tlog.TileHashReader(tree, only)); err != nil {
			t.Errorf("record %d over the planned tiles %v: %v", id, paths(planned), err)
		}
	}
}

// onlyTiles serves the hash tiles of a log's hashes, failing for any not allowed.
type onlyTiles struct {
	hr      tlog.HashReader
	allowed []tlog.Tile
}

func (o onlyTiles) Height() int { return store.TileHeight }

func (o onlyTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if !slices.Contains(o.allowed, t) {
			return nil, fmt.Errorf("tile %s was not planned", t.Path())
		}
		d, err := tlog.ReadTileData(t, o.hr)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

func (o onlyTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// BenchmarkPlanRecord plans a record proof in a tree of 72 million
// records (sum.golang.org's size), the arithmetic way and the placeholder
// way.
func BenchmarkPlanRecord(b *testing.B) {
	tree := tlog.Tree{N: 72_000_123, Hash: tlog.Hash{1}}
	for _, c := range []struct {
		name string
		plan func(tlog.Tree, func(tlog.HashReader) error) []tlog.Tile
	}{{"arithmetic", proof.Plan}, {"placeholders", placeholderPlan}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			id := int64(0)
			for b.Loop() {
				id = (id + 7_654_321) % tree.N
				c.plan(tree, func(hr tlog.HashReader) error {
					_, err := tlog.ProveRecord(tree.N, id, hr)
					return err
				})
			}
		})
	}
}
