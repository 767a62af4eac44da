package verifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/verifier"
)

// emptyDatabase is a Source for a checksum database that holds nothing:
// input hostility is about parsing and reporting, not about the database.
type emptyDatabase struct{}

func (emptyDatabase) Records(ctx context.Context, mods []module.Version) ([]verifier.Answer, error) {
	out := make([]verifier.Answer, len(mods))
	for i := range out {
		out[i].Err = fmt.Errorf("%w (tree 0)", verifier.ErrNotFound)
	}
	return out, nil
}

func (emptyDatabase) Database() verifier.Database { return verifier.Database{Name: "empty.test"} }

// FuzzVerify feeds arbitrary bytes as a go.sum: no panic, every line
// accounted for, and every report well-formed (one text line per failure,
// JSON and XML that parse).
func FuzzVerify(f *testing.F) {
	for _, s := range []string{
		"example.com/m v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"example.com/m v1.0.0/go.mod h1:G7mAYYxgmS0lVkHyy2hEOLQCFB0DlQFTMLWggykrydY=\r\n\n",
		"a b\n c d e f\n\x00\xff\xfe v1 h1:x\n",
		"example.com/\u2028 v1.0.0 h1:\n\x1b[31mred\x1b[0m v1.0.0 h2:x\n",
		"golang.org/toolchain v0.0.1-go1.21.0.linux-amd64 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		strings.Repeat("x", 5000) + "\n",
		"example.com/m v1.2 h1:%0A::error\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v := &verifier.Verifier{Source: emptyDatabase{}, Policy: verifier.Policy{NoSumDB: "private.example"}}
		rep, err := v.Verify(context.Background(), []verifier.Input{{Name: "go.sum", Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		s := rep.Summary
		if s.Lines != len(rep.Results) || s.Verified != 0 || s.Verified+s.Skipped+s.Failed != s.Lines {
			t.Fatalf("summary %+v for %d results", s, len(rep.Results))
		}
		var text bytes.Buffer
		rep.WriteText(&text)
		if n := bytes.Count(text.Bytes(), []byte("\n")); n != s.Failed+1 {
			t.Fatalf("text report has %d lines for %d failures:\n%s", n, s.Failed, text.String())
		}
		var ann bytes.Buffer
		rep.WriteGitHubAnnotations(&ann)
		if n := bytes.Count(ann.Bytes(), []byte("\n")); n != s.Failed {
			t.Fatalf("%d annotation lines for %d failures:\n%s", n, s.Failed, ann.String())
		}
		var js bytes.Buffer
		rep.WriteJSON(&js)
		var anyJSON map[string]any
		if err := json.Unmarshal(js.Bytes(), &anyJSON); err != nil {
			t.Fatalf("JSON: %v", err)
		}
		var x bytes.Buffer
		rep.WriteJUnit(&x)
		var anyXML struct{}
		if err := xml.Unmarshal(x.Bytes(), &anyXML); err != nil {
			t.Fatalf("XML: %v\n%s", err, x.String())
		}
	})
}
