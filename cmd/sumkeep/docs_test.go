package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocs holds the README and the deploy notes to what a new user needs,
// and to what the code does: where the binary is and how to install it,
// how to serve other machines, the proxy form, --output, the first build's
// duration; and that serve rejects a malformed schedule (TestCLIContract
// checks the code side).
func TestDocs(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	readme, deploy := read("README.md"), read(filepath.Join("deploy", "README.md"))
	for _, want := range []string{
		"bin/sumkeep",
		"make install",
		"go install github.com/sumkeep/sumkeep/cmd/sumkeep@latest",
		"--listen :8080",
		"TLS",
		`GOPROXY="http://127.0.0.1:8080,<your proxy>"`,
		"No `GOSUMDB` change is needed",
		"--output",
		"a few minutes",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not mention %q", want)
		}
	}
	if strings.Contains(deploy, "does not\n  reject a malformed schedule") || !strings.Contains(deploy, "refuses to start with a malformed schedule") {
		t.Errorf("deploy/README.md misstates what serve does with a malformed schedule")
	}

	// make install installs with go install.
	out, err := exec.Command("make", "-C", filepath.Join("..", ".."), "-n", "install").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "go install ./cmd/sumkeep") {
		t.Errorf("make -n install: %v\n%s", err, out)
	}
}
