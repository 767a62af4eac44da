package upstream_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/upstream"
)

// TestGoProxy: discovery starts from the GOPROXY the go command would use:
// the environment's, else the go command's own answer, else none (direct).
func TestGoProxy(t *testing.T) {
	ctx := context.Background()
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	if got, _ := upstream.GoProxy(ctx, env(map[string]string{"GOPROXY": "https://mods.example/,direct"})); got != "https://mods.example/,direct" {
		t.Errorf("with GOPROXY set: %q", got)
	}
	out, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(out))
	if got, _ := upstream.GoProxy(ctx, env(nil)); got != want || got == "" {
		t.Errorf("with GOPROXY unset: %q, want the go command's %q", got, want)
	}
	t.Setenv("PATH", t.TempDir()) // no go command
	if got, err := upstream.GoProxy(ctx, env(nil)); got != "direct" || err == nil {
		t.Errorf("with no go command: %q, %v; want direct and why", got, err)
	}
}
