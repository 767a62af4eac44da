package verifier_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/verifier"
)

// reportFixture verifies two files against a store: go.sum with good lines,
// a changed h1 hash (line 3), a missing module (line 5), a private module
// (line 6, skipped); and "odd,name:%.sum" with one malformed line (line 2)
// and the go.mod line of record 1.
func reportFixture(t *testing.T) (*fixture, *verifier.Report) {
	f := newFixture(t, 300, nil)
	bl := map[string]string{}
	for _, b := range badLines(f) {
		bl[b.name] = b.line
	}
	gosum := string(f.goSum(10)) + // lines 1, 2
		bl["ChangedH1"] + "\n" + // 3
		string(f.goSum(11))[:strings.Index(string(f.goSum(11)), "\n")+1] + // 4
		bl["ModuleMissing"] + "\n" + // 5
		"corp.example.com/x v1.0.0 " + h1("x") + "\n" // 6
	_, mod1 := f.lines(1)
	odd := "\n" + bl["FourFields"] + "\n" + mod1 + "\n"
	v := f.storeVerifier(t, verifier.Policy{NoSumDB: "corp.example.com"})
	rep, err := v.Verify(context.Background(), []verifier.Input{{Name: "go.sum", Data: []byte(gosum)}, {Name: "odd,name:%.sum", Data: []byte(odd)}})
	if err != nil {
		t.Fatal(err)
	}
	return f, rep
}

// TestReportFormats checks the JSON, JUnit and text reports and the GitHub
// annotations of one run.
func TestReportFormats(t *testing.T) {
	f, rep := reportFixture(t)
	p10, v10, _ := f.u.Module(10)

	// JSON: parsed with encoding/json into the documented schema.
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SchemaVersion int  `json:"schema_version"`
		OK            bool `json:"ok"`
		Database      struct {
			Name     string `json:"name"`
			Source   string `json:"source"`
			URL      string `json:"url"`
			TreeSize int64  `json:"tree_size"`
			TreeHash string `json:"tree_hash"`
		} `json:"database"`
		Summary map[string]int `json:"summary"`
		Files   []struct {
			Path                             string
			Lines, Verified, Skipped, Failed int
		} `json:"files"`
		Results []map[string]any `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("JSON report does not parse: %v\n%s", err, buf.String())
	}
	tree := f.u.Tree()
	if doc.SchemaVersion != 1 || doc.OK || doc.Database.Name != logName || doc.Database.Source != "store" ||
		doc.Database.TreeSize != tree.N || doc.Database.TreeHash != base64.StdEncoding.EncodeToString(tree.Hash[:]) {
		t.Errorf("JSON header: %+v", doc)
	}
	wantSummary := map[string]int{"files": 2, "lines": 8, "verified": 4, "skipped": 1, "failed": 3}
	if fmt.Sprint(doc.Summary) != fmt.Sprint(wantSummary) {
		t.Errorf("JSON summary = %v, want %v", doc.Summary, wantSummary)
	}
	if len(doc.Files) != 2 || doc.Files[1].Path != "odd,name:%.sum" || doc.Files[1].Failed != 1 || doc.Files[0].Skipped != 1 {
		t.Errorf("JSON files = %+v", doc.Files)
	}
	if len(doc.Results) != 8 {
		t.Fatalf("JSON has %d results, want 8", len(doc.Results))
	}
	r := doc.Results[2]
	want := map[string]any{"file": "go.sum", "line": 3.0, "module": p10, "version": v10, "go_mod": false,
		"status": "failed", "kind": "hash-mismatch"}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("JSON results[2][%q] = %v, want %v", k, r[k], v)
		}
	}
	if len(r) != 9 || !strings.HasPrefix(r["hash"].(string), "h1:") || !strings.Contains(r["message"].(string), "h1 hash mismatch") {
		t.Errorf("JSON results[2] = %v", r)
	}
	if s := doc.Results[5]; s["status"] != "skipped" || s["kind"] != "gonosumdb" {
		t.Errorf("JSON results[5] = %v", s)
	}

	// JUnit: parsed with encoding/xml.
	buf.Reset()
	if err := rep.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var ju struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Skipped  int      `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Type    string `xml:"type,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &ju); err != nil {
		t.Fatalf("JUnit report does not parse: %v\n%s", err, buf.String())
	}
	// go.sum: record 10 (lines 1-3: one case, failed at line 3), record 11,
	// the missing module, the private one; odd: the malformed line, record 1.
	if len(ju.Suites) != 2 || ju.Suites[0].Name != "go.sum" || len(ju.Suites[0].Cases) != 4 || len(ju.Suites[1].Cases) != 2 {
		t.Fatalf("JUnit suites: %s", buf.String())
	}
	if ju.Tests != 6 || ju.Failures != 3 || ju.Skipped != 1 {
		t.Errorf("JUnit totals: tests %d failures %d skipped %d", ju.Tests, ju.Failures, ju.Skipped)
	}
	c := ju.Suites[0].Cases[0]
	if c.Name != p10+"@"+v10 || c.Failure == nil || !strings.HasPrefix(c.Failure.Message, "go.sum:3: "+p10+"@"+v10+": h1 hash mismatch") || c.Failure.Type != "hash-mismatch" {
		t.Errorf("JUnit case 0: %+v %+v", c, c.Failure)
	}
	if c := ju.Suites[0].Cases[1]; c.Failure != nil || c.Skipped != nil {
		t.Errorf("JUnit case 1 (record 11) is not a pass: %+v", c)
	}
	if c := ju.Suites[0].Cases[3]; c.Skipped == nil || c.Failure != nil {
		t.Errorf("JUnit case 3 (private) is not skipped: %+v", c)
	}
	if c := ju.Suites[1].Cases[0]; c.Failure == nil || !strings.HasPrefix(c.Failure.Message, "odd,name:%.sum:2: ") || c.Failure.Type != "malformed" {
		t.Errorf("JUnit malformed case: %+v", c)
	}

	// Text.
	buf.Reset()
	rep.WriteText(&buf)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4 ||
		!strings.HasPrefix(lines[0], "go.sum:3: "+p10+"@"+v10+": h1 hash mismatch: go.sum has h1:") ||
		!strings.HasPrefix(lines[1], "go.sum:5: example.com/not/there@v1.0.0: not in the checksum database") ||
		!strings.HasPrefix(lines[2], "odd,name:%.sum:2: ") ||
		!strings.HasPrefix(lines[3], "FAIL: 8 lines in 2 files: 4 verified, 1 skipped, 3 failed (sumdb.test, signed tree 300)") {
		t.Errorf("text report:\n%s", buf.String())
	}

	// GitHub annotations, with the file property escaped.
	buf.Reset()
	rep.WriteGitHubAnnotations(&buf)
	ann := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	wantAnn := []string{
		"::error file=go.sum,line=3,title=sumkeep verify%3A hash-mismatch::" + p10 + "@" + v10 + ": h1 hash mismatch: go.sum has h1:",
		"::error file=go.sum,line=5,title=sumkeep verify%3A not-found::example.com/not/there@v1.0.0: not in the checksum database",
		"::error file=odd%2Cname%3A%25.sum,line=2,title=sumkeep verify%3A malformed::malformed line: 4 fields",
	}
	if len(ann) != len(wantAnn) {
		t.Fatalf("annotations:\n%s", buf.String())
	}
	for i, w := range wantAnn {
		if !strings.HasPrefix(ann[i], w) {
			t.Errorf("annotation %d = %q\nwant prefix %q", i, ann[i], w)
		}
	}
}

// TestAnnotationEscaping checks the escaping of the message data, with a
// result whose message holds '%' and line breaks.
func TestAnnotationEscaping(t *testing.T) {
	rep := &verifier.Report{Results: []verifier.Result{{File: "a\r\nb", Line: 1, Status: verifier.StatusFailed, Kind: "k", Message: "100% wrong\r\nreally"}}}
	var buf bytes.Buffer
	rep.WriteGitHubAnnotations(&buf)
	want := "::error file=a%0D%0Ab,line=1,title=sumkeep verify%3A k::100%25 wrong%0D%0Areally\n"
	if buf.String() != want {
		t.Errorf("annotation = %q\nwant %q", buf.String(), want)
	}
}
