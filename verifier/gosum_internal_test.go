package verifier

import (
	"strings"
	"testing"
)

// TestByteOrderMark: a go.sum an editor saved with a byte-order mark fails
// its first line saying so, not as a module path with a strange first
// character; the same character elsewhere is an invalid path as before.
func TestByteOrderMark(t *testing.T) {
	const line = "example.com/m v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	lines := splitGoSum([]byte("\ufeff" + line + "\ufeff" + line))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	if kind, msg := lines[0].syntaxError(); kind != KindMalformed || !strings.Contains(msg, "byte-order mark") {
		t.Errorf("line 1: %s %q, want malformed for the byte-order mark", kind, msg)
	}
	if kind, msg := lines[1].syntaxError(); kind != KindMalformed || !strings.Contains(msg, "invalid module path") {
		t.Errorf("line 2: %s %q, want an invalid module path", kind, msg)
	}
}
