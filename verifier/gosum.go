package verifier

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/module"
)

// maxLineLen bounds a go.sum line. Module paths and versions are short (the
// longest in sum.golang.org are a few hundred bytes); a longer line is
// malformed and is not parsed further.
const maxLineLen = 4096

// emptyGoModHash is the hash of a tree holding one empty go.mod file. Early
// go versions wrote it into go.sum for non-modules; the go command drops
// such lines when it reads go.sum, and so does the verifier.
const emptyGoModHash = "h1:G7mAYYxgmS0lVkHyy2hEOLQCFB0DlQFTMLWggykrydY="

// A sumLine is one non-blank line of a go.sum file, split as the go command
// splits it (on white space).
type sumLine struct {
	num     int    // 1-based
	fields  int    // number of fields; the rest is set only when it is 3
	path    string // as written
	version string // as written, without "/go.mod"
	goMod   bool   // the version had a "/go.mod" suffix
	hash    string // as written
	tooLong int    // the line's length, when it exceeds maxLineLen
}

// splitGoSum returns the non-blank lines of a go.sum file. Like the go
// command it splits lines on '\n' only and fields on any white space, so a
// CRLF file reads the same as an LF one.
func splitGoSum(data []byte) []sumLine {
	var lines []sumLine
	for num := 1; len(data) > 0; num++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if len(line) > maxLineLen {
			lines = append(lines, sumLine{num: num, tooLong: len(line)})
			continue
		}
		f := strings.Fields(string(line))
		switch len(f) {
		case 0:
			continue
		case 3:
			v, goMod := strings.CutSuffix(f[1], "/go.mod")
			lines = append(lines, sumLine{num: num, fields: 3, path: f[0], version: v, goMod: goMod, hash: f[2]})
		default:
			lines = append(lines, sumLine{num: num, fields: len(f)})
		}
	}
	return lines
}

// syntaxError reports what is wrong with a line on its own, without the
// checksum database: a kind (KindMalformed, KindUnknownAlgorithm) and a
// message, or "" if nothing is.
func (l *sumLine) syntaxError() (kind, msg string) {
	switch {
	case l.tooLong > 0:
		return KindMalformed, fmt.Sprintf("malformed line: %d bytes long (at most %d)", l.tooLong, maxLineLen)
	case l.fields != 3:
		fields := "fields"
		if l.fields == 1 {
			fields = "field"
		}
		return KindMalformed, fmt.Sprintf("malformed line: %d %s, want 3 (<module> <version>[/go.mod] <hash>)", l.fields, fields)
	}
	if l.num == 1 && strings.HasPrefix(l.path, "\ufeff") {
		// Some editors write one; the go command never does.
		return KindMalformed, "malformed line: the file starts with a byte-order mark (U+FEFF), which go.sum files never have: save it without one"
	}
	if err := module.CheckPath(l.path); err != nil {
		return KindMalformed, "malformed line: invalid module path: " + innermost(err)
	}
	if err := module.Check(l.path, l.version); err != nil {
		return KindMalformed, "malformed line: invalid version: " + innermost(err)
	}
	if c := module.CanonicalVersion(l.version); c != l.version {
		return KindMalformed, fmt.Sprintf("malformed line: version is not canonical (the canonical form is %s)", c)
	}
	alg, h, ok := strings.Cut(l.hash, ":")
	switch {
	case !ok:
		return KindMalformed, "malformed line: the hash has no algorithm prefix (want h1:…)"
	case alg != "h1":
		return KindUnknownAlgorithm, fmt.Sprintf("unknown hash algorithm %s (only h1 is known)", quote(alg))
	case !validHash(h):
		return KindMalformed, "malformed line: the h1 hash is not the base64 of a SHA-256 sum"
	}
	return "", ""
}

// validHash reports whether s is the canonical base64 of a SHA-256 sum.
func validHash(s string) bool {
	if len(s) != base64.StdEncoding.EncodedLen(sha256.Size) {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size && base64.StdEncoding.EncodeToString(b) == s
}

// innermost returns the message of the innermost error err wraps: the
// reason, without the (possibly hostile) path or version the outer errors
// of golang.org/x/mod/module quote.
func innermost(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// modVer returns "path@version" of a line for messages: as written when it
// is printable, else quoted; truncated when long. It is "" for a line that
// does not have three fields.
func (l *sumLine) modVer() string {
	if l.fields != 3 {
		return ""
	}
	return printable(l.path) + "@" + printable(l.version)
}

// printable returns s when it is short, valid UTF-8 without control
// characters or white space; otherwise a quoted, possibly truncated form.
func printable(s string) string {
	const max = 200
	ok := len(s) <= max && utf8.ValidString(s)
	for _, r := range s {
		if !ok {
			break
		}
		ok = strconv.IsGraphic(r) && r != ' ' && r != '"'
	}
	if ok {
		return s
	}
	return quote(s)
}

// quote quotes s in Go syntax with only ASCII, truncated to a readable
// length.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		return strconv.QuoteToASCII(s[:max]) + "…"
	}
	return strconv.QuoteToASCII(s)
}
