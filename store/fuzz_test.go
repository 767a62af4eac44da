package store_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/realsum"
	"github.com/sumkeep/sumkeep/store"
)

// The fuzz targets below feed rows as a database could hold them to the
// functions stores read rows with. Their seed corpus is real rows: the
// records, tiles and heads of the recorded sum.golang.org fixture, as a
// store keeps them, and rows altered the ways issue 15 saw. `go test` runs
// the seeds; run longer by hand with, e.g.,
//
//	go test -run '^$' -fuzz=FuzzDecodeRecord -fuzztime=60s ./store/

const fuzzLog = "sum.golang.org"

// FuzzDecodeRecord: a records row either decodes, and then is exactly the
// row a store writes for the decoded record (so nothing a store did not
// write is ever used), or is a *store.CorruptError; it never panics.
func FuzzDecodeRecord(f *testing.F) {
	recs, err := realsum.Records()
	if err != nil {
		f.Fatal(err)
	}
	for i, r := range recs {
		if i >= 40 {
			break
		}
		p, v, h, raw := store.EncodeRecord(r.Data)
		f.Add(r.ID, p, v, h, h == nil, raw, raw == nil)
		if i == 0 {
			f.Add(int64(-5), p, v, h, false, raw, true)
			f.Add(r.ID, p, v, h[:3], false, raw, true)
			f.Add(r.ID, p, v, append(h, 0), false, raw, true)
			f.Add(r.ID, p, v, []byte{}, false, raw, true)
			f.Add(r.ID, p, v, h, false, r.Data, false)
			f.Add(r.ID, p, v, []byte(nil), true, r.Data, false)
			f.Add(r.ID, p, v, []byte(nil), true, []byte("garbage\n"), false)
			f.Add(r.ID, p, v+" x", h, false, raw, true)
		}
	}
	f.Fuzz(func(t *testing.T, id int64, path, version string, hashes []byte, nilHashes bool, raw []byte, nilRaw bool) {
		if nilHashes {
			hashes = nil
		}
		if nilRaw {
			raw = nil
		}
		r, err := store.RecordRow(fuzzLog, id, path, version, hashes, raw)
		if err != nil {
			var ce *store.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, store.ErrCorrupt) || ce.Table != "records" || ce.Log != fuzzLog {
				t.Fatalf("err = %v, want a CorruptError of table records", err)
			}
			return
		}
		if r.ID != id || r.ID < 0 || r.Path != path || r.Version != version {
			t.Fatalf("row %d %q %q gave record %d %q %q", id, path, version, r.ID, r.Path, r.Version)
		}
		if err := store.CheckModule(&r); err != nil {
			t.Fatalf("a decoded record does not name its module: %v", err)
		}
		p, v, h, rw := store.EncodeRecord(r.Data)
		if p != path || v != version || !bytes.Equal(h, hashes) || (h == nil) != (hashes == nil) || !bytes.Equal(rw, raw) {
			t.Fatalf("row (%q, %q, %x, %q) decoded to %q, which a store writes as (%q, %q, %x, %q)",
				path, version, hashes, raw, r.Data, p, v, h, rw)
		}
	})
}

// FuzzTileRow: a tiles row is accepted only with a width of 1 to 256 and
// exactly width hashes.
func FuzzTileRow(f *testing.F) {
	tiles, err := realsum.Tiles()
	if err != nil {
		f.Fatal(err)
	}
	for i, tl := range tiles {
		if i >= 20 {
			break
		}
		f.Add(int64(tl.Tile.L), tl.Tile.N, int64(tl.Tile.W), tl.Data)
		if i == 0 {
			f.Add(int64(tl.Tile.L), tl.Tile.N, int64(0), tl.Data)
			f.Add(int64(tl.Tile.L), tl.Tile.N, int64(tl.Tile.W), tl.Data[:3])
			f.Add(int64(tl.Tile.L), tl.Tile.N, int64(tl.Tile.W+1), tl.Data)
		}
	}
	f.Fuzz(func(t *testing.T, level, idx, width int64, hashes []byte) {
		err := store.CheckTileRow(fuzzLog, level, idx, width, hashes)
		ok := level >= 0 && idx >= 0 && width >= 1 && width <= 256 && int64(len(hashes)) == width*32
		if (err == nil) != ok {
			t.Fatalf("CheckTileRow(%d, %d, %d, %d bytes) = %v", level, idx, width, len(hashes), err)
		}
		if err != nil && !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("err = %v, want ErrCorrupt", err)
		}
	})
}

// FuzzHeadRow: a heads row is accepted only when its note is for the tree
// of the row's size and hash.
func FuzzHeadRow(f *testing.F) {
	heads, err := realsum.Heads()
	if err != nil {
		f.Fatal(err)
	}
	for i, h := range heads {
		f.Add(h.Size, h.Hash[:], h.Note)
		if i == 0 {
			f.Add(h.Size+1, h.Hash[:], h.Note)
			f.Add(h.Size, h.Hash[:3], h.Note)
			f.Add(h.Size, h.Hash[:], []byte("not a signed note"))
			f.Add(h.Size, h.Hash[:], bytes.ReplaceAll(h.Note, []byte("\n\n"), []byte("\n")))
		}
	}
	f.Fuzz(func(t *testing.T, size int64, hash, note []byte) {
		h, err := store.HeadRow(fuzzLog, size, hash, note, time.Time{})
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			return
		}
		tree, err := store.NoteTree(note)
		if err != nil || tree != h.Tree() || h.Size != size || !bytes.Equal(h.Hash[:], hash) {
			t.Fatalf("accepted head %d %x with a note for %+v (%v)", size, hash, tree, err)
		}
	})
}
