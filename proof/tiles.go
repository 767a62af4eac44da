package proof

import (
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// PathTiles returns the tiles holding record id's leaf and its ancestors
// up to the top of the tree: with the tiles of the tree's right edge, what
// its inclusion proof reads.
func PathTiles(tree tlog.Tree, id int64) []tlog.Tile {
	const h = store.TileHeight
	var path []tlog.Tile
	for l := 0; l*h < 63 && tree.N>>(l*h) > 0; l++ {
		n := id >> ((l + 1) * h)
		if w := widthIn(tree, l, n); w > 0 {
			path = append(path, tlog.Tile{H: h, L: l, N: n, W: w})
		}
	}
	return path
}

// Tiles is a tlog.HashReader for many proofs in one tree. It authenticates
// each tile once per run, as tlog.TileHashReader does on every call: the
// tiles on the tree's right edge by recomputing the signed root from them
// (with TileHashReader itself), every other tile by its hash being the
// entry its parent tile holds for it. It also computes every hash inside a
// tile once (not only its bottom row), so that the many proofs that share
// a tile do not hash it again. (Over TileHashReader, each proof costs some
// two thousand SHA-256 computations: more than half a second for a real
// go.sum.) Over a Reader, a tile is expanded once for all the Tiles that
// read it, whatever their trees (see Reader.expand): a lazy fetch proves
// its records, links its heads and advances the served head in trees of
// several sizes. A tile that does not authenticate fails every proof that
// reads it; and every proof is checked against the signed root by
// tlog.CheckRecord.
type Tiles struct {
	tree tlog.Tree
	tr   tlog.TileReader

	rootOnce sync.Once
	rootErr  error

	mu    sync.Mutex
	tiles map[tlog.Tile]*tileEntry
}

type tileEntry struct {
	once sync.Once
	exp  *expandedTile // authenticated
	err  error
}

func (p *Tiles) entry(t tlog.Tile) *tileEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.tiles[t]
	if e == nil {
		e = new(tileEntry)
		p.tiles[t] = e
	}
	return e
}

// NewTiles returns a Tiles for tree over tr's tiles.
func NewTiles(tree tlog.Tree, tr tlog.TileReader) *Tiles {
	return &Tiles{tree: tree, tr: tr, tiles: make(map[tlog.Tile]*tileEntry)}
}

// edgeSaver is the tlog.TileReader that notes the tiles TileHashReader
// authenticated.
type edgeSaver struct {
	*callReader
	tiles []tlog.Tile
	data  [][]byte
}

func (s *edgeSaver) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	s.tiles, s.data = append(s.tiles, tiles...), append(s.data, data...)
}

// AuthenticateEdge authenticates the tiles that hold the hashes of the
// tree's right edge (those TileHashReader reads for no index at all)
// against the signed root. Proofs do it first; calling it early reads those
// tiles meanwhile.
func (p *Tiles) AuthenticateEdge() error {
	p.rootOnce.Do(func() {
		s := &edgeSaver{callReader: &callReader{TileReader: p.tr}}
		if _, err := tlog.TileHashReader(p.tree, s).ReadHashes(nil); err != nil {
			p.rootErr = classify(err, p.tree, s.callReader)
			return
		}
		for i, t := range s.tiles {
			e := p.entry(t)
			e.once.Do(func() { e.exp = expandFor(p.tr, t, s.data[i]) })
		}
	})
	return p.rootErr
}

// tile returns tile t, authenticated and expanded, reading it once.
func (p *Tiles) tile(t tlog.Tile) (*expandedTile, error) {
	if err := p.AuthenticateEdge(); err != nil {
		return nil, err
	}
	const h = store.TileHeight
	e := p.entry(t)
	e.once.Do(func() {
		// Not an edge tile: a full tile whose hash is an entry of its
		// parent tile.
		if t.W != 1<<h {
			e.err = fmt.Errorf("tile %s is not authenticated by the signed tree", t.Path())
			return
		}
		data, err := p.tr.ReadTiles([]tlog.Tile{t})
		if err != nil {
			e.err = err
			return
		}
		if len(data) != 1 {
			e.err = fmt.Errorf("reading tile %s: got %d tiles for 1", t.Path(), len(data))
			return
		}
		if len(data[0]) != t.W*tlog.HashSize {
			e.err = &InconsistentTileError{Tree: p.tree, Tiles: []tlog.Tile{t}, Data: data,
				Err: fmt.Errorf("tile %s has %d bytes, want %d", t.Path(), len(data[0]), t.W*tlog.HashSize)}
			return
		}
		exp := expandFor(p.tr, t, data[0])
		parent := tlog.Tile{H: h, L: t.L + 1, N: t.N >> h, W: widthIn(p.tree, t.L+1, t.N>>h)}
		if parent.W <= 0 {
			e.err = fmt.Errorf("tile %s is outside the signed tree", t.Path())
			return
		}
		pe, err := p.tile(parent)
		if err != nil {
			e.err = err
			return
		}
		want, ok := pe.hash(0, t.N-parent.N<<h)
		if got, _ := exp.hash(h, 0); !ok || got != want {
			e.err = &InconsistentTileError{Tree: p.tree, Tiles: []tlog.Tile{t}, Data: data,
				Err: fmt.Errorf("hash tile %s does not match its parent tile", t.Path())}
			return
		}
		e.exp = exp
	})
	return e.exp, e.err
}

// widthIn returns the width of tile n at tile level l in tree, as
// tlog.TileHashReader reads it: full, or the part inside the tree (<= 0
// for a tile outside it).
func widthIn(tree tlog.Tree, l int, n int64) int {
	const h = store.TileHeight
	if left := tree.N>>(l*h) - n<<h; left < 1<<h {
		return int(left)
	}
	return 1 << h
}

// expandedTile is a tile with all its inner hashes: hash(k, j) is the hash
// of the subtree of 2^k tile entries starting at entry j·2^k.
type expandedTile struct {
	data []byte        // the entries (level 0)
	up   [][]tlog.Hash // up[k-1] holds the hashes at level k
}

func expand(data []byte) *expandedTile {
	n := len(data) / tlog.HashSize
	e := &expandedTile{data: data}
	all := make([]tlog.Hash, max(0, n-1)) // n/2 + n/4 + … hashes
	var l, r tlog.Hash
	for k := 1; n>>k > 0; k++ {
		up := all[: n>>k : n>>k]
		all = all[n>>k:]
		for j := range up {
			if k == 1 {
				copy(l[:], data[2*j*tlog.HashSize:])
				copy(r[:], data[(2*j+1)*tlog.HashSize:])
				up[j] = tlog.NodeHash(l, r)
			} else {
				prev := e.up[k-2]
				up[j] = tlog.NodeHash(prev[2*j], prev[2*j+1])
			}
		}
		e.up = append(e.up, up)
	}
	return e
}

func (e *expandedTile) hash(k int, j int64) (tlog.Hash, bool) {
	var h tlog.Hash
	if k == 0 {
		if j < 0 || (j+1)*tlog.HashSize > int64(len(e.data)) {
			return h, false
		}
		copy(h[:], e.data[j*tlog.HashSize:])
		return h, true
	}
	if k > len(e.up) || j < 0 || j >= int64(len(e.up[k-1])) {
		return h, false
	}
	return e.up[k-1][j], true
}

// ReadHashes implements tlog.HashReader.
func (p *Tiles) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	const h = store.TileHeight
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, n := tlog.SplitStoredHashIndex(x)
		t := tlog.Tile{H: h, L: level / h}
		k := level % h // level inside the tile
		t.N = n << k >> h
		j := n - t.N<<h>>k // index among the tile's level-k hashes
		if t.W = widthIn(p.tree, t.L, t.N); t.W <= 0 {
			return nil, fmt.Errorf("hash %d is not in tree %d", x, p.tree.N)
		}
		e, err := p.tile(t)
		if err != nil {
			return nil, err
		}
		var ok bool
		if out[i], ok = e.hash(k, j); !ok {
			return nil, fmt.Errorf("hash %d is not in tile %s", x, t.Path())
		}
	}
	return out, nil
}

// Authenticated returns the tiles authenticated so far (by proofs that
// have returned), so that a Reader can be told which of those it read may
// be stored (Reader.SaveTiles).
func (p *Tiles) Authenticated() []tlog.Tile {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []tlog.Tile
	for t, e := range p.tiles {
		if e.exp != nil {
			out = append(out, t)
		}
	}
	return out
}
