package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/sumkeep/sumkeep/store"
)

// Tiles that are new go in with COPY. A commit of records fetched on demand
// carries a level-0 tile of 8 KiB for nearly every record (a seed's group
// of 256 records, about 265 tiles, 2 MiB), and writeTilesSQL's array of
// bytea costs Postgres twice what COPY of the same rows does: 21–40 ms
// against 9–14 ms for 265 tiles on the 2-core machine of 2026-12-03,
// alone, and more beside the seed's other work. An upsert is still needed
// for tiles stored narrower, so a commit of many tiles first asks which are
// stored (one indexed read), copies the others, and upserts the stored ones
// (which widens them, or leaves them as they are). The commit holds the
// log's row, as every writer of tiles does, so no other writer can store
// one of the copied tiles meanwhile.

// copyTilesMin is the fewest tiles a commit writes this way: a full sync's
// batch carries a few upper-level tiles, for which the two round trips
// would cost more than the upsert.
const copyTilesMin = 16

const storedTilesSQL = `SELECT t.level, t.idx FROM unnest($2::smallint[], $3::bigint[]) AS q(level, idx)
	JOIN tiles t ON t.log_id = $1 AND t.level = q.level AND t.idx = q.idx`

const copyTilesSQL = `COPY tiles (log_id, level, idx, width, hashes) FROM STDIN (FORMAT binary)`

// copyNewTiles writes those of tiles (checked by tileRows) that are not
// stored with COPY, in the transaction open on c, and returns the others,
// for writeTilesSQL. Of tiles at the same level and index, it keeps the
// widest.
func copyNewTiles(ctx context.Context, c *pgx.Conn, logID int16, tiles []store.Tile) ([]store.Tile, error) {
	tiles = store.WidestTiles(slices.Clone(tiles))

	levels, idxs := make([]int16, len(tiles)), make([]int64, len(tiles))
	for i, t := range tiles {
		levels[i], idxs[i] = int16(t.Tile.L), t.Tile.N
	}
	type at struct {
		level int16
		idx   int64
	}
	stored := make(map[at]bool)
	rows, err := c.Query(ctx, storedTilesSQL, logID, levels, idxs)
	if err != nil {
		return nil, fmt.Errorf("finding stored tiles: %w", err)
	}
	var k at
	_, err = pgx.ForEachRow(rows, []any{&k.level, &k.idx}, func() error {
		stored[k] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("finding stored tiles: %w", err)
	}
	var fresh, rest []store.Tile
	for _, t := range tiles {
		if stored[at{int16(t.Tile.L), t.Tile.N}] {
			rest = append(rest, t)
		} else {
			fresh = append(fresh, t)
		}
	}
	if len(fresh) == 0 {
		return rest, nil
	}
	if _, err := c.PgConn().CopyFrom(ctx, bytes.NewReader(tileCopy(logID, fresh)), copyTilesSQL); err != nil {
		return nil, fmt.Errorf("copying %d tiles: %w", len(fresh), err)
	}
	return rest, nil
}

// tileCopy returns tiles as COPY's binary format (see recordReader): per
// row log_id, level, idx, width and hashes.
func tileCopy(logID int16, tiles []store.Tile) []byte {
	n := len(copySignature) + 8 + 2
	for _, t := range tiles {
		n += 2 + 4 + 2 + 4 + 2 + 4 + 8 + 4 + 2 + 4 + len(t.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, copySignature...)
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	b = binary.BigEndian.AppendUint32(b, 0) // header extension
	for _, t := range tiles {
		b = binary.BigEndian.AppendUint16(b, 5)
		b = binary.BigEndian.AppendUint32(b, 2)
		b = binary.BigEndian.AppendUint16(b, uint16(logID))
		b = binary.BigEndian.AppendUint32(b, 2)
		b = binary.BigEndian.AppendUint16(b, uint16(t.Tile.L))
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(t.Tile.N))
		b = binary.BigEndian.AppendUint32(b, 2)
		b = binary.BigEndian.AppendUint16(b, uint16(t.Tile.W))
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Data)))
		b = append(b, t.Data...)
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}
