package realsum_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/realsum"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
)

// callStore is a store.Store that remembers the heads and batches it is
// given; the methods Load does not use are left to the nil embedded Store.
type callStore struct {
	store.Store
	log     string
	heads   []store.Head
	batches []store.Batch
}

func (s *callStore) AddHead(ctx context.Context, log string, hs ...store.Head) error {
	s.log = log
	s.heads = append(s.heads, hs...)
	return nil
}

func (s *callStore) Commit(ctx context.Context, log string, b store.Batch) error {
	if log != s.log {
		return errors.New("wrong log")
	}
	s.batches = append(s.batches, b)
	return nil
}

func TestLoadBatches(t *testing.T) {
	st := &callStore{}
	if err := realsum.Load(context.Background(), st, realsum.Name); err != nil {
		t.Fatal(err)
	}
	head, _ := realsum.Head()
	heads, _ := realsum.Heads()
	recs, _ := realsum.Records()
	tiles, _ := realsum.Tiles()
	if st.log != realsum.Name || len(st.heads) != len(heads) || st.heads[len(st.heads)-1].Size != head.Size ||
		!bytes.Equal(st.heads[len(st.heads)-1].Note, head.Note) {
		t.Fatalf("heads added: %d, last %d", len(st.heads), st.heads[len(st.heads)-1].Size)
	}
	for i := 1; i < len(st.heads); i++ {
		if st.heads[i-1].Size >= st.heads[i].Size {
			t.Fatalf("heads not added in ascending order")
		}
	}
	if len(st.batches) != len(recs)+1 {
		t.Fatalf("%d batches for %d records", len(st.batches), len(recs))
	}
	for i, r := range recs {
		b := st.batches[i]
		if len(b.Records) != 1 || len(b.Tiles) != 0 || b.Synced != -1 || b.Serve != 0 {
			t.Fatalf("batch %d: %d records, %d tiles, synced %d, serve %d", i, len(b.Records), len(b.Tiles), b.Synced, b.Serve)
		}
		got := b.Records[0]
		if got.ID != r.ID || got.Path != r.Path || got.Version != r.Version || !bytes.Equal(got.Data, r.Data) {
			t.Fatalf("batch %d: record %d %s@%s, want %d", i, got.ID, got.Path, got.Version, r.ID)
		}
	}
	last := st.batches[len(recs)]
	if len(last.Records) != 0 || len(last.Tiles) != len(tiles) || last.Synced != -1 || last.Serve != head.Size {
		t.Fatalf("tile batch: %d records, %d tiles, synced %d, serve %d", len(last.Records), len(last.Tiles), last.Synced, last.Serve)
	}
}

// TestLoadPostgres loads the fixture into a real store and proves every
// record under its served head from what the store returns.
func TestLoadPostgres(t *testing.T) {
	ctx := context.Background()
	st, err := postgres.Open(ctx, pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := realsum.Load(ctx, st, realsum.Name); err != nil {
		t.Fatal(err)
	}
	head, _ := realsum.Head()
	served, err := st.ServedHead(ctx, realsum.Name)
	if err != nil {
		t.Fatal(err)
	}
	if served.Size != head.Size || served.Hash != head.Hash || !bytes.Equal(served.Note, head.Note) {
		t.Fatalf("served head %d, want %d", served.Size, head.Size)
	}
	T := served.Tree()
	thr := tlog.TileHashReader(T, storeTiles{ctx, st})
	for _, m := range realsum.Modules() {
		r, err := st.Lookup(ctx, realsum.Name, m.Path, m.Version, T.N)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		p, err := tlog.ProveRecord(T.N, r.ID, thr)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if err := tlog.CheckRecord(p, T.N, T.Hash, r.ID, tlog.RecordHash(r.Data)); err != nil {
			t.Fatalf("%v: %v", m, err)
		}
	}
}

// storeTiles reads hash tiles from a store.
type storeTiles struct {
	ctx context.Context
	st  store.Store
}

func (s storeTiles) Height() int { return store.TileHeight }

func (s storeTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	return s.st.ReadTiles(s.ctx, realsum.Name, tiles)
}

func (s storeTiles) SaveTiles([]tlog.Tile, [][]byte) {}
