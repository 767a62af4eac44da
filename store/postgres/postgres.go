// Package postgres is the production store.Store, on PostgreSQL through pgx.
//
// Several stateless servers can share one database; a syncer holds a
// session-level advisory lock per log so that only one writes at a time.
// Records are written with COPY, one transaction per batch.
package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Store is a store.Store backed by PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	// lookupPool holds the lookup workers' connections (see
	// lookupPoolConfig); everything else uses pool.
	lookupPool *pgxpool.Pool

	mu   sync.Mutex
	logs map[string]int16 // log name -> logs.id

	// commitTurn is held while a Commit runs (see Commit), copyTurn while
	// a staged batch's COPY does (see StageCommit).
	commitTurn, copyTurn turn
	// stagedHook, if set (by tests), runs when a staged batch has written
	// its records and is about to lock the log's row.
	stagedHook func()

	filters   keyFilters
	brin      brinSummarizer
	lookups   lookupBatcher
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// ErrDSN reports a connection string that does not parse. Its message
// does not repeat the string, which may hold a password.
var ErrDSN = errors.New("postgres: the connection string does not parse (it is not repeated here: it may hold a password); want postgres://user[:password]@host[:port]/database[?param=value&...] or keyword=value pairs")

// Open connects to the database at dsn (a postgres:// URL or key=value
// string) and brings its schema up to date. The pool holds room for a
// syncer unless dsn sets pool_max_conns; the lookup workers have
// connections of their own, one each.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return open(ctx, dsn, false)
}

// OpenReadOnly connects to an existing sumkeep store for reading only, as
// the commands that only read (verify, status, export's source) open it.
// It applies no migration and creates nothing; every session it opens is
// read-only (default_transaction_read_only), so every write fails. A
// database without sumkeep's tables gives store.ErrNotStore; a schema of
// another version store.ErrSchemaVersion.
func OpenReadOnly(ctx context.Context, dsn string) (*Store, error) {
	return open(ctx, dsn, true)
}

// open connects, checks that the database answers, and then brings the
// schema up to date or, read-only, checks that it is this sumkeep's.
func open(ctx context.Context, dsn string, readOnly bool) (*Store, error) {
	s, err := connect(ctx, dsn, readOnly)
	if err != nil {
		return nil, err
	}
	// verify reads tiles and looks records up at once: the read-only
	// commands dial both connections together, rather than the second
	// once the first is busy (a backend start each, on the path).
	dial := 1
	if readOnly {
		dial = 2
	}
	if err := s.ping(ctx, dial); err != nil {
		return nil, err
	}
	prepare := s.Migrate
	if readOnly {
		prepare = s.checkSchema
	}
	if err := prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// ping checks that the database answers on n connections at once (dialled
// together, and left in the pool), closing s if it does not.
func (s *Store) ping(ctx context.Context, n int) error {
	errs := make(chan error, n)
	for range n {
		go func() {
			c, err := s.pool.Acquire(ctx)
			if err == nil {
				err = c.Ping(ctx)
				c.Release()
			}
			errs <- err
		}()
	}
	var err error
	for range n {
		err = cmp.Or(err, <-errs)
	}
	if err != nil {
		s.Close()
		cc := s.pool.Config().ConnConfig
		return fmt.Errorf("postgres: connecting to %s:%d: %w", cc.Host, cc.Port, err)
	}
	return nil
}

// defaultConnectTimeout bounds dialling and the startup handshake when dsn
// sets no connect_timeout: a server that accepts connections but does not
// answer (stopped, swapped out) must not hold a caller without a deadline
// of its own.
const defaultConnectTimeout = 10 * time.Second

// Connect is Open without touching the database: it checks dsn and makes the
// pool, which connects on first use. A server that waits for its database
// uses it, then Migrate once the database answers.
func Connect(ctx context.Context, dsn string) (*Store, error) {
	return connect(ctx, dsn, false)
}

// ConnectReadOnly is OpenReadOnly without touching the database: every
// session it opens is read-only, and it checks no schema. A server whose
// read replica does not answer yet uses it, and reads from the primary
// until the replica answers.
func ConnectReadOnly(ctx context.Context, dsn string) (*Store, error) {
	return connect(ctx, dsn, true)
}

func connect(ctx context.Context, dsn string, readOnly bool) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's error quotes the string, masking the passwords it
		// recognises; a malformed string can hide one from it.
		return nil, ErrDSN
	}
	if readOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
		// The commands that only read (verify, status, export) are short
		// lived and send each statement about once: preparing it first,
		// as pgx does by default to reuse it, costs a round trip each for
		// nothing. Sent in one round trip instead, unless dsn says how.
		if !strings.Contains(dsn, "default_query_exec_mode") {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
		}
	}
	setSessionParams(&cfg.ConnConfig.Config)
	plainOnLoopback(dsn, &cfg.ConnConfig.Config)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	workers := lookupWorkers()
	lcfg := lookupPoolConfig(cfg, workers+1) // and the overflow worker's
	if !strings.Contains(dsn, "pool_max_conns") {
		// A syncer holds up to six connections at once (its lock, two
		// staged batches with a transaction and a duplicate probe each,
		// the index summarizer), and LookupMany one more; pgxpool's
		// default of max(4, cores) could make them queue behind each
		// other in `serve --sync-schedule`.
		cfg.MaxConns = max(cfg.MaxConns, int32(6+2))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connecting: %w", err)
	}
	lookupPool, err := pgxpool.NewWithConfig(ctx, lcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connecting: %w", err)
	}
	s := &Store{pool: pool, lookupPool: lookupPool, logs: make(map[string]int16), commitTurn: make(turn, 1), copyTurn: make(turn, 1)}
	s.brin.ctx, s.brin.cancel = context.WithCancel(context.Background())
	s.startLookups(workers)
	return s, nil
}

// checkSchema checks that the database holds sumkeep's tables at this
// sumkeep's schema version, changing nothing.
func (s *Store) checkSchema(ctx context.Context) error {
	ms, err := store.Migrations(schema, "schema")
	if err != nil {
		return err
	}
	want := store.Tables()
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM unnest($1::text[]) AS t(name) WHERE to_regclass(quote_ident(name)) IS NOT NULL`,
		want).Scan(&n); err != nil {
		return fmt.Errorf("postgres: looking for sumkeep's tables: %w", err)
	}
	if n != len(want) {
		return fmt.Errorf("postgres: %w: the database lacks sumkeep's tables", store.ErrNotStore)
	}
	var current int
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("postgres: reading the schema version: %w", err)
	}
	if last := ms[len(ms)-1].Version; current != last {
		return fmt.Errorf("postgres: %w: schema version %d, this sumkeep's is %d (sumkeep migrate upgrades an older one)", store.ErrSchemaVersion, current, last)
	}
	return nil
}

// OnThisMachine reports whether the server is reached over a Unix socket or
// a loopback address, so shares this machine's cores with the caller.
func (s *Store) OnThisMachine() bool { return localHost(s.pool.Config().ConnConfig.Host) }

func localHost(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Pool exposes the connection pool, for tools that measure the store.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// closeWait bounds how long Close waits for connections in use to come
// back to the pool.
const closeWait = 10 * time.Second

// Close stops the lookup workers and closes all connections. It waits for
// connections in use for at most closeWait, so that a process shutting down
// ends even if a caller never gives one back; such a connection is closed
// when it is released. Closing twice is harmless.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.stopLookups()
		s.stopSummarizing()
		closed := make(chan struct{})
		go func() {
			s.lookupPool.Close()
			s.pool.Close()
			close(closed)
		}()
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-closed:
		case <-t.C:
		}
	})
}

// Migrate applies the embedded migrations that the database lacks, each in a
// transaction, under an advisory lock so that concurrent starts do not race.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := store.Migrations(schema, "schema")
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("sumkeep-migrate")); err != nil {
		return fmt.Errorf("postgres: migrate: taking lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("postgres: migrate: reading schema version: %w", err)
	}
	if last := ms[len(ms)-1].Version; current > last {
		return fmt.Errorf("postgres: database schema version %d is newer than this sumkeep knows (%d)", current, last)
	}
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("postgres: applying migration %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return fmt.Errorf("postgres: recording migration %s: %w", m.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return nil
}

// logID returns the id of a log, creating the log when create is set. A log
// that does not exist and is not created gives store.ErrNotFound.
func (s *Store) logID(ctx context.Context, q querier, log string, create bool) (int16, error) {
	s.mu.Lock()
	id, ok := s.logs[log]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	err := q.QueryRow(ctx, `SELECT id FROM logs WHERE name = $1`, log).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		if !create {
			return 0, fmt.Errorf("log %q: %w", log, store.ErrNotFound)
		}
		err = q.QueryRow(ctx, `INSERT INTO logs (name) VALUES ($1)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id`, log).Scan(&id)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: finding log %q: %w", log, err)
	}
	s.mu.Lock()
	s.logs[log] = id
	s.mu.Unlock()
	return id, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// AddHead implements store.Store. One head is one statement; several are
// one statement in a transaction, rolled back if any conflicts.
func (s *Store) AddHead(ctx context.Context, log string, hs ...store.Head) error {
	hs = distinctHeads(hs)
	if len(hs) == 0 {
		return nil
	}
	id, err := s.logID(ctx, s.pool, log, true)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("head %d", hs[0].Size)
	if len(hs) > 1 {
		what = fmt.Sprintf("%d heads (%d to %d)", len(hs), hs[0].Size, hs[len(hs)-1].Size)
	}
	if len(hs) == 1 {
		err = addHeads(ctx, s.pool, id, hs)
	} else {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return addHeads(ctx, tx, id, hs) })
	}
	if err != nil {
		return fmt.Errorf("postgres: storing %s of %s: %w", what, log, err)
	}
	return nil
}

// distinctHeads returns hs in ascending size without repeats (a head
// repeated with another hash stays, to fail as a conflict).
func distinctHeads(hs []store.Head) []store.Head {
	hs = slices.Clone(hs)
	slices.SortFunc(hs, func(a, b store.Head) int {
		if c := cmp.Compare(a.Size, b.Size); c != 0 {
			return c
		}
		return bytes.Compare(a.Hash[:], b.Hash[:])
	})
	return slices.CompactFunc(hs, func(a, b store.Head) bool { return a.Tree() == b.Tree() })
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// addHeads inserts hs (distinct, ascending) in one statement, and checks
// that each size holds its hash: inserted now, or stored before.
func addHeads(ctx context.Context, q queryer, logID int16, hs []store.Head) error {
	sizes := make([]int64, len(hs))
	hashes := make([][]byte, len(hs))
	notes := make([][]byte, len(hs))
	for i, h := range hs {
		sizes[i], hashes[i], notes[i] = h.Size, h.Hash[:], h.Note
	}
	for try := 0; ; try++ {
		rows, err := q.Query(ctx, `WITH v AS (
				SELECT * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]) AS v(size, hash, note)),
			ins AS (
				INSERT INTO heads (log_id, size, hash, note) SELECT $1, size, hash, note FROM v
				ON CONFLICT (log_id, size) DO NOTHING RETURNING size, hash)
			SELECT size, hash FROM ins
			UNION ALL SELECT h.size, h.hash FROM heads h JOIN v ON h.log_id = $1 AND h.size = v.size`,
			logID, sizes, hashes, notes)
		if err != nil {
			return err
		}
		stored := make(map[int64][]byte, len(hs))
		var size int64
		var hash []byte
		_, err = pgx.ForEachRow(rows, []any{&size, &hash}, func() error {
			stored[size] = bytes.Clone(hash)
			return nil
		})
		if err != nil {
			return err
		}
		missing := false
		for _, h := range hs {
			b, ok := stored[h.Size]
			if !ok {
				missing = true
				continue
			}
			if !equalHash(b, h.Hash) {
				return fmt.Errorf("a head of size %d with another hash is stored", h.Size)
			}
		}
		// A concurrent writer inserted one of them after this statement's
		// snapshot was taken: the next statement sees it.
		if !missing {
			return nil
		}
		if try == 2 {
			return errors.New("a head inserted at the same time cannot be read")
		}
	}
}

func equalHash(b []byte, h tlog.Hash) bool { return len(b) == tlog.HashSize && tlog.Hash(b) == h }

const headCols = `size, hash, note, first_seen`

// scanHead reads a row of headCols, after any columns of before (scanned
// into them), and checks it (store.HeadRow).
func scanHead(row pgx.Row, log string, before ...any) (store.Head, error) {
	var size int64
	var hash, note []byte
	var firstSeen time.Time
	if err := row.Scan(append(before, &size, &hash, &note, &firstSeen)...); err != nil {
		return store.Head{}, err
	}
	return store.HeadRow(log, size, hash, note, firstSeen)
}

func (s *Store) head(ctx context.Context, log, what, query string) (store.Head, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if err != nil {
		return store.Head{}, err
	}
	h, err := scanHead(s.pool.QueryRow(ctx, query, id), log)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, fmt.Errorf("%s head of %s: %w", what, log, store.ErrNotFound)
	}
	if err != nil {
		return h, fmt.Errorf("postgres: reading %s head of %s: %w", what, log, err)
	}
	return h, nil
}

// LatestHead implements store.Store.
func (s *Store) LatestHead(ctx context.Context, log string) (store.Head, error) {
	return s.head(ctx, log, "latest",
		`SELECT `+headCols+` FROM heads WHERE log_id = $1 ORDER BY size DESC LIMIT 1`)
}

// ServedHead implements store.Store.
func (s *Store) ServedHead(ctx context.Context, log string) (store.Head, error) {
	return s.head(ctx, log, "served",
		`SELECT `+headCols+` FROM heads JOIN logs ON logs.id = heads.log_id AND logs.served = heads.size
		 WHERE log_id = $1`)
}

// Heads implements store.Store.
func (s *Store) Heads(ctx context.Context, log string) ([]store.Head, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+headCols+` FROM heads WHERE log_id = $1 ORDER BY size`, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing heads of %s: %w", log, err)
	}
	hs, err := scanHeads(rows, log)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing heads of %s: %w", log, err)
	}
	return hs, nil
}

// scanHeads reads and closes rows of headCols.
func scanHeads(rows pgx.Rows, log string) ([]store.Head, error) {
	defer rows.Close()
	var hs []store.Head
	for rows.Next() {
		h, err := scanHead(rows, log)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	return hs, rows.Err()
}

// HeadsAround implements store.Store (see HeadsAroundMany).
func (s *Store) HeadsAround(ctx context.Context, log string, size int64) (store.Around, error) {
	a, err := s.HeadsAroundMany(ctx, log, []int64{size})
	if err != nil {
		return store.Around{}, err
	}
	return a[0], nil
}

// HeadsAroundMany implements store.Store: for each size, the next smaller,
// the one of that size and the next larger, each an index scan of the
// primary key, and once the largest, all in one query.
func (s *Store) HeadsAroundMany(ctx context.Context, log string, sizes []int64) ([]store.Around, error) {
	out := make([]store.Around, len(sizes))
	if len(sizes) == 0 {
		return out, nil
	}
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("around size %d", sizes[0])
	if len(sizes) > 1 {
		what = fmt.Sprintf("around %d sizes", len(sizes))
	}
	rows, err := s.pool.Query(ctx, `
		SELECT q.i, h.size, h.hash, h.note, h.first_seen
		FROM unnest($2::bigint[]) WITH ORDINALITY AS q(size, i)
		CROSS JOIN LATERAL (
			(SELECT `+headCols+` FROM heads WHERE log_id = $1 AND size < q.size ORDER BY size DESC LIMIT 1)
			UNION ALL (SELECT `+headCols+` FROM heads WHERE log_id = $1 AND size >= q.size ORDER BY size LIMIT 2)
		) h
		UNION ALL (SELECT 0, `+headCols+` FROM heads WHERE log_id = $1 ORDER BY size DESC LIMIT 1)`, id, sizes)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading the heads of %s %s: %w", log, what, err)
	}
	defer rows.Close()
	near := make([][]store.Head, len(sizes))
	var latest []store.Head
	for rows.Next() {
		var i int64
		h, err := scanHead(rows, log, &i)
		if err != nil {
			return nil, fmt.Errorf("postgres: reading the heads of %s %s: %w", log, what, err)
		}
		switch {
		case i == 0:
			latest = append(latest, h)
		case i >= 1 && i <= int64(len(sizes)):
			near[i-1] = append(near[i-1], h)
		default:
			return nil, fmt.Errorf("postgres: reading the heads of %s %s: row for size %d of %d", log, what, i, len(sizes))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: reading the heads of %s %s: %w", log, what, err)
	}
	for i, size := range sizes {
		out[i] = store.AroundOf(append(near[i], latest...), size)
	}
	return out, nil
}

// Synced implements store.Store.
func (s *Store) Synced(ctx context.Context, log string) (int64, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT synced FROM logs WHERE id = $1`, id).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: reading sync cursor of %s: %w", log, err)
	}
	return n, nil
}

// State implements store.Store.
func (s *Store) State(ctx context.Context, log string) (store.State, error) {
	id, err := s.logID(ctx, s.pool, log, false)
	if errors.Is(err, store.ErrNotFound) {
		return store.State{}, nil
	}
	if err != nil {
		return store.State{}, err
	}
	var st store.State
	if err := s.pool.QueryRow(ctx, `SELECT served, generation FROM logs WHERE id = $1`, id).Scan(&st.Served, &st.Generation); err != nil {
		return store.State{}, fmt.Errorf("postgres: reading state of %s: %w", log, err)
	}
	return st, nil
}

// Logs implements store.Store.
func (s *Store) Logs(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT name FROM logs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing logs: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: listing logs: %w", err)
	}
	return names, nil
}
