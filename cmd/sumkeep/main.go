// Command sumkeep mirrors a Go checksum database and serves it to the go
// command.
//
//	sumkeep serve   [--listen ADDR] [--sync-schedule SPEC] [--metrics-listen ADDR]
//	sumkeep sync    [--once | --schedule SPEC [--metrics-listen ADDR]] [--mode auto|full|lazy]
//	sumkeep seed    [--concurrency N] FILE...
//	sumkeep export  --go-sum FILE... -o BUNDLE
//	sumkeep import  BUNDLE...
//	sumkeep migrate
//	sumkeep status
//	sumkeep verify  [--db DSN | --mirror URL] [--format text|json|junit] FILE...
//	sumkeep trillian create-tree --trillian ADDR
//	sumkeep version
//	sumkeep trillian create-tree --trillian ADDR
//
// --db, --upstream and --key are accepted by every subcommand, and every flag
// also reads SUMKEEP_<FLAG> from the environment (a flag on the command line
// wins). Exit status: 0 success, 1 failure, 2 usage or environment error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/upstream"
)

const (
	defaultKey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
	defaultDB  = "./sumkeep-data/sumkeep.db"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv, runtime.GOMAXPROCS)
	stop()
	os.Exit(code)
}

// usageError is a command-line mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type command struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) error
}

var commands = []command{
	{"serve", "answer the checksum database protocol from the store (optionally syncing on a schedule)", cmdServe},
	{"sync", "copy the upstream checksum database into the store, once or on a schedule", cmdSync},
	{"seed", "fetch, verify and keep the records that go.sum files need (lazy mode)", cmdSeed},
	{"export", "write an air-gap bundle: the records go.sum files need, with their proofs", cmdExport},
	{"import", "verify air-gap bundles completely and merge them into the store", cmdImport},
	{"migrate", "create or upgrade the store's schema", cmdMigrate},
	{"status", "show the heads, progress and any evidence of misbehaviour", cmdStatus},
	{"verify", "check go.sum files against the checksum database, offline (exit 1 when a line fails)", cmdVerify},
	{"trillian", "create-tree: make the Trillian tree for the optional replica (--trillian on sync and serve)", cmdTrillian},
	{"version", "print the version, commit and Go version of this build", cmdVersion},
}

// env is what a subcommand runs with.
type env struct {
	stdin      io.Reader // the go.sum file named "-"
	stdout     io.Writer
	stderr     *console // written from several goroutines
	getenv     func(string) (string, bool)
	gomaxprocs func(int) int // runtime.GOMAXPROCS, or a test's stand-in
	logger     *slog.Logger
	// common flags
	db, upstream, key string
	// pool is how several upstreams are raced (poolFlags).
	pool poolSettings
	// replica, if not nil, is given to the syncers newSyncer makes.
	replica mirror.Replica
	// observeUpstream and runObserver, if not nil, are given to the
	// upstream clients and syncers newSyncer makes (metrics).
	observeUpstream func(upstream.Observation)
	health          poolHealth // the pool's, for metrics
	runObserver     mirror.RunObserver
	// fetch-path bounds given to the syncers newSyncer makes (serve and
	// sync set them from flags; zero values are the defaults).
	maxInFlight int           // upstream requests in flight per upstream; 0: unbounded
	idleConns   int           // idle connections kept to each upstream; 0: the client's default
	absentTTL   time.Duration // how long a 404/410 lookup is remembered
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) (string, bool), gomaxprocs func(int) int) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 2 && args[0] == "help" {
			// 'sumkeep help CMD' is 'sumkeep CMD -h'.
			args = []string{args[1], "-h"}
		} else {
			usage(stderr)
			if len(args) == 0 {
				return 2
			}
			return 0
		}
	}
	console := newConsole(stderr)
	e := &env{stdin: stdin, stdout: stdout, stderr: console, getenv: getenv, gomaxprocs: gomaxprocs,
		logger: slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		var ue usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(console, "sumkeep %s: %v\n", c.name, err)
			return 2
		case errors.As(err, new(envError)):
			fmt.Fprintf(console, "sumkeep %s: %v\n", c.name, err)
			return 2
		case ctx.Err() != nil && (errors.Is(err, ctx.Err()) || errors.As(err, new(interruptedError))):
			// SIGINT or SIGTERM: say so, not "context canceled".
			msg := "interrupted"
			if ie, ok := errors.AsType[interruptedError](err); ok {
				msg = ie.msg
			}
			fmt.Fprintf(console, "sumkeep %s: %s\n", c.name, msg)
			return exitInterrupted
		default:
			fmt.Fprintf(console, "sumkeep %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(console, "sumkeep: unknown command %q\n", args[0])
	usage(console)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: sumkeep <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nEvery command takes --db, --upstream and --key; every flag also reads SUMKEEP_<FLAG>.\nRun 'sumkeep help <command>' for what a command does and its flags.\n")
}

// exitInterrupted is the exit status of a command stopped by SIGINT or
// SIGTERM before it was done, as shells report a command killed by SIGINT.
const exitInterrupted = 130

// interruptedError is a command's word on what an interrupt left (what was
// done, what to run again): exit status exitInterrupted.
type interruptedError struct{ msg string }

func (e interruptedError) Error() string { return e.msg }

// envError is a problem with the environment (no database, bad key): exit 2.
type envError struct{ err error }

func (e envError) Error() string { return e.err.Error() }
func (e envError) Unwrap() error { return e.err }

// flags returns a flag set with the common flags bound to e.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sumkeep "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	setUsage(fs, name, e.stderr)
	fs.StringVar(&e.db, "db", defaultDB, "store: a postgres:// URL, or a SQLite file path")
	fs.StringVar(&e.upstream, "upstream", "", "upstream checksum database URLs, comma-separated, none trusted (default: every GOPROXY entry whose /sumdb/<name>/supported answers 200, then https://<key name>)")
	fs.StringVar(&e.key, "key", defaultKey, "upstream verifier key")
	return fs
}

// parse applies SUMKEEP_<FLAG> environment variables, then the arguments.
func (e *env) parse(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "SUMKEEP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := e.getenv(name); ok && err == nil {
			if serr := f.Value.Set(v); serr != nil {
				err = usageError{fmt.Sprintf("%s=%q: %v", name, v, serr)}
			}
		}
	})
	if err != nil {
		return err
	}
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}
