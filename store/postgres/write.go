package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sumkeep/sumkeep/store"
)

// Commit implements store.Store: records go in with COPY, tiles are widened
// in place, and the cursors move, all in one transaction.
//
// In a full sync Commit is the critical path, once a batch: only its COPY
// should keep the database busy. So the transaction costs two round trips
// besides the COPY (one to begin it and lock the log's row, one to write the
// tiles, move the cursors and commit), and every check of the records runs
// beside the COPY rather than before it: the COPY's reader keys the records
// as it streams them, and a checker follows it, checking that each record
// names its own module@version and probing, on a second connection, for the
// same module@version stored under another id (only for the keys the log's
// key filter may hold, when it has one: see filter.go). A failed check rolls
// the transaction back, so nothing of a bad batch is ever visible.
//
// Commits of one Store take turns (they would anyway, on the log's row),
// and each takes both its connections before it locks the row: a commit
// holding the row never waits for the pool.
func (s *Store) Commit(ctx context.Context, log string, b store.Batch) error {
	if err := s.commit(ctx, log, b); err != nil {
		return fmt.Errorf("postgres: commit to %s: %w", log, err)
	}
	return nil
}

// prepare finds the batch's log and checks what can be checked before the
// database is asked: ids, and tiles (returning writeTilesSQL's arguments).
func (s *Store) prepare(ctx context.Context, log string, b store.Batch) (logID int16, tileArgs []any, err error) {
	if logID, err = s.logID(ctx, s.pool, log, true); err != nil {
		return 0, nil, err
	}
	if err := checkIDs(b.Records); err != nil {
		return 0, nil, err
	}
	if tileArgs, err = tileRows(logID, b.Tiles); err != nil {
		return 0, nil, err
	}
	return logID, tileArgs, nil
}

func (s *Store) commit(ctx context.Context, log string, b store.Batch) (err error) {
	logID, tileArgs, err := s.prepare(ctx, log, b)
	if err != nil {
		return err
	}
	recs := b.Records

	release, err := s.commitTurn.take(ctx)
	if err != nil {
		return err
	}
	defer release()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var probe *pgxpool.Conn
	if len(recs) > 0 {
		if probe, err = s.pool.Acquire(ctx); err != nil {
			return err
		}
		defer probe.Release()
	}
	c := conn.Conn()
	defer rollback(ctx, c)

	// Round trip 1: begin, and lock the log's row.
	st, maxID, err := lockLog(ctx, c, logID, b, true)
	if err != nil {
		return err
	}
	if e := b.Expect; e != nil && (st.Served != e.Served || (e.Generation >= 0 && st.Generation != e.Generation)) {
		return fmt.Errorf("expected served head %d generation %d, found %d and %d: %w",
			e.Served, e.Generation, st.Served, st.Generation, store.ErrConflict)
	}

	filter := s.filters.take(logID, st.Generation, maxID)
	if filter != nil {
		// Whatever goes wrong from here, the filter may no longer describe
		// the log: drop it, unless the commit succeeds and teaches it.
		defer func() {
			if err != nil {
				s.filters.drop(logID, filter)
			}
		}()
	}
	var keys []int64
	if len(recs) > 0 {
		ready := func(context.Context) (*keyFilter, error) { return filter, nil }
		chk, err := writeRecords(ctx, c, probe.Conn(), log, logID, recs, maxID, ready, nil)
		if err != nil {
			return err
		}
		keys = chk.src.keys
	}

	summarize, err := s.finishBatch(ctx, c, logID, b, tileArgs, st.Generation, filter, keys)
	if summarize {
		s.summarizeFilled()
	}
	return err
}

// finishBatch writes a batch's tiles, moves the log's cursors and commits,
// in the transaction open on c that holds the log's row (found at
// generation gen), then teaches the log's key filter the batch's keys.
// It reports whether the batch was a full sync's, whose BRIN ranges the
// caller then summarizes (see brinSummarizer).
func (s *Store) finishBatch(ctx context.Context, c *pgx.Conn, logID int16, b store.Batch, tileArgs []any, gen int64, filter *keyFilter, keys []int64) (summarize bool, err error) {
	recs := b.Records
	if len(b.Tiles) >= copyTilesMin {
		rest, err := copyNewTiles(ctx, c, logID, b.Tiles)
		if err != nil {
			return false, fmt.Errorf("writing %d tiles: %w", len(b.Tiles), err)
		}
		if tileArgs, err = tileRows(logID, rest); err != nil {
			return false, err
		}
	}
	// One round trip: tiles (those stored already, if many were copied),
	// cursors, and (unless a head is to be served, which is checked first)
	// the commit.
	var q pgx.Batch
	if tileArgs != nil {
		q.Queue(writeTilesSQL, tileArgs...)
	}
	bump := len(recs) > 0 || b.Serve > 0
	if bump || b.Synced >= 0 {
		newMax, gen := int64(-1), 0
		if len(recs) > 0 {
			newMax = recs[len(recs)-1].ID
		}
		if bump {
			gen = 1
		}
		q.Queue(`UPDATE logs SET synced = CASE WHEN $2::bigint >= 0 THEN $2::bigint ELSE synced END,
			max_id = greatest(max_id, $3::bigint), generation = generation + $4::bigint
			WHERE id = $1`, logID, b.Synced, newMax, gen)
	}
	served := true
	if b.Serve > 0 {
		q.Queue(`UPDATE logs SET served = $2 WHERE id = $1 AND served <= $2
			AND EXISTS (SELECT 1 FROM heads WHERE log_id = $1 AND size = $2)`, logID, b.Serve).Exec(func(tag pgconn.CommandTag) error {
			served = tag.RowsAffected() == 1
			return nil
		})
		// Summarize the BRIN ranges written since the last head, so that
		// id range scans (data tiles) skip them instead of reading them.
		if len(recs) > 0 {
			q.Queue(`SELECT brin_summarize_new_values('records_id')`)
		}
	} else {
		q.Queue("COMMIT")
	}
	if err := c.SendBatch(ctx, &q).Close(); err != nil {
		return false, fmt.Errorf("writing %d tiles and moving cursors: %w", len(b.Tiles), err)
	}
	if !served {
		return false, fmt.Errorf("cannot serve head %d: not stored, or older than the served head", b.Serve)
	}
	if b.Serve > 0 {
		if _, err := c.Exec(ctx, "COMMIT"); err != nil {
			return false, err
		}
	}
	if c.PgConn().TxStatus() != 'I' {
		return false, fmt.Errorf("transaction did not commit")
	}
	if filter != nil {
		if bump {
			gen++
		}
		s.filters.learn(logID, filter, gen, namedKeys(recs, keys))
	}
	return len(recs) > 0 && b.Synced >= 0 && b.Serve == 0, nil
}

// A turn is a token that one holder at a time has: a buffered channel
// of capacity one. Waiters are served in the order they came.
type turn chan struct{}

// take waits for the turn, or for ctx to end.
func (t turn) take(ctx context.Context) (release func(), err error) {
	select {
	case t <- struct{}{}:
		return func() { <-t }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// beginSQL begins a batch's transaction.
func beginSQL(q *pgx.Batch, b store.Batch) {
	q.Queue("BEGIN")
	if b.Resumable && b.Serve == 0 {
		// See store.Batch: the commit need not wait for the WAL flush.
		q.Queue("SET LOCAL synchronous_commit = off")
	}
}

// lockLog locks the log's row in the transaction on c (beginning it first
// if begin is set), in one round trip, and returns the log's state and
// highest stored record id. Writers of one log take turns on its row; max_id
// tells whether any id of a batch may be stored already (fetched on demand
// earlier).
func lockLog(ctx context.Context, c *pgx.Conn, logID int16, b store.Batch, begin bool) (store.State, int64, error) {
	var q pgx.Batch
	if begin {
		beginSQL(&q, b)
	}
	var st store.State
	var maxID int64
	q.Queue(`SELECT served, generation, max_id FROM logs WHERE id = $1 FOR UPDATE`, logID).QueryRow(func(row pgx.Row) error {
		return row.Scan(&st.Served, &st.Generation, &maxID)
	})
	if err := c.SendBatch(ctx, &q).Close(); err != nil {
		return st, 0, fmt.Errorf("locking log: %w", err)
	}
	return st, maxID, nil
}

// rollback ends the connection's transaction, if one is open, with a context
// of its own: it must happen when ctx is cancelled too. A connection left in
// a transaction is closed by the pool when released.
func rollback(ctx context.Context, c *pgx.Conn) {
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c.Exec(rctx, "ROLLBACK")
}

// checkIDs checks that record ids are not negative and ascend.
func checkIDs(recs []store.Record) error {
	if len(recs) > 0 && recs[0].ID < 0 {
		return fmt.Errorf("record id %d is negative", recs[0].ID)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].ID <= recs[i-1].ID {
			return fmt.Errorf("record ids do not ascend at %d", recs[i].ID)
		}
	}
	return nil
}

// writeRecords COPYs recs into the transaction open on conn, skipping those
// stored already with the same bytes, while a checker follows the COPY (see
// Commit) and probes for duplicates on probe. maxID is the highest record id
// stored before. ready is called once, before the first probe: it returns
// the log's key filter, or nil. It returns the checker, which holds the
// records' lookup keys and their index.
//
// If copies is not nil, writeRecords encodes every row first, then holds
// that turn for the COPY alone: a staged batch encodes while the batch
// before it is being copied, so its own COPY then only sends bytes and the
// server never waits for this process's CPU.
func writeRecords(ctx context.Context, conn, probe *pgx.Conn, log string, logID int16, recs []store.Record, maxID int64, ready func(context.Context) (*keyFilter, error), copies turn) (*checker, error) {
	lo, hi := recs[0].ID, recs[len(recs)-1].ID+1
	have := make(map[int64]bool)
	if lo <= maxID {
		if err := checkStored(ctx, conn, log, logID, recs, have); err != nil {
			return nil, err
		}
	}
	src := &recordReader{recs: recs, keys: make([]int64, len(recs)), skip: have, logID: logID, keyed: make(chan struct{}, 1)}
	var release func()
	if copies != nil {
		src.encodeAll()
		var err error
		if release, err = copies.take(ctx); err != nil {
			return nil, err
		}
	}
	chk := &checker{recs: recs, src: src, probe: probe, logID: logID, ready: ready,
		skip: func(id int64) bool { return have[id] }, index: newKeyIndex(src.keys)}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	checked := make(chan error, 1)
	go func() { checked <- chk.run(cctx) }()

	widenSendBuffer(conn.PgConn().Conn())
	_, copyErr := conn.PgConn().CopyFrom(ctx, src, CopyRecordsSQL)
	if release != nil {
		release()
	}
	if copyErr != nil {
		cancel()
	}
	if err := <-checked; err != nil && copyErr == nil {
		return nil, err
	}
	if copyErr != nil {
		return nil, fmt.Errorf("copying records %d..%d: %w", lo, hi-1, copyErr)
	}
	return chk, nil
}

// probeChunk is how many lookup keys one duplicate probe asks for.
const probeChunk = 4096

// checker checks a batch's records as the COPY's reader streams them: each
// names its own module@version, none is in the batch twice, and none is
// stored under another id. It sees every committed record through its own
// connection, and no other writer can commit while the batch's transaction
// holds the log's row.
type checker struct {
	recs  []store.Record
	src   *recordReader       // publishes how many records it has keyed
	skip  func(id int64) bool // stored records that are the batch's own
	probe *pgx.Conn
	logID int16
	ready func(context.Context) (*keyFilter, error)

	readied bool
	filter  *keyFilter // if not nil, keys it does not hold need no probe

	index *keyIndex // the records checked so far, by lookup key
}

func (c *checker) run(ctx context.Context) error {
	for i := range c.recs {
		if err := store.CheckModule(&c.recs[i]); err != nil {
			return err
		}
	}
	done := 0
	pending := make([]int64, 0, probeChunk)
	for done < len(c.recs) {
		select {
		case <-c.src.keyed:
		case <-ctx.Done():
			return ctx.Err()
		}
		upto := int(c.src.keyedUpto.Load())
		for i := done; i < upto; i++ {
			r := &c.recs[i]
			if r.Path == "" {
				continue // names no module: it cannot be looked up
			}
			if err := c.add(int32(i)); err != nil {
				return err
			}
			pending = append(pending, c.src.keys[i])
		}
		done = upto
		if len(pending) >= probeChunk || done == len(c.recs) {
			if !c.readied {
				f, err := c.ready(ctx)
				if err != nil {
					return err
				}
				c.filter, c.readied = f, true
			}
			if c.filter != nil {
				pending = c.filter.maybeHeld(pending)
			}
			if len(pending) > 0 {
				if err := c.probeKeys(ctx, c.probe, pending); err != nil {
					return err
				}
			}
			pending = pending[:0]
		}
	}
	return nil
}

// add indexes record i by its key, failing if its module@version is in the
// batch already.
func (c *checker) add(i int32) error {
	r := &c.recs[i]
	if o, ok := c.find(c.src.keys[i], r.Path, r.Version); ok {
		return &store.DuplicateError{Path: r.Path, Version: r.Version, ID: r.ID, OtherID: o.ID}
	}
	c.index.add(i)
	return nil
}

// find returns the batch's record indexed for path@version with key k.
func (c *checker) find(k int64, path, version string) (*store.Record, bool) {
	var found *store.Record
	ok := c.index.find(k, func(i int32) bool {
		r := &c.recs[i]
		if r.Path == path && r.Version == version {
			found = r
			return true
		}
		return false
	})
	return found, ok
}

// reprobe probes every key of the batch again, through q, ignoring stored
// records for which skip is true.
func (c *checker) reprobe(ctx context.Context, q rowsQuerier, skip func(id int64) bool) error {
	c.skip = skip
	return c.probeKeys(ctx, q, namedKeys(c.recs, c.src.keys))
}

// namedKeys returns, in order, the lookup keys of the records that name a
// module (those a lookup can find); keys[i] is recs[i]'s.
func namedKeys(recs []store.Record, keys []int64) []int64 {
	var out []int64
	for i, k := range keys {
		if recs[i].Path != "" {
			out = append(out, k)
		}
	}
	return out
}

// rowsQuerier is what a probe needs of a connection.
type rowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// probeSQL finds the records of log $1 with the lookup keys $2, with one
// index probe per key whatever the statistics say. Written as key = ANY($2),
// a table that a sync is filling has no statistics yet (nothing has analyzed
// it), and the planner guesses from its size that the keys match a good
// part of it: it starts parallel workers for every probe, and past about a
// million records scans the whole table each time, a cost that grows with
// the table. The lateral subquery takes each key as a parameter, which the
// hash index of key serves (OFFSET 0 keeps it from being flattened into a
// join); log_id + 0 keeps the BRIN index out (see lookupBatch).
const probeSQL = `SELECT r.id, r.key, r.path, r.version FROM unnest($2::bigint[]) AS q(key)
	CROSS JOIN LATERAL (SELECT id, key, path, version FROM records
		WHERE records.key = q.key AND records.log_id + 0 = $1 OFFSET 0) r`

// probeKeys fails with a *store.DuplicateError if a module@version with one
// of keys is stored under an id that is not the same record.
func (c *checker) probeKeys(ctx context.Context, q rowsQuerier, keys []int64) error {
	rows, err := q.Query(ctx, probeSQL, c.logID, keys)
	if err != nil {
		return fmt.Errorf("checking records for duplicates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, key int64
		var path, version string
		if err := rows.Scan(&id, &key, &path, &version); err != nil {
			return fmt.Errorf("checking records for duplicates: %w", err)
		}
		if c.skip(id) {
			continue // the same record
		}
		if r, ok := c.find(key, path, version); ok {
			return &store.DuplicateError{Path: path, Version: version, ID: r.ID, OtherID: id}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("checking records for duplicates: %w", err)
	}
	return nil
}

// checkStored marks in have the records of recs that are stored already,
// and fails if one is stored with other bytes.
func checkStored(ctx context.Context, conn *pgx.Conn, log string, logID int16, recs []store.Record, have map[int64]bool) error {
	lo, hi := recs[0].ID, recs[len(recs)-1].ID+1
	stored := store.NewStoredCheck(log, recs, have)
	rows, err := conn.Query(ctx, `SELECT id, path, version, hashes, raw FROM records
		WHERE log_id = $1 AND id >= $2 AND id < $3`, logID, lo, hi)
	if err != nil {
		return fmt.Errorf("reading stored records %d..%d: %w", lo, hi-1, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var path, version string
		var hashes, raw []byte
		if err := rows.Scan(&id, &path, &version, &hashes, &raw); err != nil {
			return fmt.Errorf("reading stored records %d..%d: %w", lo, hi-1, err)
		}
		if err := stored.Row(id, path, version, hashes, raw); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading stored records %d..%d: %w", lo, hi-1, err)
	}
	return nil
}

const writeTilesSQL = `INSERT INTO tiles (log_id, level, idx, width, hashes)
	SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::smallint[], $5::bytea[])
	ON CONFLICT (log_id, level, idx) DO UPDATE SET width = EXCLUDED.width, hashes = EXCLUDED.hashes
	WHERE tiles.width < EXCLUDED.width`

// tileRows checks tiles and returns the arguments of writeTilesSQL, or nil
// for no tiles.
func tileRows(logID int16, tiles []store.Tile) ([]any, error) {
	if len(tiles) == 0 {
		return nil, nil
	}
	levels := make([]int16, len(tiles))
	idxs := make([]int64, len(tiles))
	widths := make([]int16, len(tiles))
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		if t.Tile.H != store.TileHeight || t.Tile.L < 0 || t.Tile.W < 1 || t.Tile.W > 1<<store.TileHeight {
			return nil, fmt.Errorf("cannot store tile %s", t.Tile.Path())
		}
		if len(t.Data) != t.Tile.W*32 {
			return nil, fmt.Errorf("tile %s has %d bytes, want %d", t.Tile.Path(), len(t.Data), t.Tile.W*32)
		}
		levels[i], idxs[i], widths[i], data[i] = int16(t.Tile.L), t.Tile.N, int16(t.Tile.W), t.Data
	}
	return []any{logID, levels, idxs, widths, data}, nil
}

// AddEvidence implements store.Store.
func (s *Store) AddEvidence(ctx context.Context, log string, e store.Evidence) error {
	id, err := s.logID(ctx, s.pool, log, true)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO evidence (log_id, kind, message, note_a, note_b, data, source, object)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (log_id, kind, source, object) WHERE object <> ''
		DO UPDATE SET count = evidence.count + 1, last_seen = now()`,
		id, e.Kind, e.Message, e.NoteA, e.NoteB, e.Data, e.Source, e.Object)
	if err != nil {
		return fmt.Errorf("postgres: keeping evidence for %s: %w", log, err)
	}
	return nil
}

// Evidence implements store.Store.
func (s *Store) Evidence(ctx context.Context, log string) ([]store.Evidence, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT kind, message, source, object, note_a, note_b, data, created_at, count, last_seen
		FROM evidence WHERE log_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading evidence for %s: %w", log, err)
	}
	defer rows.Close()
	var es []store.Evidence
	for rows.Next() {
		var e store.Evidence
		if err := rows.Scan(&e.Kind, &e.Message, &e.Source, &e.Object, &e.NoteA, &e.NoteB, &e.Data, &e.CreatedAt, &e.Count, &e.LastSeen); err != nil {
			return nil, fmt.Errorf("postgres: reading evidence for %s: %w", log, err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: reading evidence for %s: %w", log, err)
	}
	return es, nil
}

// unlockTimeout bounds releasing the sync lock.
const unlockTimeout = 10 * time.Second

// LockSync implements store.Store with a session-level advisory lock held on
// a connection taken out of the pool until unlock. If the process dies, the
// session ends and the lock with it.
func (s *Store) LockSync(ctx context.Context, log string) (func(), error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: taking sync lock for %s: %w", log, err)
	}
	key := lockKey("sumkeep-sync:" + log)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("postgres: taking sync lock for %s: %w", log, err)
	}
	if !ok {
		conn.Release()
		return nil, fmt.Errorf("sync lock for %s: %w", log, store.ErrLocked)
	}
	return func() {
		// A fresh context: unlock must happen even when ctx is cancelled;
		// bounded, as a database that stopped answering must not hold the
		// syncer forever.
		uctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The lock dies with the session: drop the connection.
			cctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancel()
			conn.Conn().Close(cctx)
		}
		conn.Release()
	}, nil
}

// copySendBuffer is the socket send buffer a COPY of records asks for,
// from a database on this machine: a whole batch of a full sync (16,384
// records, about 3.5 MB encoded) fits.
//
// pgx streams a COPY in 64 KB writes, and with the kernel's default send
// buffer (about 208 KB) the writer must run again every thousand records
// or so to keep the backend fed. A syncer beside its database keeps its
// one core busy fetching, hashing and encoding the next batches, so the
// writer often waited its turn, and the backend waited for it: 15% of the
// samples of a sync's COPY's wait event were ClientRead (Xeon 2-core,
// 2026-12-03), against 1-2% with this buffer, where the writer hands the
// kernel the batch in a few writes. Alternated sync runs (3 rounds of 2
// pairs): 170,000 -> 206,000 records/s (medians), a batch's COPY 92 -> 76
// ms. The kernel caps the size at net.core.wmem_max; a smaller cap only
// queues less of the batch. A database elsewhere is left alone: fixing the
// buffer of a TCP socket turns off the kernel's tuning of it, which over a
// long path may grow it further.
const copySendBuffer = 4 << 20

// widenSendBuffer asks for copySendBuffer on c's socket (under TLS too) if
// it reaches this machine: a Unix socket or a loopback address. The kernel
// allocates the buffer only as data is queued in it.
func widenSendBuffer(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	switch a := c.RemoteAddr().(type) {
	case *net.UnixAddr:
	case *net.TCPAddr:
		if !a.IP.IsLoopback() {
			return
		}
	default:
		return
	}
	if wb, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
		// Best effort: a socket that refuses keeps its buffer.
		_ = wb.SetWriteBuffer(copySendBuffer)
	}
}
