package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// A full-sync batch: 64 data tiles of 256 records, with their level-0 hash
// tiles.
const benchTiles, benchBatch = 64, 64 * 256

func benchBatchAt(start int, recs []store.Record) store.Batch {
	b := store.Batch{Records: recs, Synced: int64(start + len(recs))}
	for i := range benchTiles {
		b.Tiles = append(b.Tiles, store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: int64(start/256 + i), W: 256}, Data: make([]byte, 256*32)})
	}
	return b
}

// BenchmarkCommit commits full-sync batches of 16384 records one after the
// other to one log, as a full sync does: each batch is looked for
// duplicates among the ones before.
func BenchmarkCommit(b *testing.B) {
	for _, resumable := range []bool{false, true} {
		b.Run(fmt.Sprintf("resumable=%v", resumable), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "sumkeep.db"))
			ctx := context.Background()
			var cpu time.Duration
			b.ResetTimer()
			for i := range b.N {
				// Making the batch is the test's cost, not the store's.
				b.StopTimer()
				batch := benchBatchAt(i*benchBatch, records(i*benchBatch, benchBatch))
				batch.Resumable = resumable
				b.StartTimer()
				c := cpuTime()
				if err := s.Commit(ctx, "sum.golang.org", batch); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c
			}
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cpu)/float64(b.N*benchBatch), "cpu-ns/record")
		})
	}
}

// BenchmarkLookupParallel looks up random records of a store of 256k
// records from many goroutines, as the server does.
func BenchmarkLookupParallel(b *testing.B) {
	const n = 16 * benchBatch
	path := filepath.Join(b.TempDir(), "sumkeep.db")
	s := open(b, path)
	ctx := context.Background()
	for start := 0; start < n; start += benchBatch {
		b := benchBatchAt(start, records(start, benchBatch))
		b.Resumable = true
		if err := s.Commit(ctx, "sum.golang.org", b); err != nil {
			panic(err)
		}
	}
	recs := records(0, n)
	b.SetParallelism(8) // a server has many requests in flight
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			r := recs[rng.IntN(n)]
			got, err := s.Lookup(ctx, "sum.golang.org", r.Path, r.Version, n)
			if err != nil || got.ID != r.ID {
				b.Fatalf("Lookup %s = %d, %v", r.Path, got.ID, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkReadTiles reads the tiles a go command asks for when it checks
// a lookup: one tile per level, from many goroutines.
func BenchmarkReadTiles(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "sumkeep.db"))
	ctx := context.Background()
	var tiles []store.Tile
	for i := range 1024 {
		tiles = append(tiles, store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: int64(i), W: 256}, Data: make([]byte, 256*32)})
	}
	if err := s.Commit(ctx, "sum.golang.org", store.Batch{Tiles: tiles, Synced: -1}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			t := tlog.Tile{H: 8, L: 0, N: int64(rng.IntN(1024)), W: 256}
			if _, err := s.ReadTiles(ctx, "sum.golang.org", []tlog.Tile{t}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tiles/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}
