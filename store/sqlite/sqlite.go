// Package sqlite is the embedded store.Store: one SQLite file, no server, no
// cgo (the driver is modernc.org/sqlite, SQLite translated to Go).
//
// The database runs in WAL mode, so readers never wait for the writer and
// the writer never waits for readers. SQLite allows one writer at a time: the
// store writes through a single connection, so the commits of one process
// queue in Go, and takes the write lock when a transaction begins (BEGIN
// IMMEDIATE), so a writer in another process is waited for (busy_timeout)
// instead of failing halfway. Reads go through a pool of query-only
// connections.
//
// Durability: a commit waits for its WAL frames to reach disk
// (synchronous=FULL), except a store.Batch that is Resumable, which commits
// with synchronous=NORMAL: its frames are written but not synced, so a power
// loss may lose it (never half of it: WAL frames carry cumulative checksums,
// and recovery stops at the first frame that does not check). The next sync
// fetches it again. Because the WAL is one file written in order, the sync of
// any later durable commit makes every earlier commit durable too, as
// store.Batch requires. A crash of the process alone loses nothing that
// Commit returned: the frames are in the operating system's cache.
//
// The sync lock (LockSync) is an flock(2) on a file beside the database,
// <db>.sync-<log>.lock. The kernel releases it when its holder exits, however
// it exits.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	msqlite "modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sumkeep/sumkeep/store"
)

// Store is a store.Store in one SQLite file.
type Store struct {
	path string // absolute path of the database file
	w    *sql.DB
	r    *sql.DB

	lookup *sql.Stmt // on r: see Lookup
	tile   *sql.Stmt // on r: see readTiles

	mu    sync.Mutex
	logs  map[string]int64      // log name -> logs.id, of committed logs
	locks map[*os.File]struct{} // held sync locks, released by Close

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

var (
	errClosed   = errors.New("sqlite: store is closed")
	errReadOnly = errors.New("sqlite: store is open read-only")
)

// busyTimeout is how long a statement waits for a lock another connection
// holds: in practice the write lock, held by a writer in another process for
// as long as a commit takes.
const busyTimeout = 30 * time.Second

// Connections map the first mmapSize bytes of the database into memory
// instead of reading pages into their own caches, so that they share the
// operating system's page cache (measured: a lookup costs about a fifth
// less processor time than with reads). Each also keeps a cache of its own
// for the pages above that and for pages read from the WAL, which is never
// mapped; the writer's is larger, for the lookup index it inserts into.
const (
	mmapSize      = 1 << 30
	readCacheKiB  = 8 << 10
	writeCacheKiB = 64 << 10
)

// readConns is the size of the read pool. Statements do not wait on each
// other in WAL mode, so more connections than cores only help when readers
// wait for the disk.
func readConns() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// Open opens the SQLite database at path, creating the file and its
// directory if needed, and brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: no database file named")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	abs = resolve(abs)
	// A file of someone else's is not made into a store: it is looked at
	// read-only first (the writer's settings would change it).
	if fi, err := os.Stat(abs); err == nil && fi.Size() > 0 {
		db, err := sql.Open("sqlite", dsn(abs, url.Values{"mode": {"ro"}}))
		if err != nil {
			return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
		}
		err = checkStore(ctx, db, path, true)
		db.Close()
		if err != nil {
			return nil, err
		}
	}
	s := &Store{path: abs, logs: make(map[string]int64), locks: make(map[*os.File]struct{})}
	// The writer: one connection, so that Go queues the writers of this
	// process; synchronous is set per transaction (see write).
	s.w, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_pragma": {
			fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
			fmt.Sprintf("cache_size(%d)", -writeCacheKiB),
			fmt.Sprintf("mmap_size(%d)", mmapSize),
			"foreign_keys(1)",
			"journal_mode(WAL)",
			"synchronous(FULL)",
			// Temporary b-trees (an IN list, a sort, a statement
			// journal) in memory, not in files.
			"temp_store(MEMORY)",
			// When a checkpoint has emptied the WAL, truncate it to
			// this size: one large batch must not keep the file large.
			fmt.Sprintf("journal_size_limit(%d)", 64<<20),
		},
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxIdleTime(0)
	s.w.SetConnMaxLifetime(0)
	if err := s.w.PingContext(ctx); err != nil {
		s.w.Close()
		return nil, notStore(path, err)
	}
	if err := s.Migrate(ctx); err != nil {
		s.w.Close()
		return nil, err
	}
	if err := s.openReaders(ctx, nil); err != nil {
		s.w.Close()
		return nil, err
	}
	return s, nil
}

// OpenReadOnly opens an existing SQLite database at path for reading only,
// as a bundle is read on a machine that must not change it, and as the
// commands that only read (verify, status, export's source) open their
// store. It creates nothing: no file, no directory, no table. Every write
// fails, and so does LockSync. The schema must be this sumkeep's; it is not
// migrated.
//
// A path where no file is gives an error wrapping fs.ErrNotExist; a file
// that is not a SQLite database, or one without sumkeep's tables, gives
// store.ErrNotStore; a schema of another version store.ErrSchemaVersion.
//
// A database in WAL mode needs its -shm file, or a directory where SQLite
// can create it, even to be read.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: no database file named")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	abs = resolve(abs)
	if err := checkSchema(ctx, abs); err != nil {
		if nse, ok := errors.AsType[*NotStoreError](err); ok {
			nse.Path = path
			return nil, nse
		}
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	s := &Store{path: abs, logs: make(map[string]int64), locks: make(map[*os.File]struct{})}
	if err := s.openReaders(ctx, url.Values{"mode": {"ro"}}); err != nil {
		return nil, err
	}
	return s, nil
}

// checkSchema checks, on a read-only connection of its own, that the
// database file at path (absolute) holds sumkeep's tables at this
// sumkeep's schema version.
func checkSchema(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", dsn(path, url.Values{
		"mode":        {"ro"},
		"_query_only": {"1"},
		"_pragma":     {fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds())},
	}))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	want := store.Tables()
	args := make([]any, len(want))
	for i, t := range want {
		args[i] = t
	}
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (`+
		strings.TrimSuffix(strings.Repeat("?,", len(want)), ",")+`)`, args...).Scan(&n)
	var serr *msqlite.Error
	if errors.As(err, &serr) && serr.Code()&0xff == sqlite3.SQLITE_NOTADB {
		return &NotStoreError{Path: path, Why: "it is not an SQLite database"}
	}
	if err != nil {
		return err
	}
	if n != len(want) {
		return &NotStoreError{Path: path, Why: "it is an SQLite database without sumkeep's tables"}
	}
	ms, err := store.Migrations(schema, "schema")
	if err != nil {
		return err
	}
	var current int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	if last := ms[len(ms)-1].Version; current != last {
		return fmt.Errorf("%w: schema version %d, this sumkeep's is %d", store.ErrSchemaVersion, current, last)
	}
	return nil
}

// ErrNotStore reports a file that is not a sumkeep store (or bundle).
var ErrNotStore = store.ErrNotStore

// NotStoreError names a file that is not a sumkeep store, and why.
type NotStoreError struct {
	Path string
	Why  string
}

func (e *NotStoreError) Error() string {
	return fmt.Sprintf("%s is not a sumkeep store or bundle: %s", e.Path, e.Why)
}

func (e *NotStoreError) Unwrap() error { return ErrNotStore }

// notStore turns SQLite's report that a file is not a database into a
// *NotStoreError; other errors are wrapped as failures to open path.
func notStore(path string, err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_NOTADB {
		return &NotStoreError{Path: path, Why: "it is not an SQLite database"}
	}
	return fmt.Errorf("sqlite: opening %s: %w", path, err)
}

// checkStore fails with a *NotStoreError unless db is a sumkeep store: it
// has the schema_migrations table, or, if empty is allowed (a store being
// created), no table at all.
func checkStore(ctx context.Context, db *sql.DB, path string, empty bool) error {
	var tables, migrations int
	err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(name = 'schema_migrations'), 0)
		FROM sqlite_master WHERE type = 'table'`).Scan(&tables, &migrations)
	if err != nil {
		return notStore(path, err)
	}
	switch {
	case migrations == 1, empty && tables == 0:
		return nil
	case tables == 0:
		return &NotStoreError{Path: path, Why: "it holds no table"}
	}
	return &NotStoreError{Path: path, Why: fmt.Sprintf("it is an SQLite database with %d tables, none of them sumkeep's schema_migrations", tables)}
}

func (s *Store) openReaders(ctx context.Context, extra url.Values) error {
	q := url.Values{
		"_pragma": {
			fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
			fmt.Sprintf("cache_size(%d)", -readCacheKiB),
			fmt.Sprintf("mmap_size(%d)", mmapSize),
		},
		"_query_only": {"1"},
	}
	for k, v := range extra {
		q[k] = v
	}
	r, err := sql.Open("sqlite", dsn(s.path, q))
	if err != nil {
		return fmt.Errorf("sqlite: opening %s: %w", s.path, err)
	}
	n := readConns()
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		return notStore(s.path, err)
	}
	// Before the statements on its tables are prepared: a file that is
	// not a store would fail that with "no such table".
	if err := checkStore(ctx, r, s.path, false); err != nil {
		r.Close()
		return err
	}
	s.lookup, err = r.PrepareContext(ctx, lookupQuery)
	if err != nil {
		r.Close()
		return fmt.Errorf("sqlite: opening %s: preparing lookups: %w", s.path, err)
	}
	// Prepared once: parsing the statement cost as much CPU as running
	// it, for every tile a cold lookup reads.
	s.tile, err = r.PrepareContext(ctx, tileQuery)
	if err != nil {
		s.lookup.Close()
		r.Close()
		return fmt.Errorf("sqlite: opening %s: preparing tile reads: %w", s.path, err)
	}
	s.r = r
	return nil
}

// resolve follows symbolic links in the absolute path of a database file
// (which may not exist yet), so that every store on one file names its sync
// lock files alike.
func resolve(abs string) string {
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		return p
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs))
	}
	return abs
}

// dsn is the database/sql name of the file at path (absolute) with the
// query q: a file: URI, so that no character of the path can be taken for
// the query. SQLite ignores the parameters it does not know (the driver's
// _pragma and the like).
func dsn(path string, q url.Values) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // C:/... on Windows: file:///C:/...
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}

// DB returns the pool of read connections (query-only), for tools and tests
// that inspect the store.
func (s *Store) DB() *sql.DB { return s.r }

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database and releases the sync locks still held. It
// waits for the statements under way. Every method fails after Close;
// closing twice is harmless.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.lookup.Close()
		s.tile.Close()
		s.r.Close()
		if s.w != nil {
			s.w.Close()
		}
		s.mu.Lock()
		locks := s.locks
		s.locks = nil
		s.mu.Unlock()
		for f := range locks {
			f.Close()
		}
	})
}

// check fails once the store is closed, and for writes, on a read-only store.
func (s *Store) check(write bool) error {
	if s.closed.Load() {
		return errClosed
	}
	if write && s.w == nil {
		return errReadOnly
	}
	return nil
}

// Migrate applies the embedded migrations that the database lacks, each in
// its own transaction, recorded in schema_migrations. Each transaction holds
// the write lock and reads the schema version again, so concurrent starts do
// not apply a migration twice.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.check(true); err != nil {
		return err
	}
	ms, err := store.Migrations(schema, "schema")
	if err != nil {
		return err
	}
	last := ms[len(ms)-1].Version
	for _, m := range ms {
		err := s.write(ctx, true, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    INTEGER PRIMARY KEY,
				name       TEXT    NOT NULL,
				applied_at INTEGER NOT NULL -- Unix microseconds
			) STRICT`); err != nil {
				return err
			}
			var current int
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
				return fmt.Errorf("reading schema version: %w", err)
			}
			if current > last {
				return fmt.Errorf("database schema version %d is newer than this sumkeep knows (%d)", current, last)
			}
			if m.Version <= current {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: applying migration %s to %s: %w", m.Name, s.path, err)
		}
	}
	return nil
}

// write runs f in a write transaction on the write connection and commits
// it. durable selects synchronous=FULL: Commit returns once the transaction
// is on disk. Otherwise (NORMAL) it may be lost on power loss until a later
// durable commit or a checkpoint syncs the WAL. SQLite refuses to change the
// setting inside a transaction, so it is set before BEGIN, every time: the
// connection may have been replaced since the last transaction.
func (s *Store) write(ctx context.Context, durable bool, f func(tx *sql.Tx) error) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	level := "FULL"
	if !durable {
		level = "NORMAL"
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = "+level); err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, nil) // BEGIN IMMEDIATE: see _txlock in Open
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return s.full(err)
	}
	return s.full(tx.Commit())
}

// full names the file and says why when err is SQLite's SQLITE_FULL: the
// disk holding the database (or its WAL) is full, or the file reached its
// size limit.
func (s *Store) full(err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%s: the disk holding it is full: %w", s.path, err)
	}
	return err
}

// writeLog runs f in a write transaction (see write) with log's row, which
// it creates for a new log, and remembers the log's id once committed.
func (s *Store) writeLog(ctx context.Context, log string, durable bool, f func(tx *sql.Tx, l *logRow) error) error {
	var id int64
	err := s.write(ctx, durable, func(tx *sql.Tx) error {
		l, err := logForWrite(ctx, tx, log)
		if err != nil {
			return err
		}
		id = l.id
		return f(tx, &l)
	})
	if err != nil {
		return err
	}
	s.remember(log, id)
	return nil
}

// logID returns the id of a stored log, or store.ErrNotFound.
func (s *Store) logID(ctx context.Context, log string) (int64, error) {
	if err := s.check(false); err != nil {
		return 0, err
	}
	s.mu.Lock()
	id, ok := s.logs[log]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	err := s.r.QueryRowContext(ctx, `SELECT id FROM logs WHERE name = ?`, log).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("log %q: %w", log, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: finding log %q: %w", log, err)
	}
	s.remember(log, id)
	return id, nil
}

// remember caches the id of a log whose row is committed. (Ids of rows
// created in a transaction that rolls back are given out again.)
func (s *Store) remember(log string, id int64) {
	s.mu.Lock()
	s.logs[log] = id
	s.mu.Unlock()
}

// logRow is a log's row as a write transaction found it.
type logRow struct {
	name                              string
	id                                int64
	synced, served, maxID, generation int64
	created                           bool // by this transaction
}

// logForWrite reads the row of log in a write transaction, creating it if
// the log is new. The transaction holds the write lock: nobody changes the
// row until it ends.
func logForWrite(ctx context.Context, tx *sql.Tx, log string) (logRow, error) {
	l := logRow{name: log}
	err := tx.QueryRowContext(ctx, `SELECT id, synced, served, max_id, generation FROM logs WHERE name = ?`, log).
		Scan(&l.id, &l.synced, &l.served, &l.maxID, &l.generation)
	if errors.Is(err, sql.ErrNoRows) {
		l = logRow{name: log, maxID: -1, created: true}
		err = tx.QueryRowContext(ctx, `INSERT INTO logs (name) VALUES (?) RETURNING id`, log).Scan(&l.id)
	}
	if err != nil {
		return l, fmt.Errorf("finding log: %w", err)
	}
	return l, nil
}

// AddHead implements store.Store: every head in one transaction.
func (s *Store) AddHead(ctx context.Context, log string, hs ...store.Head) error {
	if len(hs) == 0 {
		return nil
	}
	if err := s.check(true); err != nil {
		return err
	}
	var at int64
	err := s.writeLog(ctx, log, true, func(tx *sql.Tx, l *logRow) error {
		for _, h := range hs {
			at = h.Size
			var stored []byte
			err := tx.QueryRowContext(ctx, `SELECT hash FROM heads WHERE log_id = ? AND size = ?`, l.id, h.Size).Scan(&stored)
			switch {
			case err == nil:
				if !equalHash(stored, h.Hash) {
					return errors.New("a head of that size with another hash is stored")
				}
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO heads (log_id, size, hash, note, first_seen) VALUES (?, ?, ?, ?, ?)`,
				l.id, h.Size, h.Hash[:], h.Note, time.Now().UnixMicro())
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: storing head %d of %s: %w", at, log, err)
	}
	return nil
}

func equalHash(b []byte, h tlog.Hash) bool { return len(b) == tlog.HashSize && tlog.Hash(b) == h }

const headCols = `size, hash, note, first_seen`

type scanner interface{ Scan(dest ...any) error }

// scanHead reads a row of headCols and checks it (store.HeadRow).
func scanHead(row scanner, log string) (store.Head, error) {
	var size, firstSeen int64
	var hash, note []byte
	if err := row.Scan(&size, &hash, &note, &firstSeen); err != nil {
		return store.Head{}, err
	}
	return store.HeadRow(log, size, hash, note, time.UnixMicro(firstSeen))
}

func (s *Store) head(ctx context.Context, log, what, query string) (store.Head, error) {
	id, err := s.logID(ctx, log)
	if err != nil {
		return store.Head{}, err
	}
	h, err := scanHead(s.r.QueryRowContext(ctx, query, id), log)
	if errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("%s head of %s: %w", what, log, store.ErrNotFound)
	}
	if err != nil {
		return h, fmt.Errorf("sqlite: reading %s head of %s: %w", what, log, err)
	}
	return h, nil
}

// LatestHead implements store.Store.
func (s *Store) LatestHead(ctx context.Context, log string) (store.Head, error) {
	return s.head(ctx, log, "latest",
		`SELECT `+headCols+` FROM heads WHERE log_id = ? ORDER BY size DESC LIMIT 1`)
}

// ServedHead implements store.Store.
func (s *Store) ServedHead(ctx context.Context, log string) (store.Head, error) {
	return s.head(ctx, log, "served",
		`SELECT `+headCols+` FROM logs JOIN heads ON heads.log_id = logs.id AND heads.size = logs.served
		 WHERE logs.id = ?`)
}

// Heads implements store.Store.
func (s *Store) Heads(ctx context.Context, log string) ([]store.Head, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+headCols+` FROM heads WHERE log_id = ? ORDER BY size`, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: listing heads of %s: %w", log, err)
	}
	hs, err := scanHeads(rows, log)
	if err != nil {
		return nil, fmt.Errorf("sqlite: listing heads of %s: %w", log, err)
	}
	return hs, nil
}

// scanHeads reads and closes rows of headCols.
func scanHeads(rows *sql.Rows, log string) ([]store.Head, error) {
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

// HeadsAround implements store.Store: the next smaller, the one of that
// size and the next larger, and the largest, each an index seek.
func (s *Store) HeadsAround(ctx context.Context, log string, size int64) (store.Around, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return store.Around{}, nil
	}
	if err != nil {
		return store.Around{}, err
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT * FROM (SELECT `+headCols+` FROM heads WHERE log_id = ?1 AND size < ?2 ORDER BY size DESC LIMIT 1)
		UNION ALL SELECT * FROM (SELECT `+headCols+` FROM heads WHERE log_id = ?1 AND size >= ?2 ORDER BY size LIMIT 2)
		UNION ALL SELECT * FROM (SELECT `+headCols+` FROM heads WHERE log_id = ?1 ORDER BY size DESC LIMIT 1)`, id, size)
	if err != nil {
		return store.Around{}, fmt.Errorf("sqlite: reading the heads of %s around size %d: %w", log, size, err)
	}
	hs, err := scanHeads(rows, log)
	if err != nil {
		return store.Around{}, fmt.Errorf("sqlite: reading the heads of %s around size %d: %w", log, size, err)
	}
	return store.AroundOf(hs, size), nil
}

// HeadsAroundMany implements store.Store: HeadsAround for each size (a
// read in this process costs no round trip).
func (s *Store) HeadsAroundMany(ctx context.Context, log string, sizes []int64) ([]store.Around, error) {
	out := make([]store.Around, len(sizes))
	for i, size := range sizes {
		var err error
		if out[i], err = s.HeadsAround(ctx, log, size); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Synced implements store.Store.
func (s *Store) Synced(ctx context.Context, log string) (int64, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT synced FROM logs WHERE id = ?`, id).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: reading sync cursor of %s: %w", log, err)
	}
	return n, nil
}

// State implements store.Store.
func (s *Store) State(ctx context.Context, log string) (store.State, error) {
	id, err := s.logID(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		return store.State{}, nil
	}
	if err != nil {
		return store.State{}, err
	}
	var st store.State
	if err := s.r.QueryRowContext(ctx, `SELECT served, generation FROM logs WHERE id = ?`, id).Scan(&st.Served, &st.Generation); err != nil {
		return store.State{}, fmt.Errorf("sqlite: reading state of %s: %w", log, err)
	}
	return st, nil
}

// Logs implements store.Store.
func (s *Store) Logs(ctx context.Context) ([]string, error) {
	if err := s.check(false); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM logs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: listing logs: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("sqlite: listing logs: %w", err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: listing logs: %w", err)
	}
	return names, nil
}
