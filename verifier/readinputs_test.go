package verifier_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sumkeep/sumkeep/verifier"
)

// TestReadInputsNotGoSum: a go.mod or go.work file given for a go.sum is
// refused whole, naming the go.sum beside it, rather than reported line by
// line as malformed; a go.sum, blank lines first or not, is read.
func TestReadInputsNotGoSum(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, data, want string
	}{
		{"go.mod", "// a comment\n\nmodule example.com/m\n\ngo 1.24\n\nrequire example.com/x v1.0.0\n", "is a go.mod file, not a go.sum: name the go.sum file (" + filepath.Join(dir, "go.sum") + ")"},
		{"go.work", "go 1.24\n\nuse ./m\n", "is a go.mod or go.work file, not a go.sum"},
		{"a.sum", "\n\nexample.com/x v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", ""},
		{"b.sum", "module v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", ""},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte(tc.data), 0o666); err != nil {
			t.Fatal(err)
		}
		_, err := verifier.ReadInputs([]string{p}, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it read", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestReadInputsStdin: "-" reads the given standard input once, named
// verifier.StdinName, in its place among the files; a go.mod piped in is
// refused as from a file; "-" twice, without a standard input or with an
// empty one (the command that was to write it failed), is an error, not
// an empty go.sum that verifies.
func TestReadInputsStdin(t *testing.T) {
	dir := t.TempDir()
	line := "example.com/x v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	p := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(p, []byte(line), 0o666); err != nil {
		t.Fatal(err)
	}
	piped := "example.com/y v1.0.0 h1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=\n"
	in, err := verifier.ReadInputs([]string{p, "-"}, strings.NewReader(piped))
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 2 || in[0].Name != p || string(in[0].Data) != line || in[1].Name != verifier.StdinName || string(in[1].Data) != piped {
		t.Fatalf("ReadInputs(%s, -) = %+v", p, in)
	}
	for _, tc := range []struct {
		names []string
		stdin io.Reader
		want  string
	}{
		{[]string{"-"}, strings.NewReader("module example.com/m\n\ngo 1.24\n"), "<standard input> is a go.mod file, not a go.sum: pipe in the go.sum file"},
		{[]string{"-", p, "-"}, strings.NewReader(piped), "- is named twice"},
		{[]string{"-"}, nil, "standard input cannot be read here"},
		{[]string{"-"}, strings.NewReader(""), "standard input is empty"},
		{[]string{"-"}, iotest.ErrReader(errors.New("broken pipe")), "reading <standard input>: broken pipe"},
	} {
		if _, err := verifier.ReadInputs(tc.names, tc.stdin); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadInputs(%q): %v, want an error saying %q", tc.names, err, tc.want)
		}
	}
}
