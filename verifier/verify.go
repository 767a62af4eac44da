package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"
)

// Result kinds (see the package documentation).
const (
	KindMalformed        = "malformed"
	KindUnknownAlgorithm = "unknown-algorithm"
	KindNotFound         = "not-found"
	KindHashMismatch     = "hash-mismatch"
	KindGoModMismatch    = "go-mod-hash-mismatch"
	KindProofFailed      = "proof-failed"
	KindMisbehaviour     = "log-misbehaviour"

	KindGONOSUMDB   = "gonosumdb"
	KindGOSUMDBOff  = "gosumdb-off"
	KindIgnoredByGo = "ignored-by-go"
)

// Statuses of a line.
const (
	StatusVerified = "verified"
	StatusSkipped  = "skipped"
	StatusFailed   = "failed"
)

// MaxFileSize bounds the size of a file ReadInputs reads.
const MaxFileSize = 256 << 20

// Verifier checks go.sum files against a Source.
type Verifier struct {
	Source Source
	Policy Policy
}

// An Input is a go.sum file's name (for reports) and contents.
type Input struct {
	Name string
	Data []byte
}

// StdinName is the name the file "-" (standard input) has in reports.
const StdinName = "<standard input>"

// ReadInputs reads the named go.sum files, each at most MaxFileSize bytes,
// for Verify. A file that cannot be read is an error: then nothing is to
// be verified. The name "-" stands for stdin, which is read once,
// whole, and named StdinName; with stdin nil or empty, "-" is an error.
func ReadInputs(paths []string, stdin io.Reader) ([]Input, error) {
	inputs := make([]Input, len(paths))
	readStdin := false
	for i, p := range paths {
		var data []byte
		var err error
		name := p
		if p == "-" {
			switch {
			case stdin == nil:
				return nil, errors.New("-: standard input cannot be read here: name a file")
			case readStdin:
				return nil, errors.New("- is named twice: standard input can be read only once")
			}
			readStdin, name = true, StdinName
			data, err = readGoSum(name, stdin, "pipe in the go.sum file")
			if err == nil && len(data) == 0 {
				// Most likely what was to write it failed (git show of a
				// path not there): verifying nothing must not pass.
				return nil, errors.New("standard input is empty: nothing was piped in (an empty go.sum can be named as a file)")
			}
		} else {
			data, err = readFile(p)
		}
		if err != nil {
			return nil, err
		}
		inputs[i] = Input{Name: name, Data: data}
	}
	return inputs, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readGoSum(name, f, fmt.Sprintf("name the go.sum file (%s)", filepath.Join(filepath.Dir(name), "go.sum")))
}

// readGoSum reads a go.sum file named name from r; hint says what to do
// instead when it is plainly not a go.sum.
func readGoSum(name string, r io.Reader, hint string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("reading %s: larger than %d MiB", name, MaxFileSize>>20)
	}
	if what := notGoSum(data); what != "" {
		return nil, fmt.Errorf("%s is %s, not a go.sum: %s", name, what, hint)
	}
	return data, nil
}

// notGoSum says what a file plainly is when it is a go.mod or go.work
// file given for a go.sum: its first line (after blank lines and //
// comments) is a "module" or "go" directive of two fields, which no go.sum
// line (three fields, a module path with a dot) is.
func notGoSum(data []byte) string {
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "//") {
			continue
		}
		switch {
		case len(f) == 2 && f[0] == "module":
			return "a go.mod file"
		case len(f) == 2 && f[0] == "go":
			return "a go.mod or go.work file"
		}
		return ""
	}
	return ""
}

// Verify checks every line of every input. The error is for failures of
// the environment (see Source.Records); what is wrong with the inputs is in
// the report.
func (v *Verifier) Verify(ctx context.Context, inputs []Input) (*Report, error) {
	rep, pending, mods := v.plan(inputs)
	if len(mods) > 0 {
		answers, err := v.Source.Records(ctx, mods)
		if err != nil {
			return nil, err
		}
		if len(answers) != len(mods) {
			return nil, fmt.Errorf("the source answered %d lookups for %d", len(answers), len(mods))
		}
		for _, p := range pending {
			r := &rep.Results[p.res]
			r.Status, r.Kind, r.Message = check(&p.l, answers[p.mod])
		}
	}
	rep.Database = v.Source.Database()
	rep.count()
	return rep, nil
}

// Lookups returns, without a Source, what Verify would look up for inputs:
// the module@versions, in order of first appearance; and the results of
// the lines it would decide on their own, skipped (GONOSUMDB, GOPRIVATE,
// GOSUMDB=off, lines the go command ignores) or failed (malformed, unknown
// hash algorithm). seed and export fetch and carry exactly these records.
func (v *Verifier) Lookups(inputs []Input) ([]module.Version, []Result) {
	rep, _, mods := v.plan(inputs)
	var decided []Result
	for _, r := range rep.Results {
		if r.Status != "" {
			decided = append(decided, r)
		}
	}
	return mods, decided
}

// pendingLine is a line whose result waits for its module's record.
type pendingLine struct {
	res int // index in rep.Results
	mod int // index in mods
	l   sumLine
}

// plan splits every line of every input and decides what it can without the
// database: a report with a result for every line (Status "" where the
// line waits for a record), the waiting lines, and the module@versions to
// look up.
func (v *Verifier) plan(inputs []Input) (*Report, []pendingLine, []module.Version) {
	rep := &Report{SchemaVersion: SchemaVersion}
	var pending []pendingLine
	var mods []module.Version
	modIndex := make(map[module.Version]int)

	for _, in := range inputs {
		rep.Files = append(rep.Files, FileSummary{Path: in.Name})
		for _, l := range splitGoSum(in.Data) {
			r := Result{File: in.Name, Line: l.num, GoMod: l.goMod}
			if l.fields == 3 {
				r.Module, r.Version, r.Hash = l.path, l.version, l.hash
			}
			r.modVer = l.modVer()
			switch kind, msg, skip := v.skip(&l); {
			case skip:
				r.Status, r.Kind, r.Message = StatusSkipped, kind, msg
			default:
				if kind, msg := l.syntaxError(); kind != "" {
					r.Status, r.Kind, r.Message = StatusFailed, kind, msg
					break
				}
				m := module.Version{Path: l.path, Version: l.version}
				i, ok := modIndex[m]
				if !ok {
					i = len(mods)
					modIndex[m] = i
					mods = append(mods, m)
				}
				pending = append(pending, pendingLine{res: len(rep.Results), mod: i, l: l})
			}
			rep.Results = append(rep.Results, r)
		}
	}
	return rep, pending, mods
}

// skip reports whether a line is skipped: lines the go command ignores, and
// modules it does not look up in the checksum database.
func (v *Verifier) skip(l *sumLine) (kind, msg string, ok bool) {
	if l.fields != 3 {
		return "", "", false
	}
	if l.hash == emptyGoModHash {
		return KindIgnoredByGo, "skipped: the go command ignores this hash (an empty go.mod, written by early go versions for non-modules)", true
	}
	return v.Policy.skip(l.path)
}

// check compares a line with the source's answer for its module version.
func check(l *sumLine, a Answer) (status, kind, msg string) {
	var pe *ProofError
	var me *MisbehaviourError
	switch {
	case errors.Is(a.Err, ErrNotFound):
		return StatusFailed, KindNotFound, a.Err.Error()
	case errors.As(a.Err, &me):
		return StatusFailed, KindMisbehaviour, me.Error()
	case errors.As(a.Err, &pe):
		return StatusFailed, KindProofFailed, "proof failed: " + pe.Error()
	case a.Err != nil:
		return StatusFailed, KindProofFailed, "cannot verify: " + a.Err.Error()
	}
	vers := l.version
	what, kind := "h1 hash", KindHashMismatch
	if l.goMod {
		vers += "/go.mod"
		what, kind = "go.mod hash", KindGoModMismatch
	}
	// The record's line for this version, as golang.org/x/mod/sumdb.Client
	// finds it: by the "<path> <version> " prefix.
	prefix := l.path + " " + vers + " "
	var have []string
	for line := range bytes.SplitSeq(a.Record, []byte("\n")) {
		if h, ok := bytes.CutPrefix(line, []byte(prefix)); ok {
			if string(h) == l.hash {
				return StatusVerified, "", ""
			}
			have = append(have, printable(string(h)))
		}
	}
	if len(have) == 0 {
		return StatusFailed, kind, fmt.Sprintf("%s mismatch: the checksum database's record has no %s", what, what)
	}
	return StatusFailed, kind, fmt.Sprintf("%s mismatch: go.sum has %s, the checksum database has %s", what, l.hash, strings.Join(have, ", "))
}
