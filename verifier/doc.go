// Package verifier checks go.sum and go.work.sum files against a copy of a Go
// checksum database, offline, trusting only the database's public key.
//
// # What is checked
//
// Every non-blank line of every file, "<path> <version>[/go.mod] <hash>",
// must equal the record the checksum database holds for path@version (the
// record is two go.sum lines, "<path> <version> h1:…" and
// "<path> <version>/go.mod h1:…"), and that record must be proven, by a
// tlog inclusion proof, to be in a tree head whose signature verifies with
// the key. A [Source] supplies proven records: [StoreSource] reads a sumkeep
// store (no network), [MirrorSource] asks a running checksum database server
// over HTTP through golang.org/x/mod/sumdb's Client, keeping the newest
// verified tree head in a state file so that a log that forks between two
// runs is caught.
//
// The store is not trusted: the tree size and root hash come from the signed
// note, verified with the key; hash tiles are authenticated against that
// root as they are read; a record is accepted only when its inclusion proof
// holds. A record or tile altered in the store is reported as a failed
// proof, never accepted.
//
// # Skipping
//
// Lines for modules the go command would not look up in the checksum
// database are skipped, and counted as skipped (see [Policy]): modules whose
// path matches GONOSUMDB (which defaults to GOPRIVATE), every module when
// GOSUMDB=off, and lines the go command itself ignores (the hash of an empty
// go.mod file that early go versions wrote for non-modules). Lines for
// golang.org/toolchain are always checked: the go command requires the
// checksum database for toolchains even when GONOSUMDB matches.
//
// # Results
//
// Each line gets a status: "verified", "skipped" or "failed". A failed line
// has one of these kinds (stable strings, part of the JSON schema):
//
//	malformed             not "<path> <version>[/go.mod] <hash>", an invalid
//	                      module path, a version that is not canonical semver,
//	                      an h1 hash that is not base64 of 32 bytes, a line
//	                      too long
//	unknown-algorithm     a hash other than "h1:…"
//	not-found             no record for path@version (in the tree verified
//	                      against): a store or bundle holding only some
//	                      records lacks it (it may still be in the log), or
//	                      a full copy or a server has none; the message
//	                      says which
//	hash-mismatch         the h1 hash differs from the record's
//	go-mod-hash-mismatch  the /go.mod hash differs from the record's
//	proof-failed          the record could not be proven in the signed tree
//	                      (an altered record or tile, a missing tile, a
//	                      server answer that does not verify)
//	log-misbehaviour      the checksum database presented two tree heads that
//	                      are not consistent (a fork)
//
// A skipped line has one of these kinds: "gonosumdb" (GONOSUMDB or GOPRIVATE
// matches), "gosumdb-off", "ignored-by-go" (the empty go.mod hash).
//
// # JSON report (schema version 1)
//
// [Report.WriteJSON] writes one JSON object. Fields are only ever added within
// a schema version; a change to the meaning or type of a field increments
// schema_version.
//
//	{
//	  "schema_version": 1,
//	  "ok": false,                        // true when no line failed
//	  "database": {
//	    "name": "sum.golang.org",         // the name in the verifier key
//	    "source": "store",                // "store" or "mirror"
//	    "url": "",                        // the mirror's URL (source "mirror")
//	    "tree_size": 71234567,            // the verified signed tree head
//	    "tree_hash": "base64…"            // (0 and "" when nothing was looked up)
//	  },
//	  "summary": {"files": 1, "lines": 3, "verified": 1, "skipped": 1, "failed": 1},
//	  "files": [
//	    {"path": "go.sum", "lines": 3, "verified": 1, "skipped": 1, "failed": 1}
//	  ],
//	  "results": [                        // one per non-blank line, in file order
//	    {
//	      "file": "go.sum",
//	      "line": 7,                      // 1-based line number
//	      "module": "example.com/m",      // as written; "" when the line has
//	      "version": "v1.2.3",            //   not three fields
//	      "go_mod": false,                // a "<version>/go.mod" line
//	      "hash": "h1:…",                 // as written
//	      "status": "failed",             // "verified", "skipped" or "failed"
//	      "kind": "hash-mismatch",        // see above; "" for verified lines
//	      "message": "h1 hash mismatch: …"
//	    }
//	  ]
//	}
//
// Strings copied from the input (module, version, hash) are the line's
// bytes; invalid UTF-8 in them is replaced by U+FFFD, as encoding/json
// does.
//
// # Other formats
//
// [Report.WriteText] writes one line per problem, "FILE:LINE: module@version:
// reason", then a summary line. [Report.WriteJUnit] writes JUnit XML with
// one test suite per file and one test case per module@version in it.
// [Report.WriteGitHubAnnotations] writes "::error file=…,line=…::…" workflow
// commands for GitHub Actions.
package verifier
