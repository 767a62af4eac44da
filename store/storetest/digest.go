package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Digest summarises what a store holds for a log: heads, cursor, served
// head, every record below the cursor and every tile of the served tree.
// Two stores with equal digests serve the same bytes. FirstSeen times are
// left out.
func Digest(ctx context.Context, s store.Store, log string) (string, error) {
	h := sha256.New()
	heads, err := s.Heads(ctx, log)
	if err != nil {
		return "", err
	}
	for _, hd := range heads {
		fmt.Fprintf(h, "head %d %s %q\n", hd.Size, hd.Hash, hd.Note)
	}
	synced, err := s.Synced(ctx, log)
	if err != nil {
		return "", err
	}
	var served int64
	if hd, err := s.ServedHead(ctx, log); err == nil {
		served = hd.Size
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	fmt.Fprintf(h, "synced %d served %d\n", synced, served)
	for start := int64(0); start < synced; start += 4096 {
		recs, err := s.ReadRecords(ctx, log, start, min(4096, synced-start))
		if err != nil {
			return "", err
		}
		for _, r := range recs {
			fmt.Fprintf(h, "record %d %s %s %q\n", r.ID, r.Path, r.Version, r.Data)
		}
	}
	tiles := tlog.NewTiles(store.TileHeight, 0, served)
	for start := 0; start < len(tiles); start += 512 {
		batch := tiles[start:min(start+512, len(tiles))]
		data, err := s.ReadTiles(ctx, log, batch)
		if err != nil {
			return "", err
		}
		for i, t := range batch {
			fmt.Fprintf(h, "tile %s %x\n", t.Path(), data[i])
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}
