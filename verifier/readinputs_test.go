package verifier_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		_, err := verifier.ReadInputs([]string{p})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it read", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
