package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sumkeep/sumkeep/store"
)

// Lookups are the server's hot path. Under load many arrive at once, and
// one query for a batch of them costs Postgres little more than a query for
// one, so concurrent lookups are batched: a few workers each take the
// oldest waiting lookup and whatever else is queued behind it (up to
// maxLookupBatch) and answer them all with one query. A lookup that arrives
// alone is sent at once, by its own goroutine when a worker's slot is free
// (LookupWithin); batching forms while every slot is busy, and while
// lookups arrive densely (see lookupLinger).
//
// Fewer workers make bigger batches. On a 2-core machine shared by server
// and database, four workers averaged 2.6 lookups a query and reached 0.41
// of an in-memory server's throughput; one worker reached 0.76. So there is
// one query in flight per two cores, and one more while at least
// overflowDepth lookups wait (see overflowWorker): with every lookup
// missing the cache, one query in flight left the cores waiting on it, and
// a second worker always on split the few misses of a warm cache into more
// queries.
const maxLookupBatch = 128

func lookupWorkers() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// lookupPoolConfig returns the configuration of the lookup workers' own
// pool: cfg's, with one connection per worker, whose sessions plan the
// lookup statement once.
//
// pgx prepares every statement and runs it again with new arguments. For
// a prepared statement Postgres plans each execution anew (a custom plan)
// as long as the plans of the first five executions are estimated cheaper
// than a generic one. The lookup statement takes its keys as arrays: the
// planner sees a batch of one key (the common case when lookups come one
// at a time) as one row and estimates a generic plan for an array of
// unknown length at ten, so it keeps planning every execution, and
// planning costs several times the execution: EXPLAIN ANALYZE of a batch
// of one on a 300,000-record log shows 0.08–0.2 ms planning for 0.02 ms
// execution, and 0.007 ms planning with the generic plan, which is the
// same nested loop over the hash index of key. plan_cache_mode =
// force_generic_plan (Postgres 12 and later) keeps that plan for the
// session. It is set only in these sessions: the other statements'
// plans are left to the planner. A connection string that sets
// plan_cache_mode itself is followed.
func lookupPoolConfig(cfg *pgxpool.Config, workers int) *pgxpool.Config {
	lcfg := cfg.Copy()
	lcfg.MaxConns = int32(workers)
	lcfg.MinConns = 0
	if _, ok := lcfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		lcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	return lcfg
}

type lookupReq struct {
	ctx           context.Context
	log           string
	logID         int16
	key           int64
	path, version string
	maxID         int64
	done          chan lookupRes
	timer         *time.Timer // LookupWithin's, kept with the request for its next use
}

type lookupRes struct {
	id          int64
	hashes, raw []byte
	found       bool
	err         error
	// rec, when decoded is set, is the record already decoded (by a
	// lookup worker), or decoding it failed with err.
	rec     store.Record
	decoded bool
}

type lookupBatcher struct {
	reqs chan *lookupReq
	free sync.Pool     // *lookupReq answered, for reuse
	stop chan struct{} // closed by Close
	wg   sync.WaitGroup
	// workers are the workers' states, for Close to end their queries;
	// slots holds those not in use. A batch runs with one, taken by a
	// worker or by a lookup running its batch itself.
	workers  []*batchWorker
	slots    chan *batchWorker
	deep     chan struct{} // wakes the overflow worker
	overflow *batchWorker
	// ctx is cancelled by Close, ending the queries under way.
	ctx    context.Context
	cancel context.CancelFunc
	// last is when the last lookup arrived (nanoseconds since epoch);
	// lingerFor and dense are lookupLinger and lookupDense (tests change
	// them).
	last             atomic.Int64
	lingerFor, dense time.Duration
	// queries counts the lookup queries run.
	queries atomic.Int64
}

// A batch's query starts at once, unless lookups are arriving densely
// (the last one came less than lookupDense before): it then lingers for
// lookupLinger, so that those arriving meanwhile share its query. Each
// query costs the backend a fixed share (waking up, its executor's
// start-up, the write of its answer) many times what an added key costs:
// in the bench's lookups with the cache off, a query of about ten keys
// cost the backend 110 µs, and one of three, with the cache on, 90 µs.
// With a warm cache the misses reach the store a few hundred
// microseconds apart under load; lingering cut the backend's CPU a lookup
// by about a fifth, with the cache on (3.25 to 2.6 µs, mean of four pairs)
// and off (12.3 to 10.1 µs; 2026-12-03, `bench -lookup-only`), for half a
// millisecond more on a miss under load. A lookup that arrives alone, as
// the go command makes them, never waits.
const (
	lookupLinger = 500 * time.Microsecond
	lookupDense  = time.Millisecond
)

// arrived notes a lookup's arrival and reports whether lookups are
// arriving densely: the one before it came less than dense before.
func (b *lookupBatcher) arrived() bool {
	now := time.Now().UnixNano()
	return now-b.last.Swap(now) < int64(b.dense)
}

// recent reports whether the last lookup arrived less than dense ago.
func (b *lookupBatcher) recent() bool {
	return time.Now().UnixNano()-b.last.Load() < int64(b.dense)
}

// linger waits for more lookups to join a batch, if they arrive densely,
// or until Close.
func (b *lookupBatcher) linger(dense bool) {
	if !dense {
		return
	}
	t := time.NewTimer(b.lingerFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-b.stop:
	}
}

// errClosed answers lookups made during or after Close.
var errClosed = errors.New("postgres: store is closed")

func (s *Store) startLookups(workers int) {
	b := &s.lookups
	b.reqs = make(chan *lookupReq, 1024)
	b.lingerFor, b.dense = lookupLinger, lookupDense
	b.stop = make(chan struct{})
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.slots = make(chan *batchWorker, workers)
	for range workers {
		w := &batchWorker{batch: make([]*lookupReq, 0, maxLookupBatch)}
		b.workers = append(b.workers, w)
		b.slots <- w
		b.wg.Add(1)
		go s.lookupWorker()
	}
	b.deep = make(chan struct{}, 1)
	b.overflow = &batchWorker{batch: make([]*lookupReq, 0, maxLookupBatch)}
	b.wg.Add(1)
	go s.overflowWorker(b.overflow)
}

// overflowDepth is how many lookups must be waiting for the overflow
// worker to run a second query beside the workers'.
const overflowDepth = 16

// overflowWorker runs a batch of its own while the queue stays deep (the
// lookups that fill it wake it): a second query in flight only when a
// batch is waiting for one.
func (s *Store) overflowWorker(w *batchWorker) {
	b := &s.lookups
	defer b.wg.Done()
	for {
		select {
		case <-b.deep:
		case <-b.stop:
			return
		}
		for len(b.reqs) >= overflowDepth {
			select {
			case <-b.stop:
				return
			default:
			}
			w.batch = w.batch[:0]
			s.takeQueued(w)
			if len(w.batch) == 0 {
				break
			}
			s.lookupBatch(w, time.Time{})
		}
	}
}

// signalDeep wakes the overflow worker if the queue is deep.
func (s *Store) signalDeep() {
	if len(s.lookups.reqs) >= overflowDepth {
		select {
		case s.lookups.deep <- struct{}{}:
		default:
		}
	}
}

func (s *Store) stopLookups() {
	s.lookups.cancel()
	close(s.lookups.stop)
	for _, w := range s.lookups.workers {
		w.stop()
	}
	s.lookups.overflow.stop()
	s.lookups.wg.Wait()
	// Lookups running their batch themselves give their slots back once
	// their queries have ended.
	for range s.lookups.workers {
		<-s.lookups.slots
	}
}

func (s *Store) lookupWorker() {
	b := &s.lookups
	defer b.wg.Done()
	for {
		var r *lookupReq
		select {
		case r = <-b.reqs:
		case <-b.stop:
			return
		}
		var w *batchWorker
		select {
		case w = <-b.slots:
		case <-b.stop:
			return // r's caller stops waiting on Close too
		}
		// r waited for the slot while another batch ran: it lingers
		// only if lookups are still arriving.
		b.linger(b.recent())
		w.batch = append(w.batch[:0], r)
		s.takeQueued(w)
		s.lookupBatch(w, time.Time{})
		b.slots <- w
	}
}

// takeQueued adds the lookups waiting in the queue to w's batch, up to
// maxLookupBatch.
func (s *Store) takeQueued(w *batchWorker) {
	for len(w.batch) < maxLookupBatch {
		select {
		case r := <-s.lookups.reqs:
			w.batch = append(w.batch, r)
		default:
			return
		}
	}
}

// batchWorker is a lookup worker's batch and the buffers it reuses for
// every batch's query.
type batchWorker struct {
	batch  []*lookupReq
	live   []*lookupReq
	res    []lookupRes
	keys   []int64
	param  []byte
	params [][]byte

	mu      sync.Mutex
	conn    net.Conn // the connection of the query under way, or nil
	stopped bool     // Close has begun
}

// lookupBatch answers w's batch, its query given until deadline (if not
// zero) or lookupQueryTimeout, whichever comes first.
func (s *Store) lookupBatch(w *batchWorker, deadline time.Time) {
	w.live = w.live[:0]
	for _, r := range w.batch {
		if r.ctx.Err() != nil {
			r.done <- lookupRes{err: r.ctx.Err()}
			continue
		}
		w.live = append(w.live, r)
	}
	clear(w.batch) // the requests are the callers' once answered
	if len(w.live) == 0 {
		return
	}
	err := s.queryBatch(s.lookups.ctx, w, deadline)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("postgres: no answer in time: %w (%w)", context.DeadlineExceeded, err)
	}
	for i, r := range w.live {
		if err != nil {
			r.done <- lookupRes{err: err}
			continue
		}
		r.done <- w.res[i]
	}
	clear(w.live)
	clear(w.res)
}

// The lookup workers' statements. Both ask only for the rows of the
// batch's keys, and the worker picks each lookup's row among them (the
// log, path and version must match and the id be below the lookup's
// maxID; of several such rows, the smallest id wins, as ORDER BY id
// LIMIT 1 would): Postgres then only probes the hash index of key, with
// no expressions to evaluate per row. For a few keys a bitmap scan of
// key = ANY costs Postgres the least; for more, a nested loop over the
// keys (its generic plan: an index scan per key) costs less per key.
// Backend instructions per query (callgrind, 300,000-record table,
// generic plans), against the single statement before (a lateral
// subquery per key of five arrays, with ORDER BY id LIMIT 1):
//
//	keys   before     ANY      unnest join
//	1      121,403    48,458    64,571
//	8      261,707   126,672   129,390
//	32     716,656   358,358   344,263
//	128  2,590,203 1,540,178 1,225,218
const (
	lookupFewSQL = `SELECT id, key, log_id, path, version, hashes, raw
		FROM records WHERE key = ANY($1::bigint[])`
	lookupManySQL = `SELECT r.id, r.key, r.log_id, r.path, r.version, r.hashes, r.raw
		FROM unnest($1::bigint[]) AS q(key) JOIN records r ON r.key = q.key`
	lookupFewStmt  = "sumkeep_lookup_few"
	lookupManyStmt = "sumkeep_lookup_many"
	// lookupFewMax is the most keys lookupFewSQL is used for.
	lookupFewMax = 8
)

// binaryFormat asks for every result column (or sends every parameter)
// in binary.
var binaryFormat = []int16{1}

// queryBatch answers w.live with one query on a lookup worker's
// connection, into w.res. It encodes the parameter and decodes the rows
// itself (there is one of each, of known types), into buffers it reuses.
// A panic in it is an error for every lookup of the batch: it must not end
// the worker (and the process) or keep the connection.
func (s *Store) queryBatch(ctx context.Context, w *batchWorker, deadline time.Time) (err error) {
	defer recoverTo(&err, "looking up records")
	w.keys = w.keys[:0]
	for _, r := range w.live {
		if !slices.Contains(w.keys, r.key) { // a popular module may be asked twice
			w.keys = append(w.keys, r.key)
		}
	}
	w.res = slices.Grow(w.res[:0], len(w.live))[:len(w.live)]
	name, sql := lookupFewStmt, lookupFewSQL
	if len(w.keys) > lookupFewMax {
		name, sql = lookupManyStmt, lookupManySQL
	}
	w.param = appendInt8Array(w.param[:0], w.keys)

	// A worker's batch is shared: no one caller's cancellation may fail
	// the others (ctx is the store's own, cancelled by Close). The query
	// itself runs without a context, which pgx would watch with a
	// goroutine hand-off set up and torn down per query: the connection's
	// deadline bounds it, and Close moves that deadline to now.
	c, err := s.lookupPool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	nc := c.Conn().PgConn().Conn()
	if !w.hold(nc) {
		return errClosed
	}
	defer w.release(nc)
	if bound := time.Now().Add(lookupQueryTimeout); deadline.IsZero() || bound.Before(deadline) {
		deadline = bound
	}
	nc.SetDeadline(deadline)
	// A query cut short leaves the connection amid the protocol: it must
	// not serve another. A database's error (a *pgconn.PgError) leaves
	// it ready for the next query.
	defer func() {
		if err != nil && !errors.As(err, new(*pgconn.PgError)) {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.Conn().Close(cctx)
			cancel()
		}
	}()
	sd, err := c.Conn().Prepare(ctx, name, sql)
	if err != nil {
		return err
	}
	w.params = append(w.params[:0], w.param)
	s.lookups.queries.Add(1)
	rr := c.Conn().PgConn().ExecStatement(context.Background(), sd, w.params, binaryFormat, binaryFormat)
	for rr.NextRow() {
		if err := w.match(rr.Values()); err != nil {
			rr.Close()
			return err
		}
	}
	_, err = rr.Close()
	return err
}

// lookupQueryTimeout bounds a lookup batch's query.
const lookupQueryTimeout = 30 * time.Second

// hold notes nc as the connection of w's query under way, unless the
// store is closing.
func (w *batchWorker) hold(nc net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	w.conn = nc
	return true
}

// release clears nc's deadline (the pool may ping it when it has been
// idle) and forgets it.
func (w *batchWorker) release(nc net.Conn) {
	nc.SetDeadline(time.Time{})
	w.mu.Lock()
	w.conn = nil
	w.mu.Unlock()
}

// stop ends w's query under way (its connection times out now) and any
// later one before it starts.
func (w *batchWorker) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.conn != nil {
		w.conn.SetDeadline(time.Now())
	}
}

// match gives a row (id, key, log_id, path, version, hashes, raw, in
// binary) to the lookups it answers, better than any row they had.
func (w *batchWorker) match(v [][]byte) error {
	if len(v) != 7 || len(v[0]) != 8 || len(v[1]) != 8 || len(v[2]) != 2 {
		return fmt.Errorf("lookup returned a row of %d columns, not of the types asked for", len(v))
	}
	id := int64(binary.BigEndian.Uint64(v[0]))
	key := int64(binary.BigEndian.Uint64(v[1]))
	logID := int16(binary.BigEndian.Uint16(v[2]))
	path, version, hashes, raw := v[3], v[4], v[5], v[6]
	for i, r := range w.live {
		if r.key != key || r.logID != logID || id >= r.maxID ||
			string(path) != r.path || string(version) != r.version {
			continue
		}
		if res := &w.res[i]; !res.found || id < res.id {
			// The values are the connection's until the next row:
			// decoding copies them (raw as it is, hashes into the record).
			if raw != nil {
				raw = bytes.Clone(raw)
			}
			rec, err := store.RecordRow(r.log, id, r.path, r.version, hashes, raw)
			if err != nil {
				err = fmt.Errorf("postgres: looking up %s@%s: %w", r.path, r.version, err)
			}
			*res = lookupRes{id: id, found: true, rec: rec, err: err, decoded: true}
		}
	}
	return nil
}

// appendInt8Array appends keys as a bigint[] in Postgres's binary format:
// dimensions, whether it holds NULLs, the element type, the length and
// lower bound of its one dimension, then each element's length and value.
func appendInt8Array(b []byte, keys []int64) []byte {
	const int8OID = 20
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, int8OID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	b = binary.BigEndian.AppendUint32(b, 1)
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(k))
	}
	return b
}

// queryLookups runs one batch of lookups. A panic in it is an error for
// every lookup of the batch: it must not end the worker (and the process)
// or keep the connection.
func (s *Store) queryLookups(ctx context.Context, pool *pgxpool.Pool, keys []int64, logs []int16, paths, versions []string, maxIDs []int64) (res []lookupRes, err error) {
	defer recoverTo(&err, "looking up records")
	n := len(keys)
	// A worker's batch is shared: no one caller's cancellation may fail
	// the others (ctx is the store's own then).
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// log_id + 0 and id + 0 keep the planner on the hash index of key: with
	// stale statistics (right after a bulk sync) the BRIN index on
	// (log_id, id) can look more selective, and would scan the table.
	rows, err := pool.Query(ctx, `SELECT q.i, r.id, r.hashes, r.raw
		FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::bigint[])
			WITH ORDINALITY AS q(key, log_id, path, version, max_id, i)
		CROSS JOIN LATERAL (SELECT id, hashes, raw FROM records
			WHERE records.key = q.key AND records.log_id + 0 = q.log_id
			  AND records.path = q.path AND records.version = q.version AND records.id + 0 < q.max_id
			ORDER BY id LIMIT 1) r`,
		keys, logs, paths, versions, maxIDs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res = make([]lookupRes, n)
	for rows.Next() {
		var i int64
		var r lookupRes
		if err := rows.Scan(&i, &r.id, &r.hashes, &r.raw); err != nil {
			return nil, err
		}
		if i < 1 || i > int64(n) {
			return nil, fmt.Errorf("lookup batch returned row %d of %d", i, n)
		}
		r.found = true
		res[i-1] = r
	}
	return res, rows.Err()
}

// Lookup implements store.Store.
func (s *Store) Lookup(ctx context.Context, log, path, version string, maxID int64) (store.Record, error) {
	return s.LookupWithin(ctx, 0, log, path, version, maxID)
}

// LookupWithin is Lookup given d to answer (none for d <= 0): a lookup
// that has no answer within d fails with an error wrapping
// context.DeadlineExceeded. It is Lookup under context.WithTimeout(ctx,
// d) without a context, a timer and a watch of them made for each lookup:
// its request (with its reply channel and timer) is reused.
func (s *Store) LookupWithin(ctx context.Context, d time.Duration, log, path, version string, maxID int64) (store.Record, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if err != nil {
		return store.Record{}, err
	}
	b := &s.lookups
	req, _ := b.free.Get().(*lookupReq)
	if req == nil {
		req = &lookupReq{done: make(chan lookupRes, 1)}
	}
	req.ctx, req.log, req.logID, req.maxID = ctx, log, id, maxID
	req.key, req.path, req.version = store.LookupKey(path, version), path, version
	// With a worker's slot free, no batch is forming: this lookup runs
	// its batch itself (with whatever was queued meanwhile, or arrives
	// while it lingers), rather than waking a worker and waiting to be
	// woken by it. Its query is given until this lookup's deadline.
	dense := b.arrived()
	select {
	case w := <-b.slots:
		b.linger(dense)
		w.batch = append(w.batch[:0], req)
		s.takeQueued(w)
		var deadline time.Time
		if d > 0 {
			deadline = time.Now().Add(d)
		}
		s.lookupBatch(w, deadline)
		b.slots <- w
		res := <-req.done
		*req = lookupReq{done: req.done, timer: req.timer}
		b.free.Put(req)
		return lookupRecord(log, path, version, res)
	default:
	}
	var timeout <-chan time.Time
	if d > 0 {
		if req.timer == nil {
			req.timer = time.NewTimer(d)
		} else {
			req.timer.Reset(d)
		}
		timeout = req.timer.C
	}
	// Until the answer is received a worker may hold req: a lookup that
	// stops waiting leaves it to the garbage collector.
	abandon := func(err error) (store.Record, error) {
		if req.timer != nil {
			req.timer.Stop()
		}
		return store.Record{}, err
	}
	// The queue is nearly never full: try it alone first (a select of one
	// case and a default costs a fraction of the four cases).
	select {
	case b.reqs <- req:
	default:
		select {
		case b.reqs <- req:
		case <-b.stop:
			return abandon(errClosed)
		case <-ctx.Done():
			return abandon(ctx.Err())
		case <-timeout:
			return abandon(lookupTimeout(log, path, version, d))
		}
	}
	s.signalDeep()
	var res lookupRes
	select {
	case res = <-req.done:
	case <-b.stop:
		return abandon(errClosed)
	case <-ctx.Done():
		return abandon(ctx.Err())
	case <-timeout:
		return abandon(lookupTimeout(log, path, version, d))
	}
	if req.timer != nil {
		req.timer.Stop()
	}
	*req = lookupReq{done: req.done, timer: req.timer}
	b.free.Put(req)
	return lookupRecord(log, path, version, res)
}

func lookupTimeout(log, path, version string, d time.Duration) error {
	return fmt.Errorf("postgres: looking up %s@%s in %s: no answer within %v: %w", path, version, log, d, context.DeadlineExceeded)
}

// lookupRecord turns the answer to one lookup into Lookup's.
func lookupRecord(log, path, version string, res lookupRes) (store.Record, error) {
	r := store.Record{Path: path, Version: version}
	switch {
	case res.decoded && res.err != nil:
		return r, res.err
	case res.decoded:
		return res.rec, nil
	case res.err != nil && !errors.Is(res.err, pgx.ErrNoRows):
		return r, fmt.Errorf("postgres: looking up %s@%s in %s: %w", path, version, log, res.err)
	case !res.found:
		return r, fmt.Errorf("%s@%s in %s: %w", path, version, log, store.ErrNotFound)
	}
	rec, err := store.RecordRow(log, res.id, path, version, res.hashes, res.raw)
	if err != nil {
		return r, fmt.Errorf("postgres: looking up %s@%s: %w", path, version, err)
	}
	return rec, nil
}

// lookupManyChunk is how many lookups one of LookupMany's queries asks.
const lookupManyChunk = 1024

// LookupMany is Lookup for many records of one log at once, for a caller
// that knows them all up front (verify): a query per 1,024 of them,
// instead of a round trip for every batch the lookup workers happen to
// form. errs[i] is Lookup's error for paths[i]@versions[i] (store.ErrNotFound,
// a *store.CorruptError); err fails them all.
func (s *Store) LookupMany(ctx context.Context, log string, paths, versions []string, maxID int64) (recs []store.Record, errs []error, err error) {
	if len(paths) != len(versions) {
		return nil, nil, fmt.Errorf("postgres: looking up %d paths with %d versions", len(paths), len(versions))
	}
	id, err := s.logID(ctx, s.pool, log, false)
	if err != nil {
		return nil, nil, err
	}
	recs, errs = make([]store.Record, len(paths)), make([]error, len(paths))
	for lo := 0; lo < len(paths); lo += lookupManyChunk {
		hi := min(lo+lookupManyChunk, len(paths))
		n := hi - lo
		keys, maxIDs, logs := make([]int64, n), make([]int64, n), make([]int16, n)
		for i := range n {
			keys[i], maxIDs[i], logs[i] = store.LookupKey(paths[lo+i], versions[lo+i]), maxID, id
		}
		res, err := s.queryLookups(ctx, s.pool, keys, logs, paths[lo:hi], versions[lo:hi], maxIDs)
		if err != nil {
			return nil, nil, fmt.Errorf("postgres: looking up %d records in %s: %w", n, log, err)
		}
		for i, r := range res {
			recs[lo+i], errs[lo+i] = lookupRecord(log, paths[lo+i], versions[lo+i], r)
		}
	}
	return recs, errs, nil
}
