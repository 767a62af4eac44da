package main

import (
	"flag"
	"fmt"
	"io"
)

// commandHelp is each command's synopsis and a paragraph on what it does,
// printed above its flags by 'sumkeep help CMD' and 'sumkeep CMD -h'.
var commandHelp = map[string]struct{ synopsis, about string }{
	"serve": {"sumkeep serve [flags]",
		`Answers the checksum database protocol (/latest, /lookup, /tile, and the
proxy form /sumdb/<name>/...) from the store, so that the go command verifies
modules through it (GOSUMDB="<key> <URL>", or GOPROXY=<URL>,<your proxy>). In
lazy mode a lookup the store lacks is fetched from the upstreams, verified and
kept, and the newest head among them is served from the start; with
--sync-schedule the same process also syncs. --upstream takes several URLs
(none is trusted: each request goes to the fastest, hedged when it is late
to the one expected to answer first, often the same, and one that lies is
quarantined). With --db-read it reads from
a Postgres hot standby of --db and writes to --db, which also answers what
the standby has not replayed yet. It listens on 127.0.0.1 by default: give
--listen :8080 (behind a TLS proxy) to serve other machines. Its status page
at / (and /status.json) shows the exact GOSUMDB and GOPROXY lines to use,
the heads, the lag, the syncs, the upstreams and any evidence of
misbehaviour; it logs one line per request unless --request-log=false.
Prometheus metrics are at /metrics, or on a listener of their own with
--metrics-listen. /livez answers while the process runs, /readyz once it
can serve (the store answers and a served head exists).`},
	"sync": {"sumkeep sync --once | --schedule SPEC [flags]",
		`Brings the store to the upstreams' newest signed tree head, verifying every
head, tile and record before storing it: once, or on a cron schedule until
stopped. The heads of every upstream are linked, so a split view is caught
as a fork. In full mode it copies the whole log; in lazy mode it moves the
served head and keeps every stored record provable under it. With
--schedule, --metrics-listen ADDR serves Prometheus metrics at /metrics
(and /livez) on ADDR.`},
	"seed": {"sumkeep seed [flags] FILE...",
		`Fetches, verifies and keeps the checksum database records that go.sum /
go.work.sum files need, with the tiles that prove them (lazy mode). Modules
matched by GONOSUMDB / GOPRIVATE (from the environment, else 'go env') are
never asked for. Lookups run --concurrency at a time; what they find is
verified and committed in groups (one durable commit per group). Each
module@version that could not be fetched is named with the reason on
standard error. A FILE of - is standard input.`},
	"export": {"sumkeep export [flags] --go-sum FILE... -o BUNDLE",
		`Writes an air-gap bundle: a new SQLite file holding the store's served
head, the records the go.sum files need and the tiles that prove them.
'sumkeep import BUNDLE' merges it into a mirror on the other side, and
'sumkeep verify --db BUNDLE go.sum' gates CI on it with no network.
A --go-sum FILE of - is standard input.`},
	"import": {"sumkeep import [flags] BUNDLE...",
		`Verifies air-gap bundles completely (every signature with --key, every
record and tile against the signed heads) and merges them into the store.
A bundle that fails any check is rejected whole and changes nothing.`},
	"migrate": {"sumkeep migrate [flags]",
		`Creates the store's schema or upgrades it to this build's. Every command
that opens a store does this too; run it on its own before starting
several servers against a new database.`},
	"status": {"sumkeep status [flags]",
		`Shows each log the store holds: its served and newest heads, how many
records it holds, and any evidence of upstream misbehaviour (exit status 1
when there is); then probes each upstream once (/latest) and shows whether
it answers and how fast. With --key, also checks that the store holds that key's log
and that its served head is signed with the key (exit status 2 if not).`},
	"trillian": {"sumkeep trillian create-tree --trillian ADDR [flags]",
		`Makes the Trillian tree (a PREORDERED_LOG with the RFC 6962 hasher) for the
optional replica and prints its id: give it to sync and serve with
--trillian ADDR --trillian-tree ID, and every head is served only once
Trillian's root of the same size agrees (full mode only).`},
	"version": {"sumkeep version",
		`Prints this build's version, the commit it was built from and the Go
version that built it (serve answers the same at /version).`},
	"verify": {"sumkeep verify [flags] FILE...", ""}, // verifyUsage says it all
}

// setUsage makes fs print the command's synopsis, what it does, and its
// flags.
func setUsage(fs *flag.FlagSet, name string, w io.Writer) {
	fs.Usage = func() {
		h := commandHelp[name]
		fmt.Fprintf(w, "usage: %s\n\n", h.synopsis)
		if h.about != "" {
			fmt.Fprintf(w, "%s\n\n", h.about)
		}
		fmt.Fprintf(w, "Flags (they may come before or after the other arguments; -- ends them):\n")
		fs.PrintDefaults()
	}
}

// parseInterspersed parses flags anywhere among args, as 'verify go.sum
// --format json' means, leaving the other arguments in fs.Args() in their
// order. An argument "--" ends the flags: all after it are arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// Parse stopped at "--" (which it consumed) or at a non-flag.
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}
