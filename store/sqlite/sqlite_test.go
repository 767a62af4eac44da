package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/store/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "sumkeep.db"))
	})
}

func TestOpenCreatesDirectory(t *testing.T) {
	// Characters that mean something in a file: URI, too.
	path := filepath.Join(t.TempDir(), "a b?c#d%20e", "b", "sumkeep.db")
	s := open(t, path)
	if err := s.Commit(context.Background(), "l", store.Batch{Records: records(0, 1), Synced: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	for i := 0; i < 2; i++ {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		var n, max int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if n != max {
			t.Fatalf("schema_migrations holds %d rows up to version %d", n, max)
		}
		s.Close()
	}
}

// TestPragmas checks the settings the package documentation promises.
func TestPragmas(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "sumkeep.db"))
	ctx := context.Background()
	var mode string
	if err := s.DB().QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	var queryOnly int
	if err := s.DB().QueryRowContext(ctx, `PRAGMA query_only`).Scan(&queryOnly); err != nil || queryOnly != 1 {
		t.Fatalf("query_only of a read connection = %d, %v", queryOnly, err)
	}
	if _, err := s.DB().ExecContext(ctx, `DELETE FROM logs`); err == nil {
		t.Fatal("a read connection wrote")
	}
}

func record(i int, v string) store.Record {
	p := fmt.Sprintf("example.com/m%d", i)
	h1 := sha256.Sum256([]byte(p + v))
	h2 := sha256.Sum256([]byte(p + v + "/go.mod"))
	data := fmt.Sprintf("%s %s h1:%s\n%s %s/go.mod h1:%s\n", p, v, base64.StdEncoding.EncodeToString(h1[:]),
		p, v, base64.StdEncoding.EncodeToString(h2[:]))
	return store.Record{ID: int64(i), Path: p, Version: v, Data: []byte(data)}
}

func records(start, n int) []store.Record {
	rs := make([]store.Record, n)
	for i := range rs {
		rs[i] = record(start+i, "v1.0.0")
	}
	return rs
}

func head(n int64) store.Head {
	h := tlog.Hash(sha256.Sum256([]byte(fmt.Sprint("root", n))))
	return store.Head{Size: n, Hash: h, Note: []byte(fmt.Sprintf("go.sum database tree\n%d\n%s\n\n— test sig\n", n, h))}
}

// TestConcurrentReadersAndWriter looks records up from many goroutines
// while another commits batches and serves heads, as a server does during a
// sync, and a third store on the same file commits too, as another process
// would. No reader may fail or see a record the served head does not cover.
func TestConcurrentReadersAndWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	s := open(t, path)
	other := open(t, path)
	ctx := context.Background()
	const log, batch, batches = "sumdb.test", 256, 12
	var served atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := served.Load()
				if n == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				r := record(int((int64(i*7919+g))%n), "v1.0.0")
				got, err := s.Lookup(ctx, log, r.Path, r.Version, n)
				if err != nil || got.ID != r.ID || string(got.Data) != string(r.Data) {
					errs <- fmt.Errorf("Lookup %s below %d = %d, %v", r.Path, n, got.ID, err)
					return
				}
				if _, err := s.ReadTiles(ctx, log, []tlog.Tile{{H: 8, L: 0, N: 0, W: 1}, {H: 8, L: 0, N: 0, W: 2}}); err != nil {
					errs <- fmt.Errorf("ReadTiles: %v", err)
					return
				}
			}
		})
	}
	// Writes from the other store: evidence, in between the batches.
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := other.AddEvidence(ctx, "other.log", store.Evidence{Kind: "test", Message: fmt.Sprint(i)}); err != nil {
				errs <- fmt.Errorf("AddEvidence from another store: %v", err)
				return
			}
		}
	})
	tile := store.Tile{Tile: tlog.Tile{H: 8, L: 0, N: 0, W: 2}, Data: make([]byte, 64)}
	for b := range batches {
		n := int64((b + 1) * batch)
		if err := s.AddHead(ctx, log, head(n)); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, log, store.Batch{Records: records(b*batch, batch), Tiles: []store.Tile{tile}, Synced: n, Serve: n}); err != nil {
			t.Fatal(err)
		}
		served.Store(n)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if es, err := s.Evidence(ctx, "other.log"); err != nil || len(es) == 0 {
		t.Errorf("Evidence written by the other store = %d, %v", len(es), err)
	}
}

// TestConcurrentCommits commits from many goroutines at once, to two logs:
// they queue for the write connection and none fails.
func TestConcurrentCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	s := open(t, path)
	other := open(t, path) // another "process": waits with busy_timeout
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		st := s
		if g%2 == 1 {
			st = other
		}
		log := fmt.Sprint("log", g%3)
		wg.Go(func() {
			for i := range 10 {
				id := g*1000 + i*10
				if err := st.Commit(ctx, log, store.Batch{Records: records(id, 10), Synced: -1}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for g := range 3 {
		log := fmt.Sprint("log", g)
		ids, err := s.RecordIDs(ctx, log, -1, 10000)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for gg := range 8 {
			if gg%3 == g {
				want += 100
			}
		}
		if len(ids) != want {
			t.Errorf("%s holds %d records, want %d", log, len(ids), want)
		}
	}
}

// TestLockAcrossStores checks that the sync lock excludes another store on
// the same file (as another process would open it, here through a symbolic
// link), and that closing the store releases it.
func TestLockAcrossStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(filepath.Dir(path), link); err != nil {
		t.Fatal(err)
	}
	a, b := open(t, path), open(t, filepath.Join(link, "sumkeep.db"))
	ctx := context.Background()
	unlock, err := a.LockSync(ctx, "sum.golang.org")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LockSync(ctx, "sum.golang.org"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("LockSync from another store: err = %v, want ErrLocked", err)
	} else if !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("ErrLocked does not name the holder: %v", err)
	}
	if u, err := b.LockSync(ctx, "a/b"); err != nil {
		t.Fatalf("LockSync of a log with a slash in its name: %v", err)
	} else {
		u()
	}
	a.Close()
	unlock() // after Close: harmless
	unlock2, err := b.LockSync(ctx, "sum.golang.org")
	if err != nil {
		t.Fatalf("LockSync after the holder closed: %v", err)
	}
	unlock2()
	if _, err := a.LockSync(ctx, "sum.golang.org"); err == nil {
		t.Fatal("LockSync on a closed store succeeded")
	}
}

// TestLockDiesWithProcess takes the lock in a child process, kills it, and
// checks that the lock is free at once.
func TestLockDiesWithProcess(t *testing.T) {
	if os.Getenv("SUMKEEP_SQLITE_LOCK_CHILD") != "" {
		s, err := sqlite.Open(context.Background(), os.Getenv("SUMKEEP_SQLITE_LOCK_CHILD"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if _, err := s.LockSync(context.Background(), "sum.golang.org"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	s := open(t, path)
	cmd, said := startChild(t, "TestLockDiesWithProcess", "SUMKEEP_SQLITE_LOCK_CHILD="+path)
	if !strings.Contains(said, "locked") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q", said)
	}
	ctx := context.Background()
	if _, err := s.LockSync(ctx, "sum.golang.org"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("LockSync while a child holds it: err = %v, want ErrLocked", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	unlock, err := s.LockSync(ctx, "sum.golang.org")
	if err != nil {
		t.Fatalf("LockSync after the holder was killed: %v", err)
	}
	unlock()
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	s := open(t, path)
	if err := s.Commit(ctx, "l", store.Batch{Records: records(0, 3), Synced: 3}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := sqlite.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	r := record(1, "v1.0.0")
	if got, err := ro.Lookup(ctx, "l", r.Path, r.Version, 3); err != nil || got.ID != 1 {
		t.Fatalf("Lookup = %+v, %v", got, err)
	}
	if err := ro.Commit(ctx, "l", store.Batch{Records: records(3, 1), Synced: -1}); err == nil {
		t.Fatal("Commit to a read-only store succeeded")
	}
	if _, err := ro.LockSync(ctx, "l"); err == nil {
		t.Fatal("LockSync on a read-only store succeeded")
	}
	if _, err := sqlite.OpenReadOnly(ctx, filepath.Join(t.TempDir(), "none.db")); err == nil {
		t.Fatal("OpenReadOnly of a missing file succeeded")
	}
}

// TestGenerationCountsChanges checks that a batch that stores nothing new
// and serves the served head again does not move the generation.
func TestGenerationCountsChanges(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "sumkeep.db"))
	if err := s.AddHead(ctx, "l", head(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "l", store.Batch{Records: records(0, 3), Synced: 3, Serve: 3}); err != nil {
		t.Fatal(err)
	}
	st, _ := s.State(ctx, "l")
	if err := s.Commit(ctx, "l", store.Batch{Records: records(1, 2), Synced: -1, Serve: 3, Expect: &st}); err != nil {
		t.Fatal(err)
	}
	if st2, _ := s.State(ctx, "l"); st2 != st {
		t.Fatalf("State after a batch that changed nothing = %+v, want %+v", st2, st)
	}
}

// TestClosedStoreFailsEverywhere checks every method of a closed store.
func TestClosedStoreFailsEverywhere(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "sumkeep.db"))
	if err := s.Commit(ctx, "l", store.Batch{Records: records(0, 1), Synced: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	r := record(0, "v1.0.0")
	for name, f := range map[string]func() error{
		"AddHead":     func() error { return s.AddHead(ctx, "l", head(1)) },
		"LatestHead":  func() error { _, err := s.LatestHead(ctx, "l"); return err },
		"ServedHead":  func() error { _, err := s.ServedHead(ctx, "l"); return err },
		"Heads":       func() error { _, err := s.Heads(ctx, "l"); return err },
		"Synced":      func() error { _, err := s.Synced(ctx, "l"); return err },
		"Commit":      func() error { return s.Commit(ctx, "l", store.Batch{Synced: -1}) },
		"State":       func() error { _, err := s.State(ctx, "l"); return err },
		"RecordIDs":   func() error { _, err := s.RecordIDs(ctx, "l", -1, 1); return err },
		"Lookup":      func() error { _, err := s.Lookup(ctx, "l", r.Path, r.Version, 1); return err },
		"ReadRecords": func() error { _, err := s.ReadRecords(ctx, "l", 0, 1); return err },
		"ReadTiles": func() error {
			_, err := s.ReadTiles(ctx, "l", []tlog.Tile{{H: 8, L: 0, N: 0, W: 1}})
			return err
		},
		"AddEvidence": func() error { return s.AddEvidence(ctx, "l", store.Evidence{Kind: "k"}) },
		"Evidence":    func() error { _, err := s.Evidence(ctx, "l"); return err },
		"Logs":        func() error { _, err := s.Logs(ctx); return err },
		"LockSync":    func() error { _, err := s.LockSync(ctx, "l"); return err },
		"Migrate":     func() error { return s.Migrate(ctx) },
	} {
		if err := f(); err == nil {
			t.Errorf("%s on a closed store succeeded", name)
		}
	}
}

// TestKilledWriter kills a process in the middle of committing batches and
// checks that the store holds whole batches only, and that its sync lock
// is free.
func TestKilledWriter(t *testing.T) {
	const batch = 1024
	if path := os.Getenv("SUMKEEP_SQLITE_WRITER_CHILD"); path != "" {
		ctx := context.Background()
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if _, err := s.LockSync(ctx, "l"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		for i := 0; ; i += batch {
			if err := s.Commit(ctx, "l", store.Batch{Records: records(i, batch), Synced: int64(i + batch), Resumable: true}); err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			if i == 4*batch {
				fmt.Println("writing")
			}
		}
	}
	path := filepath.Join(t.TempDir(), "sumkeep.db")
	// The child says "writing" after its fifth commit and goes on
	// committing: killed as soon as it says so, it is killed mid-write.
	cmd, said := startChild(t, "TestKilledWriter", "SUMKEEP_SQLITE_WRITER_CHILD="+path)
	cmd.Process.Kill()
	cmd.Wait()
	if !strings.Contains(said, "writing") {
		t.Fatalf("child: %q", said)
	}
	s := open(t, path)
	ctx := context.Background()
	unlock, err := s.LockSync(ctx, "l")
	if err != nil {
		t.Fatalf("LockSync after the writer was killed: %v", err)
	}
	unlock()
	synced, err := s.Synced(ctx, "l")
	if err != nil {
		t.Fatal(err)
	}
	var count, maxID int64
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*), coalesce(max(id), -1) FROM records`).Scan(&count, &maxID); err != nil {
		t.Fatal(err)
	}
	if synced < 5*batch || synced%batch != 0 || count != synced || maxID != synced-1 {
		t.Fatalf("cursor %d, %d records up to id %d: not whole batches", synced, count, maxID)
	}
	var check string
	if err := s.DB().QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	t.Logf("killed after %d records", synced)
}

// startChild runs this test binary's test in a child process with env set,
// and returns it with the first line it printed (waiting for the whole
// line, however long the child takes to print it).
func startChild(t *testing.T, test, env string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	return cmd, line
}

// TestReadOnlyCreatesNothing (issue 15): OpenReadOnly of a path where no
// file is, of another application's SQLite database and of a file that is
// no database fails with a typed error and leaves everything as it was.
func TestReadOnlyCreatesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	missing := filepath.Join(dir, "sub", "typo.db")
	if _, err := sqlite.OpenReadOnly(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly of a missing file: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly of a missing file made its directory (%v)", err)
	}

	other := filepath.Join(dir, "other.sqlite")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('keep me')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database\n"), 300), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{other, garbage} {
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := sqlite.OpenReadOnly(ctx, path)
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, store.ErrNotStore) {
			t.Errorf("OpenReadOnly(%s): err = %v, want store.ErrNotStore", filepath.Base(path), err)
		}
		if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
			t.Errorf("OpenReadOnly(%s) changed the file (%v)", filepath.Base(path), err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("after the read-only opens the directory holds %q, want only the two files", names)
	}
}

// TestHostileRows: rows no store writes, put into the file behind the
// store's back, are errors naming the row on every read path.
func TestHostileRows(t *testing.T) {
	storetest.RunHostile(t, func(t *testing.T) storetest.Hostile {
		path := filepath.Join(t.TempDir(), "sumkeep.db")
		s := open(t, path)
		return storetest.Hostile{Store: s, Exec: func(ctx context.Context, query string, args ...any) (int64, error) {
			db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(30000)")
			if err != nil {
				return 0, err
			}
			defer db.Close()
			res, err := db.ExecContext(ctx, query, args...)
			if err != nil {
				return 0, err
			}
			return res.RowsAffected()
		}}
	})
}

// TestNotAStore: a file that is not a sumkeep store is named as such, by
// Open and OpenReadOnly alike, and left as it was; it is not reported as
// "no such table: records".
func TestNotAStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	text := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(text, []byte("example.com/m v1.0.0 h1:AAAA\n"+strings.Repeat("x", 200)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE notes (body TEXT)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path     string
		readOnly bool // only OpenReadOnly refuses it (Open makes a store of it)
	}{{text, false}, {other, false}, {empty, true}} {
		before := readFile(t, tc.path)
		opens := map[string]func(context.Context, string) (*sqlite.Store, error){"OpenReadOnly": sqlite.OpenReadOnly}
		if !tc.readOnly {
			opens["Open"] = sqlite.Open
		}
		for name, open := range opens {
			s, err := open(ctx, tc.path)
			if err == nil {
				s.Close()
				t.Errorf("%s(%s) succeeded", name, filepath.Base(tc.path))
				continue
			}
			var ne *sqlite.NotStoreError
			if !errors.Is(err, sqlite.ErrNotStore) || !errors.As(err, &ne) || ne.Path != tc.path ||
				!strings.Contains(err.Error(), tc.path+" is not a sumkeep store or bundle") {
				t.Errorf("%s(%s): err = %v, want it named as not a sumkeep store", name, filepath.Base(tc.path), err)
			}
		}
		if after := readFile(t, tc.path); string(after) != string(before) {
			t.Errorf("%s was changed", filepath.Base(tc.path))
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
