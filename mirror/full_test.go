package mirror

import (
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
)

// TestTileRecords: the paths and versions of a full sync's records, made
// from one string a tile, are store.RecordModule's, for canonical records
// and odd ones.
func TestTileRecords(t *testing.T) {
	texts := []string{
		"example.com/m v1.0.0 h1:abc=\nexample.com/m v1.0.0/go.mod h1:def=\n",
		"example.com/m v1.0.0\n",
		"example.com/m\n v1.0.0 x\n",
		"example.com/m  v1.0.0 x\n",
		" example.com/m v1.0.0 x\n",
		"exämple.com/m v1.0.0 x\n",
		"example.com/m v1\x01 x\n",
		"example.com/m v1\tx y\n",
		"example.com/m v1.0.0 ",
		"example.com/m v1.0.0",
		"example.com/other v2.0.0 h1:abc=\n",
		"nospace\n",
		"",
	}
	var bs [][]byte
	for _, text := range texts {
		bs = append(bs, []byte(text))
	}
	sc := tileScratch{names: []byte("scratch"), lens: []int32{1, 2, 3}}
	recs := appendTileRecords([]store.Record{{ID: 7}}, &sc, 3, bs)
	if len(recs) != 1+len(texts) || recs[0].ID != 7 {
		t.Fatalf("got %d records, first %d; want %d, first 7", len(recs), recs[0].ID, 1+len(texts))
	}
	for x, text := range texts {
		r := recs[1+x]
		wp, wv := store.RecordModule([]byte(text))
		if r.Path != wp || r.Version != wv || r.ID != 3*tileWidth+int64(x) || string(r.Data) != text {
			t.Errorf("record of %q: %d %q %q %q; want %d %q %q", text, r.ID, r.Path, r.Version, r.Data, 3*tileWidth+int64(x), wp, wv)
		}
	}
}

// TestLeafHash: leafHash is tlog.RecordHash, whatever the buffer held
// before.
func TestLeafHash(t *testing.T) {
	var buf []byte
	for _, text := range []string{"", "a\n", "golang.org/x/mod v0.1.0 h1:x\ngolang.org/x/mod v0.1.0/go.mod h1:y\n", "b\n"} {
		var h tlog.Hash
		h, buf = leafHash(buf, []byte(text))
		if want := tlog.RecordHash([]byte(text)); h != want {
			t.Errorf("leafHash(%q) = %v, want %v", text, h, want)
		}
	}
}

// BenchmarkTileRecords makes the records of a full data tile of synthetic
// (canonical) records, as verifyJob does for every tile of a full sync.
func BenchmarkTileRecords(b *testing.B) {
	u, err := sumdbtest.NewSynthetic("sumdb.bench", tileWidth)
	if err != nil {
		b.Fatal(err)
	}
	var tile []byte
	for i := range int64(tileWidth) {
		tile = append(append(tile, u.Record(i)...), '\n')
	}
	texts, err := splitDataTile(tile, tileWidth)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	recs := make([]store.Record, 0, tileWidth)
	var sc tileScratch
	for b.Loop() {
		recs = appendTileRecords(recs[:0], &sc, 0, texts)
	}
}
