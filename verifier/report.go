package verifier

import (
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// SchemaVersion is the version of the JSON report's schema.
const SchemaVersion = 1

// Report is the outcome of a run. Its JSON form is documented in the
// package documentation.
type Report struct {
	SchemaVersion int           `json:"schema_version"`
	OK            bool          `json:"ok"`
	Database      Database      `json:"database"`
	Summary       Summary       `json:"summary"`
	Files         []FileSummary `json:"files"`
	Results       []Result      `json:"results"`
}

// Summary counts lines.
type Summary struct {
	Files    int `json:"files"`
	Lines    int `json:"lines"`
	Verified int `json:"verified"`
	Skipped  int `json:"skipped"`
	Failed   int `json:"failed"`
}

// FileSummary counts the lines of one file.
type FileSummary struct {
	Path     string `json:"path"`
	Lines    int    `json:"lines"`
	Verified int    `json:"verified"`
	Skipped  int    `json:"skipped"`
	Failed   int    `json:"failed"`
}

// Result is the outcome for one non-blank line.
type Result struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Module  string `json:"module"`
	Version string `json:"version"`
	GoMod   bool   `json:"go_mod"`
	Hash    string `json:"hash"`
	Status  string `json:"status"`
	Kind    string `json:"kind"`
	Message string `json:"message"`

	modVer string // "module@version" safe to print, "" if the line has no three fields
}

// Failed reports whether any line failed.
func (r *Report) Failed() bool { return r.Summary.Failed > 0 }

// count fills the summaries from the results.
func (r *Report) count() {
	byFile := make(map[string]*FileSummary, len(r.Files))
	for i := range r.Files {
		byFile[r.Files[i].Path] = &r.Files[i]
	}
	r.Summary = Summary{Files: len(r.Files)}
	for _, res := range r.Results {
		f := byFile[res.File]
		f.Lines++
		r.Summary.Lines++
		switch res.Status {
		case StatusVerified:
			f.Verified++
			r.Summary.Verified++
		case StatusSkipped:
			f.Skipped++
			r.Summary.Skipped++
		default:
			f.Failed++
			r.Summary.Failed++
		}
	}
	r.OK = r.Summary.Failed == 0
}

// MarshalJSON adds the tree to the database description.
func (d Database) MarshalJSON() ([]byte, error) {
	type plain Database
	var hash string
	if d.Tree.N > 0 {
		hash = base64.StdEncoding.EncodeToString(d.Tree.Hash[:])
	}
	return json.Marshal(struct {
		plain
		TreeSize int64  `json:"tree_size"`
		TreeHash string `json:"tree_hash"`
	}{plain(d), d.Tree.N, hash})
}

// String returns "FILE:LINE: module@version: message", the form of a
// problem line in the text report.
func (res *Result) String() string {
	return res.location() + ": " + res.Message
}

// location returns "FILE:LINE: module@version" for a result.
func (res *Result) location() string {
	s := fmt.Sprintf("%s:%d", res.File, res.Line)
	if res.modVer != "" {
		s += ": " + res.modVer
	}
	return s
}

// WriteText writes one line per failed line, "FILE:LINE: module@version:
// reason", then a summary line.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for i := range r.Results {
		res := &r.Results[i]
		if res.Status == StatusFailed {
			fmt.Fprintf(&b, "%s: %s\n", res.location(), res.Message)
		}
	}
	s := r.Summary
	fmt.Fprintf(&b, "%s: %d %s in %d %s: %d verified, %d skipped, %d failed",
		verdict(r.OK), s.Lines, plural(s.Lines, "line", "lines"), s.Files, plural(s.Files, "file", "files"), s.Verified, s.Skipped, s.Failed)
	if d := r.Database; d.Name != "" {
		fmt.Fprintf(&b, " (%s, signed tree %d)", d.Name, d.Tree.N)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// WriteJSON writes the report as one JSON object (schema in the package
// documentation).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// JUnit XML, in the form CI systems read.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// WriteJUnit writes JUnit XML: a test suite per file and in it a test case
// per module@version, failed when any of its lines failed (the failure's
// message names FILE:LINE), skipped when all of them were skipped. A line
// without a module@version is a test case of its own, named FILE:LINE.
func (r *Report) WriteJUnit(w io.Writer) error {
	out := junitSuites{Name: "sumkeep verify"}
	byFile := make(map[string]int)
	type group struct {
		suite, tc int
		skipped   int
		lines     int
	}
	groups := make(map[[2]string]*group)
	for _, f := range r.Files {
		byFile[f.Path] = len(out.Suites)
		out.Suites = append(out.Suites, junitSuite{Name: f.Path})
	}
	for i := range r.Results {
		res := &r.Results[i]
		si := byFile[res.File]
		s := &out.Suites[si]
		name := res.modVer
		if name == "" {
			name = fmt.Sprintf("%s:%d", res.File, res.Line)
		}
		g, ok := groups[[2]string{res.File, name}]
		if !ok {
			g = &group{suite: si, tc: len(s.Cases)}
			groups[[2]string{res.File, name}] = g
			s.Cases = append(s.Cases, junitCase{Name: name, ClassName: res.File})
		}
		tc := &s.Cases[g.tc]
		g.lines++
		switch res.Status {
		case StatusFailed:
			line := fmt.Sprintf("%s: %s", res.location(), res.Message)
			if tc.Failure == nil {
				tc.Failure = &junitFailure{Message: line, Type: res.Kind, Text: line}
			} else {
				tc.Failure.Text += "\n" + line
			}
		case StatusSkipped:
			g.skipped++
			if tc.Skipped == nil {
				tc.Skipped = &junitSkipped{Message: res.Message}
			}
		}
	}
	for _, g := range groups {
		tc := &out.Suites[g.suite].Cases[g.tc]
		if tc.Failure != nil || g.skipped < g.lines {
			tc.Skipped = nil // a test case is skipped only when all its lines are
		}
	}
	for i := range out.Suites {
		s := &out.Suites[i]
		s.Tests = len(s.Cases)
		for _, tc := range s.Cases {
			if tc.Failure != nil {
				s.Failures++
			} else if tc.Skipped != nil {
				s.Skipped++
			}
		}
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Skipped += s.Skipped
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteGitHubAnnotations writes a GitHub Actions "::error" workflow command
// for each failed line, escaped as GitHub documents: '%', '\r' and '\n' in
// the message, and also ':' and ',' in the file property.
func (r *Report) WriteGitHubAnnotations(w io.Writer) error {
	var b strings.Builder
	for i := range r.Results {
		res := &r.Results[i]
		if res.Status != StatusFailed {
			continue
		}
		msg := res.Message
		if res.modVer != "" {
			msg = res.modVer + ": " + msg
		}
		fmt.Fprintf(&b, "::error file=%s,line=%d,title=%s::%s\n",
			escapeProperty(res.File), res.Line, escapeProperty("sumkeep verify: "+res.Kind), escapeData(msg))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

var (
	dataEscaper     = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	propertyEscaper = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
)

func escapeData(s string) string     { return dataEscaper.Replace(s) }
func escapeProperty(s string) string { return propertyEscaper.Replace(s) }
