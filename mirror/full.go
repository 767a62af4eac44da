package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
)

// A job is one batch of data tiles [first, end), fetched concurrently.
//
// Their level-0 hash tiles are not fetched: they are the leaf hashes of the
// records, so the records give them, and authenticating those tiles
// against the signed root proves every record at once. That halves the
// requests a full sync makes (a level-0 tile per data tile) and the bytes
// it reads besides records. Only a batch that fails to authenticate
// fetches the upstream's level-0 tiles, to tell a bad record from a bad
// tile in the evidence (see verifyJob).
type job struct {
	first, end int64 // tile indexes
	data       [][]byte
	errs       []error
	wg         sync.WaitGroup
}

// full copies records [cursor, target.Size) and the tiles of the target tree,
// and finally serves target. It returns how many records it stored, and
// adds the tiles it stored to *tiles.
func (s *Syncer) full(ctx context.Context, target store.Head, served int64, tiles *int64) (int64, error) {
	n := target.Size
	cursor, err := s.cfg.Store.Synced(ctx, s.log)
	if err != nil {
		return 0, err
	}
	if cursor > n {
		return 0, fmt.Errorf("sync %s: store holds %d records, more than the newest head (%d)", s.log, cursor, n)
	}
	if cursor == n && served == n {
		s.logger.Info("up to date", "size", n)
		return 0, nil
	}
	s.logger.Info("syncing", "from", cursor, "to", n, "upstream", s.cfg.Upstream.URL())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tree := target.Tree()
	reader := proof.NewReader(ctx, proof.ReaderConfig{Log: s.log, Source: s.src, Concurrency: s.cfg.Concurrency})

	firstTile, endTile := cursor/tileWidth, (n+tileWidth-1)/tileWidth
	jobs := make(chan *job, 3)
	go s.fetchJobs(ctx, jobs, firstTile, endTile, n)

	type verified struct {
		j    *job
		recs []store.Record
		err  error
	}
	out := make(chan verified, 1)
	go func() {
		defer close(out)
		for j := range jobs {
			recs, err := s.verifyJob(ctx, reader, tree, j, target)
			select {
			case out <- verified{j, recs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var stored int64
	p := newProgress(s, cursor, n)

	// Batches commit in order. With a store that can stage them (Postgres),
	// a batch's records are written while the batch before it commits, so
	// the database need not wait between COPYs; at most two are in flight.
	type inflight struct {
		b     store.Batch
		first int64 // the batch's first record not stored before
		wait  func() error
	}
	var queue []inflight
	// settle waits until at most keep batches are in flight.
	settle := func(keep int) error {
		for len(queue) > keep {
			f := queue[0]
			queue = queue[1:]
			if err := f.wait(); err != nil {
				// Those after it were not committed: wait for them to
				// let go of the store.
				cancel()
				for _, g := range queue {
					g.wait()
				}
				queue = nil
				return s.commitError(context.WithoutCancel(ctx), err, f.b, target)
			}
			stored += f.b.Synced - f.first
			*tiles += int64(len(f.b.Tiles))
			if s.cfg.Replica != nil {
				if err := s.cfg.Replica.Append(ctx, f.b.Records); err != nil {
					cancel()
					for _, g := range queue {
						g.wait()
					}
					queue = nil
					return fmt.Errorf("sync %s: replica: %w", s.log, err)
				}
			}
			p.report(f.b.Synced, false)
		}
		return nil
	}
	st, staging := s.cfg.Store.(store.Stager)
	for v := range out {
		if v.err != nil {
			// What was verified before is stored before the run stops.
			if err := settle(0); err != nil {
				return stored, err
			}
			return stored, v.err
		}
		// Batches before the last are Resumable: they only move the cursor.
		// The last one serves the head and is durable before Commit returns
		// (with a replica, a batch of its own serves the head, after it).
		b := store.Batch{Records: v.recs, Synced: min(v.j.end*tileWidth, n), Resumable: true}
		if v.j.end == endTile && s.cfg.Replica == nil {
			b.Resumable = false
			upper, err := s.upperTiles(ctx, reader, target, served)
			if err != nil {
				if serr := settle(0); serr != nil {
					return stored, serr
				}
				return stored, err
			}
			b.Tiles = append(b.Tiles, upper...)
			b.Serve = n
		}
		f := inflight{b: b, first: max(cursor, v.j.first*tileWidth)}
		if staging {
			var after func() error
			if len(queue) > 0 {
				after = queue[len(queue)-1].wait
			}
			f.wait = st.StageCommit(ctx, s.log, b, after)
		} else {
			err := s.cfg.Store.Commit(ctx, s.log, b)
			f.wait = func() error { return err }
		}
		queue = append(queue, f)
		if err := settle(1); err != nil {
			return stored, err
		}
	}
	if err := settle(0); err != nil {
		return stored, err
	}
	if err := ctx.Err(); err != nil {
		return stored, err
	}
	if firstTile == endTile || s.cfg.Replica != nil {
		// No records to fetch (the tree did not grow past the cursor), or
		// a replica must agree first: the head is not served yet.
		if s.cfg.Replica != nil {
			if err := s.checkReplica(ctx, target, false); err != nil {
				return stored, err
			}
		}
		upper, err := s.upperTiles(ctx, reader, target, served)
		if err != nil {
			return stored, err
		}
		if err := s.commit(ctx, store.Batch{Tiles: upper, Synced: -1, Serve: n}, target); err != nil {
			return stored, err
		}
		*tiles += int64(len(upper))
	}
	p.report(n, true)
	return stored, nil
}

// fetchJobs starts the fetches of batch after batch, in order, keeping at
// most cap(jobs) batches ahead of verification.
func (s *Syncer) fetchJobs(ctx context.Context, jobs chan<- *job, first, end, n int64) {
	defer close(jobs)
	sem := make(chan struct{}, s.cfg.Concurrency)
	for b := first; b < end; b += int64(s.cfg.BatchTiles) {
		j := &job{first: b, end: min(b+int64(s.cfg.BatchTiles), end)}
		k := int(j.end - j.first)
		j.data, j.errs = make([][]byte, k), make([]error, k)
		for i := 0; i < k; i++ {
			t := tlog.Tile{H: store.TileHeight, L: -1, N: j.first + int64(i), W: tileW(j.first+int64(i), n)}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				j.errs[i] = ctx.Err()
				continue
			}
			j.wg.Add(1)
			go func() {
				defer j.wg.Done()
				defer func() { <-sem }()
				j.data[i], j.errs[i] = s.cfg.Upstream.Tile(ctx, t)
			}()
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// tileW is the width of tile k at level 0 in a tree of size n.
func tileW(k, n int64) int {
	return int(min(tileWidth, n-k*tileWidth))
}

// verifyJob checks a batch's records against the signed root: the leaf
// hashes of a data tile's records are the level-0 hash tile of the same
// index, so the batch's records are proven by authenticating the level-0
// tiles they make (with the upper tiles the reader fetches and checks).
// The tiles themselves are not stored: the store rebuilds them from the
// records (see store.LeafTile).
func (s *Syncer) verifyJob(ctx context.Context, reader *proof.Reader, tree tlog.Tree, j *job, target store.Head) ([]store.Record, error) {
	j.wg.Wait()
	if err := proof.FirstError(j.errs); err != nil {
		return nil, fmt.Errorf("sync %s: %w (full mode needs an upstream that serves data tiles; a module proxy's /sumdb/ endpoint usually refuses them)", s.log, err)
	}
	texts := make([][][]byte, len(j.data))
	local := make(map[tlog.Tile][]byte, len(j.data))
	indexes := make([]int64, 0, len(j.data))
	n := 0
	var leaf []byte // 0x00 and a record, hashed as its leaf (see leafHash)
	for i, d := range j.data {
		k := j.first + int64(i)
		w := tileW(k, tree.N)
		dt := tlog.Tile{H: store.TileHeight, L: -1, N: k, W: w}
		var err error
		if texts[i], err = splitDataTile(d, w); err != nil {
			return nil, s.misbehaved(ctx, store.Evidence{
				Kind:    store.EvidenceBadRecord,
				Message: fmt.Sprintf("data tile %s from %s: %v", dt.Path(), s.dataTileSource(ctx, k, w), err),
				Source:  s.dataTileSource(ctx, k, w),
				Object:  dt.Path(),
				NoteA:   target.Note,
				Data:    d,
			})
		}
		leaves := make([]byte, 0, w*tlog.HashSize)
		for _, text := range texts[i] {
			var h tlog.Hash
			h, leaf = leafHash(leaf, text)
			leaves = append(leaves, h[:]...)
		}
		t := tlog.Tile{H: store.TileHeight, L: 0, N: k, W: w}
		local[t] = leaves
		indexes = append(indexes, tlog.StoredHashIndex(0, k*tileWidth+int64(w)-1))
		n += w
	}
	if _, err := reader.WithLocal(local).HashReader(tree).ReadHashes(indexes); err != nil {
		if _, ok := errors.AsType[*proof.InconsistentTileError](err); !ok {
			return nil, fmt.Errorf("sync %s: level-0 tiles %d..%d: %w", s.log, j.first, j.end-1, err)
		}
		// A record or an upper tile is wrong: find which, from the
		// upstream's own level-0 tiles, for the evidence.
		return nil, s.findLiar(ctx, reader, tree, j, texts, target, err)
	}
	recs := make([]store.Record, 0, n)
	var sc tileScratch
	for i, ts := range texts {
		recs = appendTileRecords(recs, &sc, j.first+int64(i), ts)
	}
	return recs, nil
}

// leafHash returns tlog.RecordHash(text), the record's leaf hash in the
// tree (RFC 6962 section 2.1: SHA-256 of a 0x00 byte, then the record),
// hashed in buf, which it returns for the next record. tlog.RecordHash
// allocates a hash.Hash for every record; a full sync hashes every one.
func leafHash(buf, text []byte) (tlog.Hash, []byte) {
	buf = append(append(buf[:0], 0), text...)
	return sha256.Sum256(buf), buf
}

// appendTileRecords appends to recs the records of data tile k, whose
// records' bytes are texts. The records' paths and versions are
// substrings of one string made for the tile from its paths and versions
// alone: one allocation a tile instead of two a record, and a copy of
// about a third of the tile's bytes rather than all of them (the whole
// tile as a string, earlier: 60 of the 1,440 ms in a 1,000,000-record
// sync's profile, and most of the garbage the sync made besides its
// batches). sc is scratch space, returned for the next tile.
func appendTileRecords(recs []store.Record, sc *tileScratch, k int64, texts [][]byte) []store.Record {
	sc.names, sc.lens = sc.names[:0], sc.lens[:0]
	for _, text := range texts {
		p, v, ok := moduleFields(text)
		if !ok {
			sc.lens = append(sc.lens, -1, -1)
			continue
		}
		sc.names = append(append(sc.names, p...), v...)
		sc.lens = append(sc.lens, int32(len(p)), int32(len(v)))
	}
	all := string(sc.names)
	off := 0
	for x, text := range texts {
		var path, version string
		if p, v := int(sc.lens[2*x]), int(sc.lens[2*x+1]); p >= 0 {
			path, version = all[off:off+p], all[off+p:off+p+v]
			off += p + v
		} else {
			path, version = store.RecordModule(text)
		}
		recs = append(recs, store.Record{ID: k*tileWidth + int64(x), Path: path, Version: version, Data: text})
	}
	return recs
}

// tileScratch is appendTileRecords' scratch space.
type tileScratch struct {
	names []byte
	lens  []int32 // per record: its path's and version's lengths, or -1s
}

// moduleFields returns the path and version a record begins with,
// "<path> <version> ", when both are printable ASCII without spaces, as in
// every record of the Go checksum database: then they are what
// store.RecordModule returns. ok is false for anything else, which
// store.RecordModule decides.
func moduleFields(text []byte) (path, version []byte, ok bool) {
	i := fieldEnd(text, 0)
	if i == 0 || i == len(text) || text[i] != ' ' {
		return nil, nil, false
	}
	j := fieldEnd(text, i+1)
	if j == i+1 || j == len(text) || text[j] != ' ' {
		return nil, nil, false
	}
	return text[:i], text[i+1 : j], true
}

// fieldEnd returns the index of the first byte of b from i on that is not
// printable ASCII (a space is not), or len(b).
func fieldEnd(b []byte, i int) int {
	for i < len(b) && b[i]-'!' <= '~'-'!' {
		i++
	}
	return i
}

// findLiar finds what is wrong in a batch whose records do not authenticate
// (failed, the error they gave): it fetches the upstream's level-0 hash
// tiles of the batch and authenticates them; a tile that does not is a bad
// tile, and a record that does not match its leaf in an authenticated tile
// is a bad record. The evidence is kept, and the error returned.
func (s *Syncer) findLiar(ctx context.Context, reader *proof.Reader, tree tlog.Tree, j *job, texts [][][]byte, target store.Head, failed error) error {
	hashes := make([][]byte, len(j.data))
	errs := make([]error, len(j.data))
	var wg sync.WaitGroup
	for i := range j.data {
		k := j.first + int64(i)
		wg.Go(func() {
			hashes[i], errs[i] = s.cfg.Upstream.Tile(ctx, tlog.Tile{H: store.TileHeight, L: 0, N: k, W: tileW(k, tree.N)})
		})
	}
	wg.Wait()
	if err := proof.FirstError(errs); err != nil {
		return fmt.Errorf("sync %s: level-0 tiles %d..%d do not authenticate (%v), and fetching them failed: %w", s.log, j.first, j.end-1, failed, err)
	}
	local := make(map[tlog.Tile][]byte, len(hashes))
	indexes := make([]int64, 0, len(hashes))
	for i, h := range hashes {
		k := j.first + int64(i)
		t := tlog.Tile{H: store.TileHeight, L: 0, N: k, W: tileW(k, tree.N)}
		local[t] = h
		indexes = append(indexes, tlog.StoredHashIndex(0, k*tileWidth+int64(t.W)-1))
	}
	batch := reader.WithLocal(local)
	if _, err := batch.HashReader(tree).ReadHashes(indexes); err != nil {
		if _, ok := errors.AsType[*proof.InconsistentTileError](err); ok {
			// Name the tile: each of the batch's that authenticates on
			// its own is not the one.
			for t, h := range local {
				one := reader.WithLocal(map[tlog.Tile][]byte{t: h})
				if _, err := one.HashReader(tree).ReadHashes([]int64{tlog.StoredHashIndex(0, t.N*tileWidth+int64(t.W)-1)}); err == nil {
					batch.SaveTiles([]tlog.Tile{t}, nil)
				}
			}
		}
		return s.tileTrouble(ctx, fmt.Errorf("level-0 tiles %d..%d: %w", j.first, j.end-1, err), target, batch.Suspects())
	}
	for i, ts := range texts {
		k := j.first + int64(i)
		w := tileW(k, tree.N)
		for x, text := range ts {
			if tlog.RecordHash(text) != tlog.Hash(hashes[i][x*tlog.HashSize:]) {
				id := k*tileWidth + int64(x)
				return s.misbehaved(ctx, store.Evidence{
					Kind:    store.EvidenceBadRecord,
					Message: fmt.Sprintf("record %d from %s does not match its leaf hash in tree %d", id, s.dataTileSource(ctx, k, w), tree.N),
					Source:  s.dataTileSource(ctx, k, w),
					Object:  fmt.Sprintf("record %d", id),
					NoteA:   target.Note,
					Data:    text,
				})
			}
		}
	}
	// The upstream's tiles authenticate and match the records now: it
	// answered differently the second time. Nothing is stored either way.
	return s.tileTrouble(ctx, fmt.Errorf("level-0 tiles %d..%d: %w", j.first, j.end-1, failed), target, nil)
}

// upperTiles returns the tiles above level 0 that the target tree adds to
// those of the served tree, authenticated against the target's root.
func (s *Syncer) upperTiles(ctx context.Context, reader *proof.Reader, target store.Head, served int64) ([]store.Tile, error) {
	tree := target.Tree()
	var ts []tlog.Tile
	var indexes []int64
	for _, t := range tlog.NewTiles(store.TileHeight, served, tree.N) {
		if t.L == 0 {
			continue
		}
		ts = append(ts, t)
		indexes = append(indexes, tlog.StoredHashIndex(t.L*t.H, t.N<<t.H+int64(t.W)-1))
	}
	if len(ts) == 0 {
		return nil, nil
	}
	if _, err := tlog.TileHashReader(tree, reader).ReadHashes(indexes); err != nil {
		return nil, s.tileTrouble(ctx, fmt.Errorf("upper tiles: %w", err), target, reader.Suspects())
	}
	data, err := reader.ReadTiles(ts) // from the cache: the bytes just authenticated
	if err != nil {
		return nil, err
	}
	out := make([]store.Tile, len(ts))
	for i, t := range ts {
		out[i] = store.Tile{Tile: t, Data: data[i]}
	}
	return out, nil
}

// splitDataTile returns the first w records of a data tile.
//
// A data tile is its records, each followed by a blank line: the record text
// ends in "\n" and tlog.FormatRecord's terminating "\n" follows (the id line
// is dropped). Record text never holds a blank line, so "\n\n" ends each
// record. The last record's blank line may be missing, and a full tile served
// for a partial request holds more records than asked for. Every record is
// checked against its leaf hash after this, so a wrong split can only fail,
// never pass.
func splitDataTile(data []byte, w int) ([][]byte, error) {
	recs := make([][]byte, 0, w)
	for len(recs) < w {
		if len(data) == 0 {
			return nil, fmt.Errorf("tile holds %d records, want %d", len(recs), w)
		}
		var rec []byte
		if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
			rec, data = data[:i+1], data[i+2:]
		} else if data[len(data)-1] == '\n' {
			rec, data = data, nil
		} else {
			return nil, fmt.Errorf("record %d of the tile does not end in a newline", len(recs))
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// progress logs how a long sync is going.
type progress struct {
	s          *Syncer
	start, end int64
	began, at  time.Time
}

func newProgress(s *Syncer, start, end int64) *progress {
	now := time.Now()
	return &progress{s: s, start: start, end: end, began: now, at: now}
}

func (p *progress) report(done int64, final bool) {
	now := time.Now()
	if !final && now.Sub(p.at) < p.s.cfg.ProgressEvery {
		return
	}
	p.at = now
	el := now.Sub(p.began).Seconds()
	rate := float64(done-p.start) / max(el, 1e-9)
	args := []any{"records", done, "of", p.end, "per_second", int64(rate)}
	if !final && rate > 0 {
		args = append(args, "eta", (time.Duration(float64(p.end-done)/rate) * time.Second).Round(time.Second))
	}
	if final {
		p.s.logger.Info("synced", append(args, "elapsed", time.Since(p.began).Round(time.Millisecond))...)
	} else {
		p.s.logger.Info("progress", args...)
	}
}
