package postgres_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

// BenchmarkLevel0Tile reads full level-0 tiles at random, as a server does
// for the go command's proofs, from many goroutines: "stored" from a log
// that holds them (on-demand fetches store them), "rebuilt" from one that
// holds only the records (a full sync), where each read hashes 256 records.
func BenchmarkLevel0Tile(b *testing.B) {
	const tiles = 64
	u, err := sumdbtest.NewSynthetic("sumdb.bench", tiles*256)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.NewDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	recs := make([]store.Record, tiles*256)
	for i := range recs {
		d := u.Record(int64(i))
		p, v := store.RecordModule(d)
		recs[i] = store.Record{ID: int64(i), Path: p, Version: v, Data: d}
	}
	var stored []store.Tile
	for k := range int64(tiles) {
		t := tlog.Tile{H: 8, L: 0, N: k, W: 256}
		data, err := tlog.ReadTileData(t, u.HashReader())
		if err != nil {
			b.Fatal(err)
		}
		stored = append(stored, store.Tile{Tile: t, Data: data})
	}
	for _, c := range []struct {
		log   string
		tiles []store.Tile
	}{{"stored", stored}, {"rebuilt", nil}} {
		if err := s.Commit(ctx, c.log, store.Batch{Records: recs, Tiles: c.tiles, Synced: int64(len(recs))}); err != nil {
			b.Fatal(err)
		}
		// As autovacuum leaves a loaded table: analyzed, its id index
		// summarized.
		if _, err := s.Pool().Exec(ctx, `VACUUM ANALYZE records`); err != nil {
			b.Fatal(err)
		}
		b.Run(c.log, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
				for pb.Next() {
					k := rng.Int64N(tiles)
					d, err := s.ReadTiles(ctx, c.log, []tlog.Tile{{H: 8, L: 0, N: k, W: 256}})
					if err != nil {
						b.Fatal(err)
					}
					if string(d[0]) != string(stored[k].Data) {
						b.Fatalf("tile %d is not the upstream's", k)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tiles/s")
		})
	}
}
