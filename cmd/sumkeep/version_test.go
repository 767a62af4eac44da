package main

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: 'sumkeep version' names the build and the Go version that
// made it, on one line of standard output.
func TestVersion(t *testing.T) {
	out, err := exec.Command(sumkeepBin, "version").Output()
	if err != nil {
		t.Fatalf("sumkeep version: %v", err)
	}
	line := strings.TrimSuffix(string(out), "\n")
	if !strings.HasPrefix(line, "sumkeep ") || !strings.HasSuffix(line, " "+runtime.Version()) || strings.Contains(line, "\n") {
		t.Errorf("sumkeep version = %q, want one line naming the build and %s", out, runtime.Version())
	}
	if code, _, stderr := runIn(t, nil, "version", "extra"); code != 2 {
		t.Errorf("sumkeep version extra: exit %d\n%s", code, stderr)
	}
}
