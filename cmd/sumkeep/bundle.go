package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store/backend"
	"github.com/sumkeep/sumkeep/verifier"
)

// stringsFlag collects a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// cmdExport writes an air-gap bundle: a SQLite file with the served head,
// the records some go.sum files need and the tiles that prove them.
func cmdExport(ctx context.Context, e *env, args []string) error {
	fs := e.flags("export")
	var sums stringsFlag
	fs.Var(&sums, "go-sum", "a go.sum or go.work.sum file whose records the bundle carries (repeatable; more files may follow the flags)")
	out := fs.String("o", "", "the bundle file to write (must not exist)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	sums = append(sums, fs.Args()...)
	if len(sums) == 0 {
		return usageError{"name at least one go.sum file (--go-sum FILE)"}
	}
	if *out == "" {
		return usageError{"name the bundle to write with -o FILE"}
	}
	if _, err := os.Stat(*out); err == nil {
		return envError{fmt.Errorf("-o %s: the file exists; a bundle is written to a new file", *out)}
	}
	mods, skipped, malformed, err := e.goSumModules(ctx, "export", sums)
	if err != nil {
		return err
	}
	st, err := e.openStoreReadOnly(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := e.checkKey(ctx, st, "the store (--db)", true); err != nil {
		return err
	}
	b, err := e.openStoreAt(ctx, *out)
	if err != nil {
		return err
	}
	res, err := mirror.Export(ctx, st, e.key, mods, b)
	b.Close()
	if err != nil {
		os.Remove(*out)
		return err
	}
	for _, m := range res.Missing {
		fmt.Fprintf(e.stderr, "%s@%s: not in the mirror (seed it first: sumkeep seed)\n", m.Path, m.Version)
	}
	size := int64(0)
	if fi, err := os.Stat(*out); err == nil {
		size = fi.Size()
	}
	fmt.Fprintf(e.stdout, "wrote %s: head %d, %d heads, %d records, %d tiles, %d bytes; %d not in the mirror, %d skipped (GONOSUMDB/GOPRIVATE), %d malformed lines\n",
		*out, res.Head.Size, res.Heads, res.Records, res.Tiles, size, len(res.Missing), skipped, malformed)
	if len(res.Missing) > 0 || malformed > 0 {
		return fmt.Errorf("the bundle lacks %d module@versions the go.sum files name", len(res.Missing))
	}
	return nil
}

// cmdImport verifies bundles completely and merges them into the store.
func cmdImport(ctx context.Context, e *env, args []string) (err error) {
	fs := e.flags("import")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"name at least one bundle file"}
	}
	for _, name := range fs.Args() {
		if _, err := os.Stat(name); err != nil {
			return envError{fmt.Errorf("bundle %s: %w", name, err)}
		}
	}
	// Opening a SQLite store creates it: an import that fails must not
	// leave an empty store (nor its directory) where there was none.
	imported := 0
	if created := e.newSQLitePaths(); len(created) > 0 {
		defer func() {
			if err != nil && imported == 0 {
				removeAll(created)
			}
		}()
	}
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := e.checkKey(ctx, st, "the store (--db)", false); err != nil {
		return err
	}
	s, err := mirror.New(mirror.Config{Store: st, Key: e.key, Mode: mirror.ModeLazy, Logger: e.logger})
	if err != nil {
		return envError{err}
	}
	for _, name := range fs.Args() {
		// A bundle is hostile input: opened read-only, never migrated.
		b, err := backend.OpenBundle(ctx, name)
		if err != nil {
			return envError{err}
		}
		if err := e.checkKey(ctx, b, "bundle "+name, true); err != nil {
			b.Close()
			return err
		}
		res, err := s.Import(ctx, b, name)
		b.Close()
		if err != nil {
			return err // a store holding earlier bundles is kept
		}
		imported++
		fmt.Fprintf(e.stdout, "imported %s: head %d, %d records, %d heads; serving head %d\n",
			name, res.Bundle.Size, res.Records, res.Heads, res.Served.Size)
	}
	return nil
}

// newSQLitePaths returns, when --db is a SQLite file that does not exist
// yet, the paths opening it would create: the file, its journal files and
// any missing directories above it (innermost first). Otherwise nil.
func (e *env) newSQLitePaths() []string {
	if strings.HasPrefix(e.db, "postgres://") || strings.HasPrefix(e.db, "postgresql://") {
		return nil
	}
	if _, err := os.Stat(e.db); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	paths := []string{e.db, e.db + "-wal", e.db + "-shm", e.db + "-journal"}
	for dir := filepath.Dir(e.db); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			break
		}
		paths = append(paths, dir)
		if dir == filepath.Dir(dir) {
			break
		}
	}
	return paths
}

// removeAll removes what newSQLitePaths listed, files first; a directory
// is removed only if empty.
func removeAll(paths []string) {
	for _, p := range paths {
		os.Remove(p)
	}
}

// goSumModules reads go.sum files: the module@versions whose records
// 'sumkeep verify' looks up (those GONOSUMDB / GOPRIVATE / GOSUMDB=off do
// not exclude, from the environment or else 'go env', on lines that
// parse), how many module@versions were skipped, and how many lines are
// malformed (each reported on stderr). It is the verifier's own parser and
// policy, so seed and export fetch and carry exactly what verify needs.
func (e *env) goSumModules(ctx context.Context, cmd string, names []string) (mods []module.Version, skipped, malformed int, err error) {
	inputs, err := verifier.ReadInputs(names, e.stdin)
	if err != nil {
		return nil, 0, 0, envError{err}
	}
	v := &verifier.Verifier{Policy: e.policy(ctx, cmd)}
	mods, decided := v.Lookups(inputs)
	looked := make(map[module.Version]bool, len(mods))
	for _, m := range mods {
		looked[m] = true
	}
	skip := make(map[module.Version]bool)
	for _, r := range decided {
		switch r.Status {
		case verifier.StatusSkipped:
			if m := (module.Version{Path: r.Module, Version: r.Version}); !looked[m] && !skip[m] {
				skip[m] = true
				skipped++
			}
		case verifier.StatusFailed:
			fmt.Fprintln(e.stderr, r.String())
			malformed++
		}
	}
	return mods, skipped, malformed, nil
}
