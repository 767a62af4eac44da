package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/sumkeep/sumkeep/verifier"
)

// verifyFailed is the error of a verify run whose report shows failed
// lines: exit status 1, after the report is printed.
type verifyFailed struct{ failed, lines int }

func (e verifyFailed) Error() string {
	return fmt.Sprintf("%d of %d lines failed verification", e.failed, e.lines)
}

const verifyUsage = `usage: sumkeep verify [--db DSN | --mirror URL] [--key VKEY] [--format text|json|junit] [--output FILE] FILE...

Checks go.sum and go.work.sum files against the checksum database: every
line must match the database's record for its module@version, and every
record must be proven in a tree head signed with --key. With --db (the
default) it reads the local store and needs no network; with --mirror it
asks a checksum database server (a sumkeep mirror, or any sumdb server).
A FILE of - is standard input (git show main:go.sum | sumkeep verify -).
Modules matched by GONOSUMDB or GOPRIVATE (from the environment, else from
'go env') are skipped, as the go command skips them.

Exit status: 0 every line verified (skips allowed), 1 a line failed,
2 usage or environment error (no database, wrong key, unreadable file).
Under GitHub Actions (GITHUB_ACTIONS=true) failures are also printed to
standard error as ::error annotations; standard output (or --output) holds
the report alone.

Flags (they may come before or after the files; -- ends them):
`

func cmdVerify(ctx context.Context, e *env, args []string) error {
	fs := e.flags("verify")
	mirror := fs.String("mirror", "", "verify against the checksum database server at this URL instead of the store")
	format := fs.String("format", "text", "report format: text, json or junit")
	output := fs.String("output", "", "write the report to this file instead of standard output")
	state := fs.String("state", "", "with --mirror: the file keeping the newest verified tree head between runs, so that a log forking between runs is caught (default: <user cache dir>/sumkeep/verify/<name>/latest)")
	concurrency := fs.Int("concurrency", 32, "lookups in flight")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), verifyUsage)
		fs.PrintDefaults()
	}
	if err := e.parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if _, ok := e.getenv("SUMKEEP_DB"); ok {
		set["db"] = true
	}
	files := fs.Args()
	switch {
	case len(files) == 0:
		return usageError{"name at least one go.sum or go.work.sum file"}
	case *format != "text" && *format != "json" && *format != "junit":
		return usageError{fmt.Sprintf("--format %q: want text, json or junit", *format)}
	case *mirror != "" && set["db"]:
		return usageError{"--db and --mirror are mutually exclusive"}
	case *mirror == "" && set["state"]:
		return usageError{"--state is for --mirror"}
	case *concurrency < 1:
		return usageError{"--concurrency must be at least 1"}
	}
	name, err := e.logName()
	if err != nil {
		return err
	}

	// The policy reads the go command's env files (or, where they cannot
	// be found, runs `go env`: a process start, ~40 ms): it is worked out
	// while the store opens, and waited for only before verifying.
	policy := e.policyAsync(ctx, "verify")

	var src verifier.Source
	var mirrorSrc *verifier.MirrorSource
	if *mirror != "" {
		path := *state
		if path == "" {
			if dir, err := os.UserCacheDir(); err == nil {
				path = filepath.Join(dir, "sumkeep", "verify", pathComponent(name), "latest")
			} else {
				fmt.Fprintf(e.stderr, "sumkeep verify: warning: no cache directory (%v): the verified tree head is not kept; use --state FILE\n", err)
			}
		}
		mirrorSrc, err = verifier.NewMirrorSource(verifier.MirrorConfig{URL: *mirror, Key: e.key, StateFile: path, Lookups: min(*concurrency, 64)})
		if err != nil {
			return envError{err}
		}
		src = mirrorSrc
	} else {
		st, err := e.openStoreReadOnly(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := e.checkKey(ctx, st, "the store (--db)", true); err != nil {
			return err
		}
		ss, err := verifier.NewStoreSource(ctx, st, e.key)
		if err != nil {
			return envError{err}
		}
		ss.Lookups = *concurrency
		src = ss
	}

	v := &verifier.Verifier{Source: src, Policy: policy()}
	inputs, err := verifier.ReadInputs(files, e.stdin)
	if err != nil {
		return envError{err}
	}
	rep, err := v.Verify(ctx, inputs)
	if err != nil {
		return envError{err}
	}
	if mirrorSrc != nil {
		for _, msg := range mirrorSrc.SecurityErrors() {
			fmt.Fprintf(e.stderr, "%s\n", strings.TrimSpace(msg))
		}
	}
	// Annotations go to standard error, which GitHub reads as well:
	// standard output is exactly the report, so that a JSON or JUnit
	// report redirected to a file parses.
	if gha, _ := e.getenv("GITHUB_ACTIONS"); gha == "true" {
		if err := rep.WriteGitHubAnnotations(e.stderr); err != nil {
			return envError{err}
		}
	}
	var buf bytes.Buffer
	switch *format {
	case "json":
		err = rep.WriteJSON(&buf)
	case "junit":
		err = rep.WriteJUnit(&buf)
	default:
		err = rep.WriteText(&buf)
	}
	if err == nil {
		if *output != "" {
			err = os.WriteFile(*output, buf.Bytes(), 0o644)
		} else {
			_, err = e.stdout.Write(buf.Bytes())
		}
	}
	if err != nil {
		return envError{fmt.Errorf("writing the report: %w", err)}
	}
	if rep.Failed() {
		return verifyFailed{failed: rep.Summary.Failed, lines: rep.Summary.Lines}
	}
	return nil
}

// pathComponent makes a log name (which may hold any character but white
// space and '+') safe as one path element.
func pathComponent(name string) string {
	c := url.PathEscape(name)
	if c == "." || c == ".." {
		return "_" + c
	}
	return c
}

// policy returns the modules the go command would not look up in the
// checksum database, as it decides: GONOSUMDB, GOPRIVATE and GOSUMDB from
// the environment, else as 'go env' gives them (so values set with
// 'go env -w' count), read from the go command's env files. Problems are
// warnings on stderr, naming the command.
func (e *env) policy(ctx context.Context, cmd string) verifier.Policy {
	return e.policyAsync(ctx, cmd)()
}

// policyAsync is policy, worked out in the background: the function it
// returns waits for it and prints the warnings.
func (e *env) policyAsync(ctx context.Context, cmd string) func() verifier.Policy {
	type result struct {
		p   verifier.Policy
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := verifier.PolicyFromEnv(ctx, e.getenv, verifier.GoEnvFiles(e.getenv, verifier.GoCommandEnv(e.getenv)))
		done <- result{p, err}
	}()
	return func() verifier.Policy {
		r := <-done
		return e.policyWarnings(r.p, r.err, cmd)
	}
}

func (e *env) policyWarnings(policy verifier.Policy, err error, cmd string) verifier.Policy {
	if err != nil {
		fmt.Fprintf(e.stderr, "sumkeep %s: warning: %v; using GONOSUMDB, GOPRIVATE and GOSUMDB from the environment only\n", cmd, err)
	}
	if policy.SumDBOff {
		fmt.Fprintf(e.stderr, "sumkeep %s: warning: GOSUMDB=off: the go command consults no checksum database, so only golang.org/toolchain lines count\n", cmd)
	}
	return policy
}
